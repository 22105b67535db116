#!/bin/sh
# mirrord.sh - kheod keeping an audit mirror (audit_mirror in kheod.conf):
# after a session that applied changesets it appends them to the mirror,
# off the event loop.  Prints TAP.
#
#   BUILD=build sh tests/integration/mirrord.sh   (from the repository root)
#
# A province, a hub served by kheod with audit_mirror set, and a device
# enrolled under it: each sync of the device that brings changesets is
# followed by an export (its log line), the mirror then holds one commit
# per changeset the hub applied and verifies; a sync that brings nothing
# exports nothing; a relative path is refused.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/daemon.sh"
daemon_setup mirrord
cli_need git

# count FILE PATTERN: lines of FILE matching PATTERN
count() { c=$(grep -c -- "$2" "$1" 2>/dev/null); echo "${c:-0}"; }
# until_count FILE PATTERN N: until FILE has N lines matching (10 s)
until_count() {
	i=0
	while [ "$(count "$1" "$2")" -lt "$3" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		sleep 0.1
	done
	return 0
}
applied() {
	k -C H log --json | python3 -c 'import json, sys
print(len([c for c in json.load(sys.stdin) if c["state"] == "applied"]))'
}

PROV=dak-nong
CJ=dak-nong/cu-jut
U=$CJ/ea-po
k -C P init --role province --unit $PROV >/dev/null
ROOTFP=$(idj P root)
k -C H init --role hub --unit $CJ >/dev/null
enrol H P hub $CJ
k -C D init --role device --unit $U >/dev/null
enrol D H collector $U
st=1
[ "$(idj H mode)" = enforcing ] && [ "$(idj D mode)" = enforcing ] && st=0
check "a province, a hub and a device, enrolled" $st

printf 'audit_mirror = mirror.git\n' >rel.conf
"$KHEOD" --config rel.conf --check >"$T/out" 2>"$T/err"
st1=$?
st=1
[ $st1 -eq 1 ] && grep -q 'audit_mirror: "mirror.git".*absolute' "$T/err" && st=0
check "a relative audit_mirror is refused, named" $st "exit $st1: $(err1)"

HP=$(freeport)
printf 'audit_mirror = %s/m.git\nupstream = off\n' "$T" >hub.conf
daemon hub.log -C H --config hub.conf --listen 127.0.0.1:$HP
st=$?
HUB=$pid
check "kheod starts with audit_mirror set" $st "$(tail -3 hub.log)"

# round 1: a model and an edit, synced
M=$(k -C D put model name="Hợp tác xã cà phê" kind=collective \
	field=economy unit=$U)
k -C D set model "$M" beneficiaries=12 >/dev/null
k -C D commit >/dev/null
run -C D sync 127.0.0.1:$HP
st=1
[ $rc -eq 0 ] && until_count hub.log "audit mirror $T/m.git: [0-9]* commits appended" 1 &&
	[ "$(git -C m.git rev-list --count main)" -eq "$(applied)" ] && st=0
check "a sync that applied changesets is followed by an export: a commit per changeset the hub applied" $st \
	"exit $rc: $(err1) $(tail -3 hub.log)"
run audit verify m.git
check "the mirror kheod wrote verifies" $rc "$(out1) $(err1)"

# round 2: more edits, another sync, appended on top
OLD=$(git -C m.git rev-parse main)
k -C D set model "$M" status=building >/dev/null
k -C D commit >/dev/null
run -C D sync 127.0.0.1:$HP
st=1
[ $rc -eq 0 ] && until_count hub.log "audit mirror $T/m.git: [0-9]* commits appended" 2 &&
	[ "$(git -C m.git rev-list --count main)" -eq "$(applied)" ] &&
	git -C m.git merge-base --is-ancestor "$OLD" main &&
	[ -f m.git/kheo-rebuild.db ] && st=0
check "the next sync's changesets are appended on top, from the kept rebuild" $st \
	"exit $rc: $(err1) $(tail -3 hub.log)"

# a sync that brings nothing exports nothing
nlog=$(count hub.log "audit mirror")
run -C D sync 127.0.0.1:$HP
sleep 0.5
st=1
[ $rc -eq 0 ] && [ "$(count hub.log "audit mirror")" -eq "$nlog" ] && st=0
check "a sync that applied nothing exports nothing" $st "exit $rc: $(tail -3 hub.log)"

run audit replay m.git --received-until @99999999999999
st=1
[ $rc -eq 0 ] && [ "$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["digest"])' "$T/out")" = "$(k -C H digest)" ] && st=0
check "replaying the mirror gives the hub's state" $st "$(err1)"

kill -TERM $HUB
i=0
while kill -0 $HUB 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
wait $HUB
check "kheod stops with exit 0" $? "$(tail -3 hub.log)"

finish
