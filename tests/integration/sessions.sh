#!/bin/sh
# sessions.sh - 1,000 device sessions open at once at one kheod, every one
# served.  Prints TAP.
#
#   BUILD=build sh tests/integration/sessions.sh   (from the repository root)
#
# Runs tests/bench/bench_sessions.c small: ten devices of an empty hub,
# each with 100 sessions that finish the handshake and the HELLOs and are
# then held open together before they all end DONE (a few seconds).  The
# memory figures are make bench's business; here only that all are served
# and that kheod stops cleanly after.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/integration/lib/tap.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
if [ -d /dev/shm ] && [ -w /dev/shm ]; then SCRATCH=/dev/shm; else
	SCRATCH=${TMPDIR:-/tmp}; fi
T=$(mktemp -d "$SCRATCH/kheo-sessions.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

bin=$BUILD/bench/bench_sessions
if [ ! -x "$bin" ] || [ ! -x "$BUILD/kheod" ]; then
	not_ok "$bin and $BUILD/kheod are built (make test builds them)"
	finish
fi
KHEO_BENCH_DEVICES=10 KHEO_BENCH_SESSIONS=1000 timeout 300 \
	"$bin" "$BUILD/kheod" "$T/run" >"$T/out" 2>&1
st=$?
grep -q 'held at once after the hub.s HELLO  1000 ' "$T/out" || st=1
check "1,000 sessions held open at once at one kheod, past the HELLOs" $st \
	"$(cat "$T/out")" "$(grep -v 'done in' "$T/run/hub.log" 2>/dev/null | tail -5)"
st=1
grep -q 'then all released: 1000 done, 0 not' "$T/out" &&
	grep -q 'kheod: stopped' "$T/run/hub.log" && st=0
check "all 1,000 end DONE, and kheod stops cleanly after" $st \
	"$(tail -3 "$T/out")"
finish
