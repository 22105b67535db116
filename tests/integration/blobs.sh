#!/bin/sh
# blobs.sh - attachments through real processes on loopback (issue 8): a
# device's photos and decision scan go to a hub kheod over kheo sync,
# through tests/integration/cutproxy.c cutting the connection every few
# chunks, then up to the province kheod; every blob arrives intact and
# what a cut wastes is bounded by one chunk. A --no-blobs device sees
# the records and lists the blobs missing; the hub's device_blob_bytes
# caps what one sync pushes. Prints TAP.
#
#   BUILD=build sh tests/integration/blobs.sh   (from the repository root)
#   BLOBS_KEEP=1 keeps the scratch directory
set -u

ROOT=$(pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KHEO=$BUILD/kheo
KHEOD=$BUILD/kheod

if [ -d /dev/shm ] && [ -w /dev/shm ]; then SCRATCH=/dev/shm; else
	SCRATCH=${TMPDIR:-/tmp}; fi
T=$(mktemp -d "$SCRATCH/kheo-blobs.XXXXXX") || exit 1
PIDS=""
PX=""
cleanup() {
	for p in $PIDS $PX; do kill -KILL "$p" 2>/dev/null; done
	if [ -n "${BLOBS_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$T" || exit 1

. "$ROOT/tests/integration/lib/tap.sh"

if command -v timeout >/dev/null 2>&1; then TO="timeout 60"; else TO=; fi
k() { $TO "$KHEO" "$@"; }
run() {
	$TO "$KHEO" "$@" >"$T/out" 2>"$T/err"
	rc=$?
}
err1() { head -c 400 "$T/err" | tr '\n' ' '; }
json() {
	python3 -c 'import json, sys
d = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$1"
}
idj() { k -C "$1" id --json | json "d.get(\"$2\")"; }
freeport() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
daemon() {
	dlog=$1
	shift
	"$KHEOD" "$@" --foreground >"$dlog" 2>&1 &
	pid=$!
	i=0
	while ! grep -q "started (kheo" "$dlog" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 500 ] && return 1
		kill -0 $pid 2>/dev/null || return 1
		sleep 0.01
	done
}
proxy() {
	pout=$1
	shift
	rm -f pport
	./cutproxy "$@" >"$pout" 2>"$pout.err" &
	PX=$!
	i=0
	while [ ! -s pport ]; do
		i=$((i + 1))
		[ $i -gt 500 ] && return 1
		sleep 0.01
	done
	PXPORT=$(cat pport)
}
pxwait() {
	wait $PX
	PX=""
	set -- $(head -1 "$pout")
	cs=${2:-0} sc=${4:-0} cut=${6:-0}
}
missing() { k -C "$1" blob missing --json | json 'len(d)'; }

cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -O2 -o cutproxy \
	"$ROOT/tests/integration/cutproxy.c" 2>"$T/err"
check "the cutting proxy builds" $? "$(err1)"

PROV=dak-nong
DA=$PROV/cu-jut
VA=$DA/ea-po
k -C P init --role province --unit $PROV >/dev/null
ROOTFP=$(idj P root)
PKEY=$(idj P key)
enrol() { # DIR ISSUER ROLE UNIT
	k -C "$1" enroll request >"$1.req" &&
		k -C "$2" enroll sign "$1.req" --role "$3" --unit "$4" >"$1.cert" &&
		k -C "$1" enroll accept "$1.cert" --root "$ROOTFP" >/dev/null
}
k -C H init --role hub --unit $DA >/dev/null && enrol H P hub $DA
k -C D init --role device --unit $VA >/dev/null && enrol D H collector $VA
k -C D2 init --role device --unit $VA >/dev/null && enrol D2 H collector $VA

PP=$(freeport)
HP=$(freeport)
daemon prov.log -C P --listen 127.0.0.1:$PP
PIDS="$PIDS $pid"
cat >h.conf <<EOF
listen = 127.0.0.1:$HP
upstream = 127.0.0.1:$PP
upstream_key = $PKEY
nightly = off
EOF
daemon h.log -C H --config h.conf
HUBPID=$pid
PIDS="$PIDS $pid"

# 4 MB of photos on two records, and a decision scan: JPEG magic, then
# bytes that do not compress
python3 - <<'EOF'
import os, random
r = random.Random(8)
for i in range(8):
    n = 500000 + i * 3001
    open("p%d.jpg" % i, "wb").write(b"\xff\xd8\xff\xe0" +
        bytes(r.getrandbits(8) for _ in range(n - 4)))
open("scan.pdf", "wb").write(b"%PDF-1.4\n" + b"Quyet dinh cong nhan " * 8000)
open("notes.txt", "w").write("not a picture")
EOF
R1=$(k -C D put model name="Vườn cà phê" unit=$VA)
R2=$(k -C D put model name="Tổ tự quản" unit=$VA)
st=0
for i in 0 1 2 3; do k -C D attach model "$R1" photos p$i.jpg >>att.out || st=1; done
for i in 4 5 6 7; do k -C D attach model "$R2" photos p$i.jpg >>att.out || st=1; done
k -C D attach model "$R1" decision_scan scan.pdf >>att.out || st=1
[ "$(wc -l <att.out)" -eq 9 ] || st=1
check "kheo attach stores 8 photos and a scan, printing hash, size and type" \
	$st "$(cat att.out)"
run -C D attach model "$R1" photos notes.txt
[ $rc -eq 1 ] && grep -q "not a JPEG, PNG, PDF or WebP" err
check "kheo attach refuses a file that is not a picture or a PDF (exit 1)" $? \
	"rc=$rc $(err1)"
TOTAL=$(cat p?.jpg scan.pdf | wc -c)

# device -> hub through the proxy, cut after 150 KB each time (two chunks
# and a bit, after the handshake and the records) until nothing is missing
cuts=0 syncs=0 sent=0
while :; do
	proxy px.out -c 150000 pport $HP || break
	k -C D sync 127.0.0.1:$PXPORT --json >sync.out 2>sync.err
	pxwait
	sent=$((sent + cs))
	cuts=$((cuts + cut))
	syncs=$((syncs + 1))
	[ "$(missing H)" -eq 0 ] && [ $cut -eq 0 ] && break
	[ $syncs -gt 80 ] && break
done
HELD=$(k -C H blob missing --json | json 'len(d)')
check "device -> hub, the connection cut every ~2 chunks: $cuts cuts in $syncs syncs, nothing missing at the hub" \
	"$([ "$HELD" -eq 0 ] && [ $cuts -ge 15 ] && echo 0 || echo 1)" \
	"missing $HELD, cuts $cuts, syncs $syncs"
# what the device sent beyond its blobs: at most a chunk per cut, plus
# each session's own bytes (handshake, HELLO with certificates, heads,
# the records once, GETs answered: under 16 KiB)
extra=$((sent - TOTAL))
[ $extra -le $((cuts * 65536 + syncs * 16384)) ]
check "the device sent $sent bytes for $TOTAL of blobs: $extra more, within a chunk per cut and 16 KiB per session" \
	$? "cuts $cuts syncs $syncs"

k -C H sync --now >now.out 2>now.err
i=0
while [ "$(missing P)" -ne 0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
st=0
for f in p0.jpg p3.jpg p7.jpg scan.pdf; do
	h=$(grep " $(wc -c <$f | tr -d ' ') " att.out | head -1 | cut -d' ' -f1)
	k -C P blob get "$h" got.bin >/dev/null && cmp -s got.bin $f || st=1
done
check "hub -> province (kheo sync --now): the province reads the photos and the scan back, byte for byte" \
	$st "$(cat now.err) missing at P: $(missing P)"

run -C D2 sync 127.0.0.1:$HP --no-blobs
st=$rc
k -C D2 get model "$R1" | grep -q photos || st=1
[ "$(missing D2)" -eq 9 ] || st=1
k -C D2 blob missing >miss.out 2>miss.err
grep -q "absent" miss.out && grep -q "9 blobs named by records not here" miss.err || st=1
k -C D2 status 2>&1 | grep -q "9 attachments named by records are not here" || st=1
check "a --no-blobs device sees the records, lists their 9 blobs as missing, and kheo status warns" \
	$st "rc=$rc $(err1) $(cat miss.err)"
h=$(head -1 miss.out | cut -d' ' -f1)
run -C D2 blob get "$h" x.bin
[ $rc -eq 1 ] && grep -q "not here" err
check "kheo blob get of a blob not here exits 1, saying so" $? "rc=$rc $(err1)"

# the hub caps what one device pushes per session: 256 KiB, 4 chunks
kill -TERM $HUBPID
wait $HUBPID 2>/dev/null
echo "device_blob_bytes = 256k" >>h.conf
daemon h.log -C H --config h.conf
PIDS="$PIDS $pid"
k -C D attach model "$R2" photos p0.jpg >/dev/null # already there: nothing
python3 -c 'import os; open("big.jpg","wb").write(b"\xff\xd8\xff" + os.urandom(700000))'
k -C D attach model "$R2" photos big.jpg >/dev/null
run -C D sync 127.0.0.1:$HP --json
out=$(cat out)
chunks=$(echo "$out" | json 'd["blob_chunks_out"]')
[ $rc -eq 0 ] && [ "$chunks" -eq 4 ] && [ "$(missing H)" -eq 1 ]
check "with device_blob_bytes = 256k a sync pushes 4 chunks, the rest waits" \
	$? "rc=$rc chunks=$chunks missing=$(missing H) $(err1)"
more=0
while [ "$(missing H)" -ne 0 ] && [ $more -lt 5 ]; do
	k -C D sync 127.0.0.1:$HP >/dev/null 2>&1
	more=$((more + 1))
done
check "the rest (7 chunks) comes in the next two syncs" \
	"$([ "$(missing H)" -eq 0 ] && [ $more -eq 2 ] && echo 0 || echo 1)" \
	"syncs $more, missing $(missing H)"

run -C D blob prune --older-than 0
grep -q "pruned 0 blobs" out
check "kheo blob prune keeps every blob a record names" $? "$(cat out)"

finish
