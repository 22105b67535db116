#!/bin/sh
# history.sh - every write a record saw, and who wrote what it shows:
# `kheo history` on a node, `kheo audit log|blame` on a mirror (issue 6's
# "conveniences where stock git cannot answer").  Prints TAP.
#
#   BUILD=build sh tests/integration/history.sh   (from the repository root)
#
# A province P, two collectors D1 and D2 and a reviewer R of one village,
# all enrolled, exchanging bundles through P.  The model M collects the
# cases a git history of shown states cannot tell: a value written again
# by another device (the file does not change, so `git blame` names the
# first writer while the second holds), a write superseded by a later one,
# a conflict, a tag added then removed, and a collector's edit made after
# the reviewer recognised the model (it never wins).  Then the mirror
# answers the same as the node, at a past date too; bad input is refused
# with its reason.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup history
cli_need git
export GIT_CONFIG_NOSYSTEM=1 HOME="$T"

U=dak-nong/cu-jut/ea-po
k -C P init --role province --unit dak-nong >/dev/null
ROOTFP=$(idj P root)
for d in D1 D2 R; do k -C $d init --role device --unit $U >/dev/null; done
enrol D1 P collector $U && enrol D2 P collector $U && enrol R P reviewer $U
check "a province, two collectors and a reviewer of one village, enrolled" $? "$(err1)"

# ship FROM TO: FROM's changesets applied on TO, by bundle
ship() {
	k -C "$1" bundle create "$1.khb" >/dev/null 2>"$T/err" &&
		k -C "$2" bundle apply "$1.khb" >/dev/null 2>"$T/err"
}
# down: P's state to every device
down() { for d in D1 D2 R; do ship P $d || return 1; done; }
# w EXPR: EXPR over `kheo -C P history model M --json`'s writes (as ws)
w() {
	k -C P history model "$M" --json |
		json "(lambda ws: $1)(d['writes'])"
}
cs_of() { # DIR: the id of DIR's newest changeset
	k -C "$1" log --json | json '[c["id"] for c in d if c["mine"]][0]'
}

# ------------------------------------------------------------- the story
M=$(k -C D1 put model name="Mô hình Ea Pô" kind=collective field=economy \
	unit=$U status=registered)
k -C D1 set model "$M" owner="Y Bhin" >/dev/null
k -C D1 commit >/dev/null && ship D1 P && down
k -C P audit export m.git >/dev/null
T_1=$(python3 -c 'import time; print(int(time.time() * 1000))')
sleep 1.1

# D1 writes 30 beneficiaries; D2, having seen it, writes 30 again
k -C D1 set model "$M" beneficiaries=30 >/dev/null && k -C D1 commit >/dev/null &&
	ship D1 P && ship P D2 &&
	k -C D2 set model "$M" beneficiaries=30 >/dev/null &&
	k -C D2 commit >/dev/null && ship D2 P
CS_D2=$(cs_of D2)
# a conflict: both set the owner without seeing each other
k -C D1 set model "$M" owner="Ông A" >/dev/null && k -C D1 commit >/dev/null
k -C D2 set model "$M" owner="Bà B" >/dev/null && k -C D2 commit >/dev/null
ship D1 P && ship D2 P
# a tag added, then removed by the other collector
k -C D1 set model "$M" tags+=cà-phê >/dev/null && k -C D1 commit >/dev/null &&
	ship D1 P && ship P D2 &&
	k -C D2 set model "$M" tags-=cà-phê >/dev/null &&
	k -C D2 commit >/dev/null && ship D2 P
# the reviewer recognises the model; D1, not knowing, edits after that
ship P R && k -C R set model "$M" status=recognized recognized_on=2026-01-05 \
	>/dev/null && k -C R commit >/dev/null
sleep 0.05
k -C D1 set model "$M" description="sửa sau khi công nhận" >/dev/null &&
	k -C D1 commit >/dev/null
ship R P && ship D1 P
check "the edits travel to the province" $? "$(err1)"
k -C P audit export m.git >/dev/null
check "the province exports its mirror" $? "$(err1)"

# ------------------------------------------------------- kheo history
run -C P history model "$M"
st=1
[ $rc -eq 0 ] && head -1 "$T/out" | grep -q "^model $M in $U: [0-9]* writes" &&
	grep -q 'set beneficiaries 30' "$T/out" && st=0
check "kheo history lists the record's writes for people" $st "exit $rc: $(out1) $(err1)"

st=1
[ "$(w 'len([x for x in ws if x["field"] == "beneficiaries"])')" = 2 ] &&
	[ "$(w '[x["changeset"] for x in ws if x["field"] == "beneficiaries" and x["state"] == "holds"]')" = "['$CS_D2']" ] &&
	[ "$(w '[x["superseded_by"]["changeset"] for x in ws if x["field"] == "beneficiaries" and x["state"] == "superseded"]')" = "['$CS_D2']" ] &&
	st=0
check "the same value written again: both writes listed, the second holds and superseded the first" $st \
	"$(k -C P history model "$M" --json | head -c 600)"

F="$U/model/$(echo "$M" | cut -c1-2)/$M.json"
GB=$(git -C m.git blame --porcelain main -- "$F" |
	awk '/^author /{a=$0} /^\t  "beneficiaries"/{print a}')
