#!/bin/sh
# mirror-signed.sh - every mirror commit is signed by the mirroring node
# (OpenSSH's SSHSIG, the format of git's gpg.format=ssh), so stock git
# verifies the mirror as kheo audit verify does, and what verify could
# only bound before (a received time moved within its neighbours, its
# trailer edited to match) is now an error.  Prints TAP.
#
#   BUILD=build sh tests/integration/mirror-signed.sh   (from the repo root)
#
# A province P and an enrolled collector D; P exports its mirror.  Stock
# git (with ssh-keygen) verifies every commit against the signing key the
# mirror's facts publish; then the head commit is re-made three ways on
# clones, each refused by both kheo audit verify and git verify-commit:
# its Kheo-Applied moved by a millisecond (signature kept), the same with
# the signature stripped, and signed by another key.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup mirror-signed
cli_need git ssh-keygen
export GIT_CONFIG_NOSYSTEM=1 HOME="$T" GIT_AUTHOR_NAME=x \
	GIT_AUTHOR_EMAIL=x@x GIT_COMMITTER_NAME=x GIT_COMMITTER_EMAIL=x@x

U=dak-nong/cu-jut/ea-po
k -C P init --role province --unit dak-nong >/dev/null
ROOTFP=$(idj P root)
k -C D init --role device --unit $U >/dev/null
enrol D P collector $U
M=$(k -C D put model name="Mô hình ký" kind=collective field=economy unit=$U \
	status=registered)
k -C D set model "$M" beneficiaries=12 >/dev/null
k -C D commit >/dev/null && k -C D bundle create d.khb >/dev/null &&
	k -C P bundle apply d.khb >/dev/null && k -C P commit >/dev/null
run -C P audit export m.git
check "the province exports its mirror" $rc "$(out1) $(err1)"

# the allowed-signers file an auditor writes, from the mirror's facts,
# after checking the node key in them against the one they know
KEY=$(git -C m.git show main:_kheo/mirror.json | json 'd["signing_key"]')
NODE=$(git -C m.git show main:_kheo/mirror.json | json 'd["node"]')
echo "kheo-mirror $KEY" >allowed
st=1
[ "$NODE" = "$(idj P key)" ] && case $KEY in "ssh-ed25519 AAAA"*) st=0 ;; esac
check "mirror.json publishes the node's key as an SSH signing key" $st "$KEY"

gv() { # COMMIT [REPO]: stock git verify-commit with that key
	git -C "${2:-m.git}" -c gpg.format=ssh \
		-c gpg.ssh.allowedSignersFile="$T/allowed" verify-commit "$1" \
		>"$T/gv" 2>&1
}
st=0 ncommits=0
for c in $(git -C m.git rev-list main); do
	ncommits=$((ncommits + 1))
	gv "$c" || st=1
done
check "stock git verify-commit accepts each of the $ncommits commits" $st "$(head -c 300 "$T/gv")"
run audit verify m.git
check "kheo audit verify passes" $rc "$(out1) $(err1)"

# remake MODE: a clone whose head commit is re-made (keep: the Kheo-Applied
# trailer a millisecond later, the signature kept; strip: the same without
# the signature; other: the original bytes signed by another key)
ssh-keygen -q -t ed25519 -N '' -f other >/dev/null
remake() {
	rm -rf c.git
	git clone -q --bare m.git c.git
	git -C c.git cat-file commit main >head.raw
	python3 - "$1" <<'EOF'
import re, sys
mode = sys.argv[1]
raw = open("head.raw", "rb").read().decode()
head, _, msg = raw.partition("\n\n")
lines = head.split("\n")
# drop the gpgsig header and its continuation lines
keep, skip = [], False
for l in lines:
    if l.startswith("gpgsig "):
        skip = True
        continue
    if skip and l.startswith(" "):
        continue
    skip = False
    keep.append(l)
sig = [l for l in lines if l.startswith("gpgsig ") or l.startswith(" ")]
if mode != "other":
    m = re.search(r"Kheo-Applied: (.*)\.(\d{3})Z", msg)
    ms = (int(m.group(2)) + 1) % 1000
    msg = msg.replace(m.group(0), "Kheo-Applied: %s.%03dZ" % (m.group(1), ms))
if mode == "keep":
    keep = keep + sig  # the header goes after the committer line
out = "\n".join(keep) + "\n\n" + msg
open("head.new", "wb").write(out.encode())
EOF
	if [ "$1" = other ]; then
		# git commit-tree -S: the same tree, parent and message, signed
		# with another key (dates from the original)
		tree=$(git -C c.git rev-parse main^{tree})
		parent=$(git -C c.git rev-parse main^)
		new=$(sed -n '/^$/,$p' head.new | tail -n +2 |
			git -C c.git -c gpg.format=ssh \
				-c user.signingkey="$T/other" commit-tree -S \
				-p "$parent" "$tree")
	else
		new=$(git -C c.git hash-object -t commit -w "$T/head.new")
	fi
	git -C c.git update-ref refs/heads/main "$new"
}

remake keep
run audit verify c.git
st=1
[ $rc -eq 1 ] && grep -q '^error: signature at commit [0-9]* .*does not match its bytes' "$T/out" && st=0
check "a received time moved by a millisecond, its trailer edited to match, signature kept: verify names the commit" $st \
	"exit $rc: $(out1) $(err1)"
gv main c.git
check "... and stock git verify-commit refuses it" "$([ $? -ne 0 ]; echo $?)" "$(head -c 300 "$T/gv")"

remake strip
run audit verify c.git
st=1
[ $rc -eq 1 ] && grep -q '^error: signature at commit [0-9]* .*: the commit is not signed' "$T/out" && st=0
check "the same without its signature: not signed" $st "exit $rc: $(out1) $(err1)"

remake other
run audit verify c.git
st=1
[ $rc -eq 1 ] && grep -q '^error: signature at commit [0-9]* .*: it is signed by [0-9a-f]*…, not by the mirrored node' "$T/out" && st=0
check "the head commit signed by another key: not the mirrored node" $st "exit $rc: $(out1) $(err1)"
gv main c.git
check "... and stock git verify-commit refuses it" "$([ $? -ne 0 ]; echo $?)" "$(head -c 300 "$T/gv")"

# an export needs the node's key: a replayed data directory has none
k audit replay m.git --received-until @99999999999999 --out R >/dev/null
run -C R audit export r.git
st=1
[ $rc -eq 1 ] && grep -q "audit export signs the mirror with this node's key" "$T/err" && st=0
check "export from a data directory without the node's key is refused, saying why" $st "exit $rc: $(err1)"

finish
