#!/bin/sh
# revoked-mirror.sh - a changeset taken back by a revocation after it was
# mirrored (issue 6).  Prints TAP.
#
#   BUILD=build sh tests/integration/revoked-mirror.sh   (from the repo root)
#
# A hub H mirrors a collector's second changeset, which the province P
# has not seen when it revokes the collector (up to the first).  The
# revocation reaches H, which takes the second changeset back.  The
# mirror's history is not rewritten: the next export appends the
# revocation, whose tree drops the taken-back edit; verify passes and
# warns, naming both commits; replay at either moment gives the digest H
# printed then.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup revoked-mirror
cli_need git
export GIT_CONFIG_NOSYSTEM=1 HOME="$T"

U=dak-nong/cu-jut/ea-po
k -C P init --role province --unit dak-nong >/dev/null
ROOTFP=$(idj P root)
k -C H init --role hub --unit dak-nong/cu-jut >/dev/null
k -C D init --role device --unit $U >/dev/null
enrol H P hub dak-nong/cu-jut && enrol D H collector $U
check "a province, a hub and a collector enrolled by the hub" $? "$(err1)"
ship() { # FROM TO
	k -C "$1" bundle create "$1.khb" >/dev/null 2>"$T/err" &&
		k -C "$2" bundle apply "$1.khb" >/dev/null 2>"$T/err"
}
now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }

ship P H && ship H D
M=$(k -C D put model name="Mô hình A" kind=collective field=economy \
	unit=$U status=registered)
k -C D commit >/dev/null && ship D H && ship D P
k -C D set model "$M" name="Sửa sau" >/dev/null && k -C D commit >/dev/null &&
	ship D H
run -C H audit export m.git
check "the hub mirrors both of the collector's changesets" $rc "$(out1) $(err1)"
CS2=$(k -C H log --json | json '[c["id"] for c in d if c["useq"] == 2 and c["unit"] == "'$U'"][0]')
C2=$(git -C m.git rev-parse main)
DIG_1=$(k -C H digest)
T_1=$(now_ms)
sleep 1.1

# the province revokes the collector up to what it holds (useq 1)
k -C P revoke "$(idj D key)" --reason "lost phone" >/dev/null 2>"$T/err" &&
	k -C P commit >/dev/null && k -C P bundle create P.khb >/dev/null
run -C H bundle apply P.khb
st=1
[ $rc -eq 1 ] && grep -q '1 changeset rejected' "$T/err" && st=0
check "the province revokes the collector; the revocation reaches the hub, which rejects one changeset (exit 1)" $st \
	"exit $rc: $(out1) $(err1)"
st=1
[ "$(k -C H get model "$M" --json | json 'd["name"]')" = "Mô hình A" ] &&
	k -C H quarantine --json | json '[q["reason"] for q in d]' | grep -q revoked &&
	st=0
check "the hub takes the second changeset back (quarantined, revoked)" $st

run -C H audit export m.git
st=1
[ $rc -eq 0 ] && grep -q '1 commit appended' "$T/out" &&
	git -C m.git merge-base --is-ancestor "$C2" main && st=0
check "the next export appends the revocation on top, the history unchanged" $st \
	"exit $rc: $(out1) $(err1)"
DIG_2=$(k -C H digest)

F="$U/model/$(echo "$M" | cut -c1-2)/$M.json"
st=1
git -C m.git show "$C2:$F" | grep -q '"name": "Sửa sau"' &&
	git -C m.git show "main:$F" | grep -q '"name": "Mô hình A"' &&
	[ "$(git -C m.git log --format=%H -1 -- "$F")" = "$(git -C m.git rev-parse main)" ] &&
	git -C m.git show --stat main | grep -q sys_revocation &&
	st=0
check "the record file: the edit at its commit, dropped by the revocation's commit (git log and show)" $st \
	"$(git -C m.git show "main:$F" | head -5 | tr '\n' ' ')"

run audit verify m.git
st=1
[ $rc -eq 0 ] && grep -q "^warning: taken-back at commit .* _changesets/$(echo "$CS2" | cut -c1-2)/.*: this commit takes back the changeset mirrored at commit [0-9]* (${C2%"${C2#????????????}"}).*revoked" "$T/out" &&
	grep -q 'verified (0 errors, 1 warning)' "$T/out" && st=0
check "verify passes and warns that the revocation took back the mirrored changeset, naming both commits" $st \
	"exit $rc: $(out1) $(err1)"

st=1
[ "$(k audit replay m.git --received-until @"$T_1" | json 'd["digest"]')" = "$DIG_1" ] &&
	[ "$(k audit replay m.git --received-until @99999999999999 | json 'd["digest"]')" = "$DIG_2" ] &&
	[ "$DIG_1" != "$DIG_2" ] && st=0
check "replay before and after the revocation gives the digests the hub printed then" $st

run audit log m.git model "$M"
st=1
[ $rc -eq 0 ] && ! grep -q 'Sửa sau' "$T/out" && st=0
check "the record's history no longer lists the taken-back write" $st "$(out1)"

finish