D1KEY=$(idj D1 key)
D2KEY=$(idj D2 key)
st=1
echo "$GB" | grep -q "${D1KEY%"${D1KEY#????????????????}"}" &&
	k -C P history model "$M" --blame >"$T/out" &&
	grep -A1 '^beneficiaries' "$T/out" | grep -q "collector ${D2KEY%"${D2KEY#????????????????}"}" &&
	st=0
check "where git blame names the first writer of an unchanged line, --blame names the write that holds" $st \
	"git: $GB; kheo: $(out1)"

SHOWN=$(k -C P get model "$M" --json | json 'd["owner"]')
st=1
[ "$(w 'sorted(x["state"] for x in ws if x["field"] == "owner")')" = "['competing', 'holds', 'superseded']" ] &&
	[ "$(w '[x["value"] for x in ws if x["field"] == "owner" and x["state"] == "holds"][0]')" = "$SHOWN" ] &&
	k -C P history model "$M" --blame >"$T/out" &&
	grep -A2 '^owner  *"'"$SHOWN"'"' "$T/out" | grep -q '(competing: a conflict)' &&
	st=0
check "a conflict: the value shown holds and is printed first, the other competes" $st "$(out1)"

st=1
[ "$(w '[(x["op"], x["state"]) for x in ws if x["field"] == "tags"]')" = "[('add', 'superseded'), ('remove', 'applied')]" ] &&
	[ "$(w '[x["author"] for x in ws if x["op"] == "remove"][0]')" = "$D2KEY" ] &&
	st=0
check "a tag added then removed: the add superseded, the remove listed with its author" $st \
	"$(w '[(x["op"], x["state"]) for x in ws if x["field"] == "tags"]')"

st=1
[ "$(w '[(x["role"], x["state"]) for x in ws if x["field"] == "description"]')" = "[('collector', 'foreign')]" ] &&
	[ "$(w '[(x["role"], x["state"]) for x in ws if x["field"] == "status"][-1]')" = "('reviewer', 'holds')" ] &&
	st=0
check "a collector's edit after the recognition is listed, never winning (foreign); the reviewer's status holds" $st \
	"$(w '[(x["field"], x["role"], x["state"]) for x in ws]')"

k -C D1 set model "$M" year=2026 >/dev/null
st=1
[ "$(k -C D1 history model "$M" --json | json '[(x["changeset"], x.get("pending"), x["state"]) for x in d["writes"] if x["field"] == "year"]')" = "[(None, True, 'holds')]" ] &&
	st=0
check "an edit not yet sealed is listed as pending" $st

# --------------------------------------------------- the mirror's answer
k -C P history model "$M" >node.log
k -C P history model "$M" --blame >node.blame
run audit log m.git model "$M"
st=1
[ $rc -eq 0 ] && cmp -s node.log "$T/out" && st=0
check "kheo audit log on the mirror prints what kheo history prints on the node" $st \
	"exit $rc: $(err1) $(diff node.log "$T/out" | head -5 | tr '\n' ' ')"
run audit blame m.git model "$M"
st=1
[ $rc -eq 0 ] && cmp -s node.blame "$T/out" && st=0
check "kheo audit blame on the mirror prints what kheo history --blame prints" $st \
	"exit $rc: $(err1) $(diff node.blame "$T/out" | head -5 | tr '\n' ' ')"

run audit log m.git model "$M" --received-until @"$T_1" --json
st=1
[ $rc -eq 0 ] && [ "$(json 'sorted(set(x["field"] for x in d["writes"]))' <"$T/out")" = \
	"['field', 'kind', 'name', 'owner', 'status', 'unit']" ] && st=0
check "audit log --received-until: only the writes the province held then" $st "exit $rc: $(out1) $(err1)"
st=0
ls "${TMPDIR:-/tmp}" | grep -q '^kheo-audit-log-' && st=1
check "audit log leaves no scratch folder behind" $st

# ------------------------------------------------------------- refusals
run -C P history nosuch "$M"
st=1; [ $rc -eq 1 ] && grep -q 'no table "nosuch"' "$T/err" && st=0
check "an unknown table is refused, named" $st "exit $rc: $(err1)"
run -C P history model 12zz
st=1; [ $rc -eq 1 ] && grep -q 'record id "12zz" is not 32 hex digits' "$T/err" && st=0
check "a malformed id is refused, named" $st "exit $rc: $(err1)"
run -C P history visit "$M"
st=1; [ $rc -eq 1 ] && grep -q "no visit with id $M" "$T/err" && st=0
check "a record of another table is not found" $st "exit $rc: $(err1)"
run audit blame P model "$M"
st=1; [ $rc -eq 1 ] && grep -q 'kheo: audit blame: ' "$T/err" && st=0
check "audit blame on a folder that is not a mirror is refused" $st "exit $rc: $(err1)"
run audit log m.git model "$M" --until yesterday
st=1; [ $rc -eq 2 ] && grep -q '"yesterday" is not a date' "$T/err" && st=0
check "a date that is not one is a usage error, named" $st "exit $rc: $(err1)"

finish
