#!/bin/sh
# audit.sh - the audit mirror with the real kheo CLI and stock git
# (issue 6; docs/auditor.md).  Prints TAP.
#
#   BUILD=build sh tests/integration/audit.sh      (from the repository root)
#
# A province P and two enrolled collectors: D1 edits a model over three
# rounds, each shipped to P by bundle and mirrored by P's `kheo audit
# export` (recording P's digest and the time after each round); D2 has its
# clock 30 days behind (tests/integration/pastclock.c) and seals a
# back-dated record.  Then: git fsck --strict, git log/show/blame on the
# record's file, verify, replay at each recorded moment and by clock, the
# incremental export, and every tampering case of the issue, each made
# with stock git on a clone (as an auditor holds it) and each expected to
# fail verify with its own message.
set -u

ROOT=$(pwd)
CLI_TIMEOUT=120
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup audit
cli_need git
# git as an auditor runs it: no user config, fixed identity for clones
export GIT_CONFIG_NOSYSTEM=1 HOME="$T" GIT_AUTHOR_NAME=auditor \
	GIT_AUTHOR_EMAIL=a@x GIT_COMMITTER_NAME=auditor GIT_COMMITTER_EMAIL=a@x
export FILTER_BRANCH_SQUELCH_WARNING=1

now_ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }
# moment: let the wall clock pass a whole second, so that nothing applied
# after a recorded time shares its second with it
moment() { sleep 1.1; }

. "$ROOT/tests/integration/lib/tool.sh"
build_tool pastclock
check "the past-clock tool builds against libkheo.a" $? "$(err1)"

# ---------------------------------------------------------------- nodes
U=dak-nong/cu-jut/ea-po
k -C P init --role province --unit dak-nong >/dev/null
ROOTFP=$(k -C P id --json | json 'd["root"]')
PKEY=$(k -C P id --json | json 'd["key"]')
enrol_by_p() { # DIR ROLE UNIT: made if missing, enrolled by P
	{ [ -f "$1/kheo.db" ] || k -C "$1" init --role device --unit "$3" >/dev/null; } &&
	k -C "$1" enroll request >"$1.req" &&
	k -C P enroll sign "$1.req" --role "$2" --unit "$3" >"$1.cert" &&
	k -C "$1" enroll accept "$1.cert" --root "$ROOTFP" >/dev/null
}
# ship FROM: FROM's changesets to P, P seals (its receipts) and exports
ship() {
	k -C "$1" bundle create "$1.khb" >/dev/null &&
	k -C P bundle apply "$1.khb" >/dev/null &&
	k -C P commit >/dev/null
}
# D2's clock is 30 days behind when it records, before it is enrolled: its
# certificate covers that work by chain position (docs/identity.md)
k -C D2 init --role device --unit $U >/dev/null
M2=$(./pastclock D2 30 model name="Back-dated" kind=individual \
	field=culture_society unit=$U status=registered 2>"$T/err")
check "D2 seals a record clocked 30 days back" $? "$(err1)"
enrol_by_p D1 collector $U && enrol_by_p D2 collector $U
check "a province and two enrolled collectors" $? "$(err1)"
D1KEY=$(k -C D1 id --json | json 'd["key"]')
D2KEY=$(k -C D2 id --json | json 'd["key"]')

# round 1
M1=$(k -C D1 put model name="Mô hình Ea Pô" kind=collective field=economy \
	unit=$U status=registered)
k -C D1 commit >/dev/null && ship D1 && k -C P bundle create p.khb >/dev/null &&
	k -C D1 bundle apply p.khb >/dev/null
run -C P audit export m.git
check "audit export makes a bare mirror" $rc "$(out1) $(err1)"
D_1=$(k -C P digest); T_1=$(now_ms); moment
C_1=$(git -C m.git rev-list --count main)

# round 2
k -C D1 set model "$M1" status=building beneficiaries=30 >/dev/null &&
	k -C D1 commit >/dev/null && ship D1
V1=$(k -C D1 put visit model="$M1" date=2024-05-02 kind=inspection \
	inspector="Y Bhin" rating=good unit=$U)
k -C D1 commit >/dev/null && ship D1
APPLIED_BEFORE=$(k -C P log --json | json 'len([c for c in d if c["state"] == "applied"])')
OLD_TIP=$(git -C m.git rev-parse main)
run -C P audit export m.git
D_2=$(k -C P digest); T_2=$(now_ms); moment
APPLIED_AFTER=$(k -C P log --json | json 'len([c for c in d if c["state"] == "applied"])')
C_2=$(git -C m.git rev-list --count main)
st=1
[ $rc -eq 0 ] && [ $((C_2 - C_1)) -eq $((APPLIED_AFTER - C_1)) ] &&
	[ "$C_2" -eq "$APPLIED_AFTER" ] &&
	git -C m.git merge-base --is-ancestor "$OLD_TIP" main && st=0
