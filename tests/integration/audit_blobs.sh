#!/bin/sh
# audit_blobs.sh - `kheo audit verify --blobs`: a blob store checked
# against an audit mirror (issue 8; docs/auditor.md, "Attachments").
# Prints TAP.
#
#   BUILD=build sh tests/integration/audit_blobs.sh   (from the repository root)
#
# A collector attaches two photos and a scan; they reach the province by
# bundle; the province exports its mirror.  Verify with the province's
# store passes and counts three blobs intact.  Then, each on a copy: a
# chunk file with one byte changed (damaged), a chunk file deleted
# (damaged), and a store that never received the blobs (a records-only
# bundle: missing); each fails with the record's file named.  A path that
# is no data directory is refused by name.  The mirror itself is not
# touched, so the history still verifies each time.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup audit-blobs
cli_need git
export GIT_CONFIG_NOSYSTEM=1 HOME="$T"

# ------------------------------------------------------------ the nodes
U=dak-nong/cu-jut/ea-po
k -C P init --role province --unit dak-nong >/dev/null
ROOTFP=$(idj P root)
k -C D init --role device --unit $U >/dev/null && enrol D P collector $U
check "a province and an enrolled collector" $? "$(err1)"

python3 - <<'EOF'
import random
r = random.Random(11)
for i in range(2):
    open("p%d.jpg" % i, "wb").write(b"\xff\xd8\xff\xe0" +
        bytes(r.getrandbits(8) for _ in range(150000 + i * 977)))
open("scan.pdf", "wb").write(b"%PDF-1.4\n" + b"Quyet dinh cong nhan " * 4000)
EOF
M=$(k -C D put model name="Vườn cà phê" unit=$U)
st=0
A=$(k -C D attach model "$M" photos p0.jpg | cut -d' ' -f1) || st=1
B=$(k -C D attach model "$M" photos p1.jpg | cut -d' ' -f1) || st=1
S=$(k -C D attach model "$M" decision_scan scan.pdf | cut -d' ' -f1) || st=1
k -C D bundle create d.khb >/dev/null && k -C P bundle apply d.khb >/dev/null &&
	k -C P commit >/dev/null || st=1
check "two photos and a scan reach the province by bundle" $st "$(err1)"
MFILE=$U/model/$(echo "$M" | cut -c1-2)/$M.json

run -C P audit export m.git
check "the province exports its mirror" $rc "$(out1) $(err1)"
git -C m.git show "main:$MFILE" >rec.json 2>"$T/err"
st=1
grep -q "$A" rec.json && grep -q "$S" rec.json && st=0
check "the record's file in the mirror names the blobs by hash" $st \
	"$(head -c 300 rec.json)"

# ------------------------------------------------------------ intact
run audit verify m.git --blobs P
st=1
[ $rc -eq 0 ] && grep -q "3 blobs named, 3 intact, 0 missing, 0 damaged" "$T/out" &&
	st=0
check "verify --blobs with the province's store: 3 blobs intact, exit 0" $st \
	"exit $rc: $(out1) $(err1)"
run audit verify m.git --blobs P --json
st=1
[ $rc -eq 0 ] && [ "$(json 'd["blobs"]["intact"], d["ok"]' <"$T/out")" = "(3, True)" ] &&
	st=0
check "verify --blobs --json counts them in a blobs object" $st "exit $rc: $(out1)"

# ------------------------------------------------------------ damaged
cp -r P P2
CH=P2/blobs/$(echo "$A" | cut -c1-2)/$A/1
python3 - "$CH" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[1000] ^= 0x01
open(p, "wb").write(bytes(b))
EOF
run audit verify m.git --blobs P2
st=1
[ $rc -eq 1 ] && grep -q "^error: blob-damaged $MFILE: photos $A" "$T/out" &&
	grep -q "do not match its hash" "$T/out" &&
	grep -q "3 blobs named, 2 intact, 0 missing, 1 damaged" "$T/out" &&
	grep -q "verified (0 errors" "$T/out" && st=0
check "one byte changed in a photo's chunk file: blob-damaged, naming the record's file, exit 1" \
	$st "exit $rc: $(out1) $(err1)"

cp -r P P3
rm -f P3/blobs/$(echo "$S" | cut -c1-2)/$S/0
run audit verify m.git --blobs P3
st=1
[ $rc -eq 1 ] && grep -q "^error: blob-damaged $MFILE: decision_scan $S" "$T/out" &&
	grep -q "3 blobs named, 2 intact, 0 missing, 1 damaged" "$T/out" && st=0
check "a scan's chunk file deleted: blob-damaged, exit 1" $st \
	"exit $rc: $(out1) $(err1)"

# ------------------------------------------------------------ missing
k -C H init --role hub --unit dak-nong/cu-jut >/dev/null &&
	k -C P bundle create records.khb --no-blobs >/dev/null &&
	k -C H bundle apply records.khb >/dev/null 2>"$T/err"
check "a node holding the records and none of the blobs" $? "$(err1)"
run audit verify m.git --blobs H
st=1
[ $rc -eq 1 ] && [ "$(grep -c "^error: blob-missing $MFILE" "$T/out")" -eq 3 ] &&
	grep -q "photos $B .*none of it" "$T/out" &&
	grep -q "3 blobs named, 0 intact, 3 missing, 0 damaged" "$T/out" && st=0
check "a store without them: three blob-missing lines, exit 1" $st \
	"exit $rc: $(out1) $(err1)"

# ------------------------------------------------------------ bad input
run audit verify m.git --blobs "$T/nowhere"
st=1
[ $rc -ne 0 ] && grep -q "blob store $T/nowhere" "$T/err" && st=0
check "a --blobs path that is no data directory is refused by name" $st \
	"exit $rc: $(out1) $(err1)"
run audit verify m.git --blobs
st=1
[ $rc -ne 0 ] && [ $rc -ne 1 ] && st=0
check "--blobs without a directory is a usage error" $st "exit $rc: $(err1)"

finish
