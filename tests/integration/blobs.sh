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
#   KHEO_KEEP=1 keeps the scratch directory
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/daemon.sh"
daemon_setup blobs
missing() { k -C "$1" blob missing --json | json 'len(d)'; }

proxy_build
check "the cutting proxy builds" $? "$(err1)"

PROV=dak-nong
DA=$PROV/cu-jut
VA=$DA/ea-po
k -C P init --role province --unit $PROV >/dev/null
ROOTFP=$(idj P root)
PKEY=$(idj P key)
k -C H init --role hub --unit $DA >/dev/null && enrol H P hub $DA
k -C D init --role device --unit $VA >/dev/null && enrol D H collector $VA
k -C D2 init --role device --unit $VA >/dev/null && enrol D2 H collector $VA

PP=$(freeport)
HP=$(freeport)
daemon prov.log -C P --listen 127.0.0.1:$PP
cat >h.conf <<EOF
listen = 127.0.0.1:$HP
upstream = 127.0.0.1:$PP
upstream_key = $PKEY
nightly = off
EOF
daemon h.log -C H --config h.conf
HUBPID=$pid

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
