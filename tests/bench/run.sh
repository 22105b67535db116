#!/bin/sh
# run.sh - what `make bench` runs after building the benches and kheod:
# make the traces, then measure proto/ on each, libkheo's edit and
# receive rates and its sync sessions on the medium one, what one kheod
# costs per concurrent session, and the traces through kheod processes
# on loopback (bench_daemon: a province and 8 hubs), attachments over a
# session on TCP loopback (bench_blob), and the audit mirror's export,
# verify and replay at two history sizes (bench_audit).
#
#   sh tests/bench/run.sh [BUILD]
#
# Traces come from gen_trace.py in ../shared/bench (relative to the repo
# root; KHEO_SHARED overrides that folder).  Same arguments and seed give a
# byte-identical file, so a trace is kept in $BUILD/bench and made again only
# when its arguments or the generator change.  The medium trace is the one
# DESIGN.md's targets name; the large one (10x the records) shows how the
# figures scale, and is skipped with KHEO_BENCH_LARGE=0.
#
# Figures only: nothing here fails on timing.  A non-zero exit means a
# changeset failed to encode, open, verify or re-encode identically.
set -eu

BUILD=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${KHEO_SHARED:-$root/../shared}
gen=$shared/bench/gen_trace.py
out=$BUILD/bench
bin=$out/bench_proto

[ -f "$gen" ] || { echo "run.sh: $gen not found (set KHEO_SHARED)" >&2; exit 1; }
[ -x "$bin" ] || { echo "run.sh: $bin not built (make bench)" >&2; exit 1; }
mkdir -p "$out"

# trace NAME ARGS...: make $out/NAME.jsonl unless it is up to date.
trace() {
	name=$1
	shift
	file=$out/$name.jsonl
	if [ -s "$file" ] && [ -z "$(find "$gen" -newer "$file")" ] &&
	   [ "$(cat "$file.args" 2>/dev/null)" = "$*" ]; then
		return 0
	fi
	echo "run.sh: generating $file"
	python3 "$gen" "$@" --out "$file.tmp" 2>"$out/$name.counts"
	mv "$file.tmp" "$file"
	echo "$*" >"$file.args"
}

common="--districts 8 --devices 10 --edits 3 --conflict-rate 0.05 --delete-rate 0.02 --seed 42"

# shellcheck disable=SC2086 # $common is a word list on purpose
trace medium --records 100 $common
"$bin" "$out/medium.jsonl" "medium trace (--records 100)"

# libkheo: local edits against plain SQLite, receive and merge at a hub
echo
echo "== libkheo on the medium trace"
rm -rf "$out/core"
"$out/bench_core" "$out/medium.jsonl" "$out/core"
rm -rf "$out/core"

# the whole medium trace through sync sessions, 89 enrolled nodes
echo
echo "== sync sessions on the medium trace"
"$out/bench_sync" "$out/medium.jsonl" "${TMPDIR:-/tmp}/kheo-bench-sync"
rm -rf "${TMPDIR:-/tmp}/kheo-bench-sync"

# attachments: 20 MB of photos from a device to a hub, over TCP loopback
echo
echo "== attachments: 20 MB of photos over a session on TCP loopback"
rm -rf "$out/blob"
"$out/bench_blob" "$out/blob" 20
rm -rf "$out/blob"

# kheod: 1,000 device sessions held open at one hub, its memory
echo
echo "== concurrent sessions at one kheod"
"$out/bench_sessions" "$BUILD/kheod" "${TMPDIR:-/tmp}/kheo-bench-sessions" \
	"$out/medium.jsonl"
rm -rf "${TMPDIR:-/tmp}/kheo-bench-sessions"

# the whole medium trace through a province kheod and 8 hub kheods
echo
echo "== kheod processes on the medium trace"
"$out/bench_daemon" "$BUILD/kheod" "$out/medium.jsonl" \
	"${TMPDIR:-/tmp}/kheo-bench-daemon" 279e6
rm -rf "${TMPDIR:-/tmp}/kheo-bench-daemon"

# the audit mirror of a hub that received every edit as a changeset
echo
echo "== audit mirror on the medium trace"
rm -rf "${TMPDIR:-/tmp}/kheo-bench-audit"
"$out/bench_audit" "$out/medium.jsonl" "${TMPDIR:-/tmp}/kheo-bench-audit"
rm -rf "${TMPDIR:-/tmp}/kheo-bench-audit"

if [ "${KHEO_BENCH_LARGE:-1}" != 0 ]; then
	# shellcheck disable=SC2086
	trace large --records 1000 $common
	echo
	"$bin" "$out/large.jsonl" "large trace (--records 1000)"
	# The longest part of make bench: 89 replicas of the whole province
	# (the medium trace leaves 3.1 GB in the scratch folder, this one
	# about ten times that), and every edit and chunk is a synced
	# transaction: give TMPDIR room, on tmpfs if it fits.  On a shared
	# 2-core machine with a disk-backed /tmp, its phase 1 alone (the
	# devices' edits and their syncs with each other) took 40 minutes.
	echo
	echo "== kheod processes on the large trace"
	"$out/bench_daemon" "$BUILD/kheod" "$out/large.jsonl" \
		"${TMPDIR:-/tmp}/kheo-bench-daemon"
	rm -rf "${TMPDIR:-/tmp}/kheo-bench-daemon"
	echo
	echo "== audit mirror on the large trace"
	rm -rf "${TMPDIR:-/tmp}/kheo-bench-audit"
	"$out/bench_audit" "$out/large.jsonl" "${TMPDIR:-/tmp}/kheo-bench-audit"
	rm -rf "${TMPDIR:-/tmp}/kheo-bench-audit"
fi