check "a second export appends one commit per changeset applied since, on top of the old head" $st \
	"exit $rc: $(out1) $(err1)" "commits $C_1 -> $C_2, applied $APPLIED_BEFORE -> $APPLIED_AFTER"
run -C P audit export m.git
st=1
[ $rc -eq 0 ] && grep -q "up to date" "$T/out" &&
	[ "$(git -C m.git rev-list --count main)" -eq "$C_2" ] && st=0
check "an export with nothing new adds nothing" $st "$(out1) $(err1)"

# round 3: a tag, a second value, and the back-dated device
k -C D1 set model "$M1" tags+=cà-phê tags+=hợp-tác-xã status=review >/dev/null &&
	k -C D1 commit >/dev/null && ship D1
ship D2
run -C P audit export m.git
D_3=$(k -C P digest); T_3=$(now_ms)
check "the third export" $rc "$(out1) $(err1)"

# ------------------------------------------------------------ stock git
run_git() { git -C m.git "$@" >"$T/out" 2>"$T/err"; rc=$?; }
run_git fsck --strict --no-dangling
check "git fsck --strict passes on the mirror" $rc "$(err1) $(out1)"
F="$U/model/$(echo "$M1" | cut -c1-2)/$M1.json"
run_git log --format='%an|%s' -- "$F"
st=1
[ "$(wc -l <"$T/out")" -eq 3 ] && grep -q "collector ${D1KEY%"${D1KEY#????????????????}"} $U|$U: put model" "$T/out" &&
	grep -q "set model ${M1%"${M1#????????}"} status" "$T/out" && st=0
check "git log on the record's file: its put and two sets, by D1 (role, key, unit)" $st "$(out1)"
run_git blame --porcelain main -- "$F"
BENEF_C=$(awk '/^[0-9a-f]+ [0-9]+ [0-9]+/{c=$1} /^\t  "beneficiaries": 30,/{print c}' "$T/out")
STATUS_C=$(awk '/^[0-9a-f]+ [0-9]+ [0-9]+/{c=$1} /^\t  "status": "review",/{print c}' "$T/out")
NAME_C=$(awk '/^[0-9a-f]+ [0-9]+ [0-9]+/{c=$1} /^\t  "name": /{print c}' "$T/out")
st=1
[ -n "$BENEF_C" ] && [ -n "$STATUS_C" ] && [ -n "$NAME_C" ] &&
	[ "$BENEF_C" != "$STATUS_C" ] && [ "$BENEF_C" != "$NAME_C" ] &&
	git -C m.git show -s --format=%B "$BENEF_C" | grep -q "beneficiaries\|status" &&
	git -C m.git show -s --format=%ae "$STATUS_C" | grep -q "^$D1KEY@kheo$" && st=0
check "git blame: name, beneficiaries and status each from the commit that set them" $st \
	"name $NAME_C benef $BENEF_C status $STATUS_C"
run_git show "$BENEF_C:$F"
st=1
grep -q '"status": "building"' "$T/out" && grep -q '"beneficiaries": 30' "$T/out" &&
	! grep -q '"tags": \[$' "$T/out" && st=0
check "git show COMMIT:FILE is the record as it was then" $st "$(out1)"
run_git show -s --format='%(trailers:key=Kheo-Changeset,valueonly)%(trailers:key=Kheo-Certificate,valueonly)' "$STATUS_C"
st=1
[ "$(head -1 "$T/out" | wc -c)" -eq 65 ] && grep -q " collector $U" "$T/out" && st=0
check "git reads the trailers: the changeset id and the author's certificate" $st "$(out1)"
st=1
[ "$(git -C m.git show -s --format=%cn main)" = "province ${PKEY%"${PKEY#????????????????}"} dak-nong" ] && st=0
check "the committer is the mirroring node" $st "$(git -C m.git show -s --format=%cn main)"

# --------------------------------------------------------------- verify
run audit verify m.git
st=1
[ $rc -eq 0 ] && grep -q "verified (0 errors" "$T/out" && st=0
check "audit verify passes on the genuine mirror" $st "$(out1) $(err1)"
st=1
grep -q "^warning: back-dated .*${D2KEY%"${D2KEY#????????????????}"}.*$U useq 1 is clocked" "$T/out" &&
	[ "$(grep -c back-dated "$T/out")" -eq 1 ] && st=0
check "the back-dated changeset (D2, 30 days before its receipt) is reported, and only it" $st "$(out1)"
run audit verify m.git --backdate-days 40
st=1
[ $rc -eq 0 ] && ! grep -q back-dated "$T/out" && st=0
check "with a bound of 40 days it is not back-dated" $st "$(out1)"
run audit verify m.git --json
st=1
[ $rc -eq 0 ] && [ "$(json 'd["ok"] and d["errors"] == 0 and d["warnings"] == 1' <"$T/out")" = True ] && st=0
check "audit verify --json" $st "$(out1)"

# --------------------------------------------------------------- replay
for i in 1 2 3; do
	eval "t=\$T_$i d=\$D_$i"
	run audit replay m.git --received-until "@$t"
	got=$(json 'd["digest"]' <"$T/out" 2>/dev/null)
	st=1
	[ $rc -eq 0 ] && [ "$got" = "$d" ] && st=0
	check "replay --received-until (moment $i) is the digest P printed then" $st \
		"exit $rc: want $d got $got $(err1)"
done
run audit replay m.git --received-until "@$T_1" --out R1
st=1
[ $rc -eq 0 ] && [ "$(k -C R1 digest)" = "$D_1" ] &&
	k -C R1 get model "$M1" --json | json 'd["status"]' | grep -qx registered &&
	! k -C R1 get visit "$V1" >/dev/null 2>&1 &&
	[ "$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select status from model where id = ?", (sys.argv[2],)).fetchone()[0])' R1/kheo.db "$M1")" = registered ] &&
	st=0
check "replay --out DIR is a data directory the CLI and sqlite read, as P held it at moment 1" $st \
	"exit $rc: $(out1) $(err1)"
run audit replay m.git --received-until "@$T_1" --out R1
st=1
[ $rc -eq 1 ] && grep -q "R1 already holds a kheo node" "$T/err" && st=0
check "replay --out refuses a folder that holds a node" $st "$(err1)"
# by clock: 10 days ago, only D2's back-dated record was clocked
run audit replay m.git --until "@$(( $(now_ms) - 10 * 86400000 ))"
st=1
[ $rc -eq 0 ] && [ -n "$M2" ] && [ "$(json '",".join(r["id"] for r in d["records"] if r["_table"] in ("model", "visit"))' <"$T/out")" = "$M2" ] && st=0
check "replay --until 10 days ago: only the record clocked 30 days back" $st "$(out1) $(err1)"
run audit replay m.git --until "@$T_3"
st=1
[ $rc -eq 0 ] && [ "$(json 'd["digest"]' <"$T/out")" = "$D_3" ] && st=0
check "replay --until now: everything" $st "$(out1) $(err1)"
run audit replay m.git --until 2024-02-30
st=1
[ $rc -eq 2 ] && grep -q '"2024-02-30" is not a date' "$T/err" && st=0
check "a date that does not exist is refused, named" $st "$(err1)"
run audit replay m.git
check "replay without a date is a usage error" $([ $rc -eq 2 ]; echo $?) "$(err1)"

# --------------------------------------------------------- refusals
run audit verify nowhere.git
st=1
[ $rc -eq 1 ] && grep -q "nowhere.git is not a git repository" "$T/err" && st=0
check "verify of a folder that is not a repository" $st "$(err1)"
mkdir other && git -C other init -q && echo x >other/f && git -C other add f &&
	git -C other commit -qm x
run audit verify other
st=1
[ $rc -eq 1 ] && grep -q "not a kheo mirror" "$T/err" && st=0
check "verify of a git repository that is not a mirror" $st "$(err1)"
run -C D1 audit export m.git
st=1
[ $rc -eq 1 ] && grep -q "mirrors node ${PKEY%"${PKEY#????????????????}"}" "$T/err" && st=0
check "another node's export into the mirror is refused" $st "$(err1)"

# ------------------------------------------------------------ tampering
# Each on a fresh clone, with stock git; verify must fail (exit 1) and say
# what and where.  recommit DIR rewrites the history commit by commit with
# git commit-tree, keeping trees, messages and idents unless told:
#   DROP=n      leave commit n out (history rewritten)
#   GAP=n       leave commit n out and its changeset file out of every later
#               tree, renumbering Kheo-Seq (a changeset dropped cleanly)
#   ADATE=n:S   give commit n the author date @S
#   CDATE=n:S   give commit n the committer date @S
recommit() {
	rc_dir=$1
	rc_prev= rc_i=0 rc_seq=0 rc_gapfile=
	for rc_c in $(git -C "$rc_dir" rev-list --reverse HEAD); do
		rc_i=$((rc_i + 1))
		if [ "${DROP:-0}" -eq $rc_i ]; then continue; fi
		if [ "${GAP:-0}" -eq $rc_i ]; then
			rc_id=$(git -C "$rc_dir" show -s --format='%(trailers:key=Kheo-Changeset,valueonly)' "$rc_c" | head -1)
			rc_gapfile=_changesets/$(echo "$rc_id" | cut -c1-2)/$(echo "$rc_id" | cut -c3-4)/$(echo "$rc_id" | cut -c5-).kcs
			continue
		fi
		rc_seq=$((rc_seq + 1))
		rc_tree=$(git -C "$rc_dir" rev-parse "$rc_c^{tree}")
		if [ -n "$rc_gapfile" ]; then
			GIT_INDEX_FILE=$T/gap.idx git -C "$rc_dir" read-tree "$rc_tree"
			GIT_INDEX_FILE=$T/gap.idx git -C "$rc_dir" rm -q --cached "$rc_gapfile"
			rc_tree=$(GIT_INDEX_FILE=$T/gap.idx git -C "$rc_dir" write-tree)
		fi
		git -C "$rc_dir" cat-file commit "$rc_c" | sed '1,/^$/d' >"$T/msg"
		[ -n "$rc_gapfile" ] && sed -i "s/^Kheo-Seq: .*/Kheo-Seq: $rc_seq/" "$T/msg"
		rc_ad=$(git -C "$rc_dir" show -s --format=%at "$rc_c")
		rc_cd=$(git -C "$rc_dir" show -s --format=%ct "$rc_c")
		case ${ADATE:-} in "$rc_i":*) rc_ad=${ADATE#*:} ;; esac
		case ${CDATE:-} in "$rc_i":*) rc_cd=${CDATE#*:} ;; esac
		rc_prev=$(GIT_AUTHOR_NAME="$(git -C "$rc_dir" show -s --format=%an "$rc_c")" \
			GIT_AUTHOR_EMAIL="$(git -C "$rc_dir" show -s --format=%ae "$rc_c")" \
			GIT_AUTHOR_DATE="@$rc_ad +0000" \
			GIT_COMMITTER_NAME="$(git -C "$rc_dir" show -s --format=%cn "$rc_c")" \
			GIT_COMMITTER_EMAIL="$(git -C "$rc_dir" show -s --format=%ce "$rc_c")" \
			GIT_COMMITTER_DATE="@$rc_cd +0000" \
			git -C "$rc_dir" commit-tree "$rc_tree" ${rc_prev:+-p $rc_prev} -F "$T/msg")
	done
	git -C "$rc_dir" reset -q --hard "$rc_prev"
}
clone() { rm -rf "$1" && git clone -q m.git "$1"; }
# tampered NAME DIR PATTERN...: verify DIR exits 1 and every pattern is
# on its output
tampered() {
	tp_name=$1 tp_dir=$2
	shift 2
	run audit verify "$tp_dir"
	tp_st=1
	if [ $rc -eq 1 ] && grep -q "ALTERED" "$T/out"; then
		tp_st=0
		for tp_p in "$@"; do
			grep -q -- "$tp_p" "$T/out" || { tp_st=1; tp_missing=$tp_p; }
		done
	fi
	check "$tp_name" $tp_st "exit $rc, missing \"${tp_missing:-}\": $(head -c 600 "$T/out" | tr '\n' ' ') $(err1)"
}
# the commit that made round 2's first set
N_SET=$(git -C m.git rev-list --reverse main | grep -n "$BENEF_C" | cut -d: -f1)

clone c1
(cd c1 && git filter-branch --tree-filter \
	"[ -f '$F' ] && sed -i 's/\"name\": .*/\"name\": \"Mô hình khác\",/' '$F' || true" HEAD) \
	>/dev/null 2>&1
tampered "a record file edited in every commit: reported at the first, with its path" c1 \
	"^error: edited at commit 6 ([0-9a-f]*) $F: edited: differs from the state rebuilt"
run audit replay c1 --received-until "@$T_3"
st=1
[ $rc -eq 0 ] && [ "$(json 'd["digest"]' <"$T/out")" = "$D_3" ] && st=0
check "replay of the edited clone still gives the signed state" $st "$(err1)"

clone c2
KCS=$(git -C c2 show --format= --name-only "$BENEF_C" | grep '^_changesets/')
(cd c2 && git filter-branch --tree-filter "[ -f '$KCS' ] && python3 -c '
import sys; p = sys.argv[1]; b = bytearray(open(p, \"rb\").read())
b[-3] ^= 1; open(p, \"wb\").write(b)' '$KCS' || true" HEAD) >/dev/null 2>&1
tampered "a changeset's byte flipped: it does not verify, named" c2 \
	"^error: changeset at commit $N_SET ([0-9a-f]*) $KCS: the changeset does not verify"

clone c2b
KCS=$(git -C c2b show --format= --name-only "$STATUS_C" | grep '^_changesets/')
N_STATUS=$(git -C m.git rev-list --reverse main | grep -n "$STATUS_C" | cut -d: -f1)
(cd c2b && git filter-branch --tree-filter "[ -f '$KCS' ] && python3 -c '
import sys; p = sys.argv[1]; b = bytearray(open(p, \"rb\").read())
b[20] ^= 1; open(p, \"wb\").write(b)' '$KCS' || true" HEAD) >/dev/null 2>&1
tampered "a bit of a changeset's signature flipped: bad signature, named" c2b \
	"^error: changeset at commit $N_STATUS ([0-9a-f]*) $KCS: the changeset does not verify (bad-signature"

clone c3
DROP=3 recommit c3
tampered "a commit removed from the middle: history rewritten" c3 \
	"^error: history at commit 3 ([0-9a-f]*): history rewritten: this is commit 3 from the first, but says Kheo-Seq 4"

clone c4
GAP=$N_SET recommit c4
tampered "a changeset dropped cleanly (file and commit, Kheo-Seq renumbered): chain gap" c4 \
	"^error: chain-gap .*: chain gap: ${D1KEY%"${D1KEY#????????????????}"}... $U useq 3 follows a changeset the mirror does not hold"

clone c5
ADATE="$N_SET:1000000000" recommit c5
tampered "an author date rewritten: not the changeset's clock" c5 \
	"^error: dates at commit $N_SET ([0-9a-f]*): author date 1000000000 is not the changeset's clock"

clone c6
CDATE="$N_SET:1000000000" recommit c6
tampered "a committer date rewritten: not when the node applied it" c6 \
	"^error: dates at commit $N_SET ([0-9a-f]*): committer date 1000000000 is not when the node applied"

clone c7
(cd c7 && git commit -q --allow-empty -m "a note slipped in")
tampered "a commit added at the end" c7 "^error: history at commit $((C_2 + 0))\|not a mirror commit: no Kheo-Changeset trailer"

clone c8
(cd c8 && git filter-branch --msg-filter "sed 's/^Kheo-Receipt: none$/Kheo-Receipt: useq 9 held by the province at 2024-01-01T00:00:00.000Z/'" HEAD) \
	>/dev/null 2>&1
tampered "a trailer edited: message altered" c8 "^error: message at commit .*: message altered: \"Kheo-Receipt: useq 9"

# An altered mirror is not appended to.
cp -r c1/.git m2.git && git -C m2.git config core.bare true
run -C P audit export m2.git
st=1
[ $rc -eq 1 ] && grep -q "m2.git does not verify, nothing appended" "$T/err" && st=0
check "export refuses to append to an altered mirror" $st "$(err1)"

# The rebuild an export keeps beside the mirror is taken up only when the
# mirror's head is the one it is the state of: a head rewritten in place
# (the kept rebuild still there) is verified in full, and refused.
st=1
[ -f m.git/kheo-rebuild.db ] && [ ! -e m.git/kheo-rebuild.work ] && st=0
check "an export keeps its rebuild beside the mirror, keyed by the head" $st "$(ls m.git)"
cp -r m.git m3.git
H3=$(git -C m3.git rev-parse main)
NEWH=$(git -C m3.git cat-file commit "$H3" | sed '1,/^$/d' |
	sed 's/^Kheo-Receipt: none$/Kheo-Receipt: useq 9 held by the province at 2024-01-01T00:00:00.000Z/' |
	git -C m3.git commit-tree "$H3^{tree}" -p "$H3^")
git -C m3.git update-ref refs/heads/main "$NEWH"
run -C P audit export m3.git
st=1
[ $rc -eq 1 ] && grep -q "m3.git does not verify, nothing appended" "$T/err" &&
	[ "$(git -C m3.git rev-parse main)" = "$NEWH" ] && st=0
check "a head rewritten beside a kept rebuild: verified in full, refused" $st "exit $rc: $(err1)"
rm -f m.git/kheo-rebuild.db
run -C P audit export m.git
st=1
[ $rc -eq 0 ] && grep -q "up to date" "$T/out" && [ -f m.git/kheo-rebuild.db ] && st=0
check "without its kept rebuild, an export verifies the history and keeps one again" $st "$(out1) $(err1)"

finish
