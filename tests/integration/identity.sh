#!/bin/sh
# identity.sh - identity and authorisation end to end, through the kheo CLI
# and real processes, as DESIGN.md's "Identity and authorisation" and
# "Command-line contract" describe them.  Prints TAP.
#
#   BUILD=build sh tests/integration/identity.sh   (from the repository root)
#
# One province, two district hubs and a dozen devices, each its own data
# directory, exchange bundle files.  The script proves: the offline
# enrolment round trip (and its refusals), what a hub may certify, that
# every kind of bad changeset is quarantined with its reason at the next
# node and at the province while the good ones beside it apply, the
# review workflow with its approval lock, a unit merger, and that device,
# hub and province end with the same digest.  It does not test kheod or
# the network (sync), nor certificate expiry (that needs a clock).
#
# Changesets form chains per (author, unit); a rejected one blocks its
# chain's later changesets by design, so every rejection case has its own
# device, and the comment at each case names the chain it uses.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup identity

# field DIR TABLE ID NAME: one field of a record ("None" if unset)
field() { k -C "$1" get "$2" "$3" --json | json "d.get(\"$4\")"; }
# has DIR TABLE ID: the record is visible on the node
has() { k -C "$1" get "$2" "$3" >/dev/null 2>&1; }
# csid DIR UNIT USEQ: the id of the node's own changeset (UNIT, USEQ)
csid() {
	k -C "$1" log --json | json "next((c['id'] for c in d if c['mine'] and c['unit'] == '$2' and c['useq'] == $3), '')"
}
# reason DIR CSID: the quarantine reason of a changeset ("none" if absent)
reason() {
	k -C "$1" quarantine --json | json "next((c['reason'] for c in d if c['id'] == '$2'), 'none')"
}
# nquar DIR: how many changesets the node holds in quarantine
nquar() { k -C "$1" quarantine --json | json 'len(d)'; }
# counts: $applied, $held and $rejected as the last bundle apply printed
# them ("x" when it printed none)
counts() {
	# shellcheck disable=SC2046 # three numbers, split on purpose
	set -- $(sed -n 's/.* \([0-9]*\) applied, \([0-9]*\) held, \([0-9]*\) rejected.*/\1 \2 \3/p' "$T/out")
	applied=${1:-x} held=${2:-x} rejected=${3:-x}
}
# snap DIR: a fingerprint of the node's trust state and history
snap() {
	for what in "id --json" "log --json" "quarantine --json"; do
		k -C "$1" $what 2>&1
		echo "exit $?"
	done | cksum
}
# ship FROM TO: a full bundle of FROM applied on TO (status in $rc)
ship() {
	k -C "$1" bundle create "$1-to-$2.khb" >/dev/null 2>"$T/err" || {
		rc=99
		return
	}
	run -C "$2" bundle apply "$1-to-$2.khb"
}

PROV=dak-nong
CJ=dak-nong/cu-jut            # district of hub H1
KN=dak-nong/krong-no          # district of hub H2
U=$CJ/ea-po                   # device D1 and reviewer RV; the digest unit

# ------------------------------------------------ 1. enrolment round trip

run -C P init --role province --unit $PROV
ROOTFP=$(idj P root)
PKEY=$(idj P key)
st=1
[ $rc -eq 0 ] && [ "$ROOTFP" = "$PKEY" ] && [ "$(idj P mode)" = enforcing ] &&
	[ "$(idj P cert_role)" = province ] && st=0
check "province init makes the root: enforcing, root = its own key, cert_role province" $st "exit $rc: $(err1)"

k -C H1 init --role hub --unit $CJ >/dev/null
st=1
[ "$(idj H1 mode)" = open ] && [ "$(idj H1 root)" = None ] &&
	[ "$(idj H1 cert_role)" = None ] && st=0
check "a new hub is in open mode: no root, no certificate role" $st

run -C H1 enroll request
cp "$T/out" H1.req
st=1
[ $rc -eq 0 ] && [ "$(wc -l <H1.req)" -eq 1 ] && grep -q '^kheo-req1:' H1.req && st=0
check "enroll request prints one kheo-req1: line" $st "exit $rc: $(out1) $(err1)"

run -C P enroll sign H1.req --role hub --unit $CJ
cp "$T/out" H1.cert
st=1
[ $rc -eq 0 ] && [ "$(wc -l <H1.cert)" -eq 1 ] && grep -q '^kheo-cert1:' H1.cert && st=0
check "the province signs the hub's request as a hub for its district: one kheo-cert1: line" $st "exit $rc: $(err1)"

run -C H1 enroll accept H1.cert --root "$ROOTFP"
st=1
[ $rc -eq 0 ] && [ "$(idj H1 mode)" = enforcing ] && [ "$(idj H1 root)" = "$ROOTFP" ] &&
	[ "$(idj H1 cert_role)" = hub ] && [ "$(idj H1 cert_scope)" = $CJ ] && st=0
check "the hub accepts with --root: enforcing, cert_role hub, scope its district, the province's root" $st "exit $rc: $(err1)"

k -C H2 init --role hub --unit $KN >/dev/null
enrol H2 P hub $KN
st=1
[ "$(idj H2 mode)" = enforcing ] && [ "$(idj H2 cert_role)" = hub ] && st=0
check "a second hub (another district) is enrolled by the province" $st "$(err1)"

# Another deployment's root, for wrong-root and foreign-device cases.
k -C P2 init --role province --unit $PROV >/dev/null
ROOT2=$(idj P2 root)

k -C D1 init --role device --unit $U >/dev/null
st=1
[ "$(idj D1 mode)" = open ] && [ "$(idj D1 root)" = None ] && st=0
check "a new device is in open mode" $st

# The request shown as a QR code ends with the same text line, and that
# line is what the hub signs.
run -C D1 enroll request --qr
tail -n 1 "$T/out" >D1.req
st=1
[ $rc -eq 0 ] && [ "$(wc -l <"$T/out")" -gt 10 ] && grep -q '^kheo-req1:' D1.req && st=0
check "enroll request --qr draws a QR code, then the kheo-req1: line" $st "exit $rc: $(err1)"

run -C H1 enroll sign D1.req --role collector --unit $U
cp "$T/out" D1.cert
st=1; [ $rc -eq 0 ] && grep -q '^kheo-cert1:' D1.cert && st=0
check "the hub signs the device's request as a collector of a commune in its district" $st "exit $rc: $(err1)"

before=$(snap D1)
run -C D1 enroll accept D1.cert --root "$ROOT2"
st=1
[ $rc -eq 1 ] && grep -qF "$(echo "$ROOT2" | cut -c1-16)" "$T/err" &&
	grep -qF "$(echo "$ROOTFP" | cut -c1-16)" "$T/err" &&
	[ "$(idj D1 mode)" = open ] && [ "$(idj D1 root)" = None ] &&
	[ "$before" = "$(snap D1)" ] && st=0
check "accept with the wrong --root is refused (exit 1, naming both roots) and leaves the device open and unchanged" $st "exit $rc: $(err1)"

k -C D2 init --role device --unit $U >/dev/null
before=$(snap D2)
run -C D2 enroll accept D1.cert --root "$ROOTFP"
st=1
[ $rc -eq 1 ] && grep -qF "$(idj D1 key | cut -c1-16)" "$T/err" &&
	[ "$(idj D2 mode)" = open ] && [ "$before" = "$(snap D2)" ] && st=0
check "accept of a certificate made for another node is refused, naming that node, and changes nothing" $st "exit $rc: $(err1)"

run -C D1 enroll accept D1.cert --root "$ROOTFP"
st=1
[ $rc -eq 0 ] && [ "$(idj D1 mode)" = enforcing ] && [ "$(idj D1 root)" = "$ROOTFP" ] &&
	[ "$(idj D1 cert_role)" = collector ] && [ "$(idj D1 cert_scope)" = $U ] && st=0
check "the device accepts with the right --root: enforcing, cert_role collector, scope its commune" $st "exit $rc: $(err1)"

M1=$(k -C D1 put model name="Tổ hợp tác nuôi bò" unit=$U kind=collective \
	field=economy status=registered beneficiaries=35)
k -C D1 commit >/dev/null
M2=$(k -C D1 put model name="Câu lạc bộ cồng chiêng" unit=$U kind=individual \
	field=culture_society)
ship D1 H1
counts
st=1; [ $rc -eq 0 ] && [ "$rejected" = 0 ] && [ "$applied" -ge 3 ] && has H1 model "$M1" && has H1 model "$M2" && st=0
check "the device's hub applies its bundle (its _sys and models, none rejected)" $st "exit $rc: $(out1) $(err1)"

# The second hub has never heard of D1 nor of H1's certificate: the
# device's own _sys changesets in its bundle carry the chain to the root.
ship D1 H2
counts
st=1
[ $rc -eq 0 ] && [ "$rejected" = 0 ] && [ "$held" = 0 ] &&
	[ "$(k -C D1 get model "$M1" --json)" = "$(k -C H2 get model "$M1" --json)" ] &&
	has H2 model "$M2" && st=0
check "a hub of another district applies the device's bundle: none held or rejected, the records as the device shows them" $st "exit $rc: $(out1) $(err1)"
D1KEY=$(idj D1 key)
st=$(k -C H2 log --json | json "0 if {c['unit'] for c in d if c['author'] == '$D1KEY' and c['state'] == 'applied'} == {'_sys', '$U'} else 1")
check "the second hub lists the device's _sys and model changesets as applied" "$st"

ship H1 P
st=1; [ $rc -eq 0 ] && has P model "$M1" && [ "$(nquar P)" = 0 ] && st=0
check "the province applies the device's changesets relayed by the hub" $st "exit $rc: $(out1) $(err1)"

# --------------------------------------------- 2. what a hub may certify

k -C D9 init --role device --unit $KN/nam-da >/dev/null
k -C D9 enroll request >D9.req
before=$(snap H1)
run -C H1 enroll sign D9.req --role collector --unit $KN/nam-da
st=1
[ $rc -eq 1 ] && [ ! -s "$T/out" ] && grep -qF "refused" "$T/err" &&
	grep -qF "$KN/nam-da" "$T/err" && grep -qF "scope" "$T/err" &&
	[ "$before" = "$(snap H1)" ] && st=0
check "a hub signing for a unit outside its district is refused (exit 1, naming the unit), issuing nothing" $st "exit $rc: $(out1) $(err1)"

k -C H3 init --role hub --unit $CJ >/dev/null
k -C H3 enroll request >H3.req
run -C H1 enroll sign H3.req --role hub --unit $CJ
st=1
[ $rc -eq 1 ] && [ ! -s "$T/out" ] && grep -qF "refused" "$T/err" &&
	grep -qF "hub for $CJ" "$T/err" && [ "$before" = "$(snap H1)" ] && st=0
check "a hub signing a hub certificate, even for its own district, is refused (exit 1, naming the role)" $st "exit $rc: $(out1) $(err1)"

run -C D1 enroll sign D9.req --role collector --unit $U
st=1
[ $rc -eq 1 ] && [ ! -s "$T/out" ] && grep -qF "refused" "$T/err" && st=0
check "a collector may not certify anyone" $st "exit $rc: $(out1) $(err1)"

# ------------------- 3. rejections at the next node and at the province

# (a) out-of-scope.  Device DS, collector of dak-wil, wrote before its
# enrolment a model in its own commune (chain DS/dak-wil) and one in the
# neighbouring tam-thang (chain DS/tam-thang, the one rejected).
k -C DS init --role device --unit $CJ/dak-wil >/dev/null
S_OK=$(k -C DS put model name="Vườn cà phê" unit=$CJ/dak-wil)
k -C DS commit >/dev/null
S_FAR=$(k -C DS put model name="Ngoài xã" unit=$CJ/tam-thang)
k -C DS commit >/dev/null
enrol DS H1 collector $CJ/dak-wil
S_CS=$(csid DS $CJ/tam-thang 1)
for node in H1 P; do
	ship DS $node
	counts
	st=1
	[ $rc -eq 1 ] && [ "$rejected" = 1 ] && [ "$(reason $node "$S_CS")" = out-of-scope ] &&
		has $node model "$S_OK" && ! has $node model "$S_FAR" && st=0
	check "$node: a pre-enrolment model outside the device's commune is quarantined as out-of-scope; its in-scope model applies" $st \
		"exit $rc: $(out1) $(err1)" "reason: $(reason $node "$S_CS")"
done

# (b) role-forbids.  Device DR, collector of truc-son, registered a model
# and then set status=recognized before its enrolment; both in chain
# DR/truc-son, the rejected one last.
k -C DR init --role device --unit $CJ/truc-son >/dev/null
R_M=$(k -C DR put model name="Tổ tự quản" unit=$CJ/truc-son status=registered)
k -C DR commit >/dev/null
k -C DR set model "$R_M" status=recognized >/dev/null
k -C DR commit >/dev/null
enrol DR H1 collector $CJ/truc-son
R_CS=$(csid DR $CJ/truc-son 2)
for node in H1 P; do
	ship DR $node
	counts
	st=1
	[ $rc -eq 1 ] && [ "$rejected" = 1 ] && [ "$(reason $node "$R_CS")" = role-forbids ] &&
		[ "$(field $node model "$R_M" status)" = registered ] && st=0
	check "$node: a collector's pre-enrolment status=recognized is quarantined as role-forbids; the registration applies" $st \
		"exit $rc: $(out1) $(err1)" "reason: $(reason $node "$R_CS")"
done

# (c) not-enrolled.  Device DF in H2's district, certified by another
# province's root (P2): chain DF/nam-da.  Its _sys changeset (the
# certificate facts) is valid and applies; its model does not.
k -C DF init --role device --unit $KN/nam-da >/dev/null
k -C DF enroll request >DF.req
k -C P2 enroll sign DF.req --role collector --unit $KN/nam-da >DF.cert
k -C DF enroll accept DF.cert --root "$ROOT2" >/dev/null 2>"$T/err"
st=1; [ "$(idj DF root)" = "$ROOT2" ] && st=0
check "a device enrolled by another province trusts that province's root" $st "$(err1)"
F_M=$(k -C DF put model name="Mô hình lạ" unit=$KN/nam-da)
k -C DF commit >/dev/null
F_CS=$(csid DF $KN/nam-da 1)
F_SYS=$(csid DF _sys 1)
for node in H2 P; do
	ship DF $node
	counts
	st=1
	[ $rc -eq 1 ] && [ "$applied" = 1 ] && [ "$rejected" = 1 ] &&
		[ "$(reason $node "$F_CS")" = not-enrolled ] &&
		[ "$(reason $node "$F_SYS")" = none ] && ! has $node model "$F_M" && st=0
	check "$node: a device certified by another root is quarantined as not-enrolled; its certificate facts apply" $st \
		"exit $rc: $(out1) $(err1)" "reason: $(reason $node "$F_CS")"
done

# (d) bad-signature.  Device DG, collector of ea-tling, two models in
# chain DG/ea-tling; hub H1 relays them with the second one's signature
# flipped (forge.c re-signs the bundle, so only that changeset is bad).
PKGS="libsodium libzstd libutf8proc sqlite3 jansson"
build_tool() { # NAME [CFLAGS...]
	bt_name=$1
	shift
	cc -std=c11 -D_DEFAULT_SOURCE "$@" -I"$ROOT/client-core/include" \
		-I"$ROOT/proto" $(pkg-config --cflags $PKGS) -o "$bt_name" \
		"$ROOT/tests/integration/$bt_name.c" "$BUILD/libkheo.a" \
		$(pkg-config --libs $PKGS) -lm 2>"$T/err"
}
build_tool forge || build_tool forge -fsanitize=address,undefined
check "the forging tool builds against libkheo.a" $? "$(err1)"

k -C DG init --role device --unit $CJ/ea-tling >/dev/null
enrol DG H1 collector $CJ/ea-tling
G1=$(k -C DG put model name="Một" unit=$CJ/ea-tling)
k -C DG commit >/dev/null
G2=$(k -C DG put model name="Hai" unit=$CJ/ea-tling)
k -C DG commit >/dev/null
G_CS=$(csid DG $CJ/ea-tling 2)
ship DG H1
k -C H1 bundle create relay.khb >/dev/null
# a bundle's frames are in (author, unit, useq) order: find G_CS among them
GIX=$(k -C H1 log --json | json "[c['id'] for c in sorted(d, key=lambda c: (c['author'], c['unit'], c['useq']))].index('$G_CS')")
./forge relay.khb forged.khb "$GIX" >/dev/null 2>"$T/err"
check "forge flips the signature of the relayed changeset (frame $GIX)" $? "$(err1)"
for node in P H2; do
	run -C $node bundle apply forged.khb
	counts
	st=1
	[ $rc -eq 1 ] && [ "$rejected" = 1 ] && [ "$(reason $node "$G_CS")" = bad-signature ] &&
		has $node model "$G1" && ! has $node model "$G2" && st=0
	check "$node: a changeset forged by the relaying hub is quarantined as bad-signature; the rest of the bundle applies" $st \
		"exit $rc: $(out1) $(err1)" "reason: $(reason $node "$G_CS")"
done

# (e) revoked.  Device DV, collector of cu-knia, chain DV/cu-knia: useq 1
# reached the hub before the revocation, useq 2 was written after it.
k -C DV init --role device --unit $CJ/cu-knia >/dev/null
enrol DV H1 collector $CJ/cu-knia
V1=$(k -C DV put model name="Trước" unit=$CJ/cu-knia)
ship DV H1
DVKEY=$(idj DV key)
run -C H1 revoke "$(echo "$DVKEY" | cut -c1-8)" --reason "máy bị mất"
check "the hub revokes a device of its district (by an 8-digit prefix)" $rc "exit $rc: $(err1)"
V2=$(k -C DV put model name="Sau" unit=$CJ/cu-knia)
k -C DV bundle create dv2.khb >/dev/null
V_CS=$(csid DV $CJ/cu-knia 2)
# H2 gets the device's bundle before the revocation: it applies useq 2,
# then takes it back when the revocation arrives (any order, same state).
# The bundle carrying the revocation then counts that changeset as
# rejected and exits 1, like any bundle after which something was refused.
run -C H2 bundle apply dv2.khb
st=1; [ $rc -eq 0 ] && has H2 model "$V2" && st=0
check "H2: before the revocation reaches it, the device's later changeset applies" $st "exit $rc: $(out1) $(err1)"
ship H1 P
for node in H1 P H2; do
	if [ $node = H2 ]; then ship H1 H2; else
		run -C $node bundle apply dv2.khb; fi
	counts
	st=1
	[ $rc -eq 1 ] && [ "$rejected" = 1 ] &&
		[ "$(reason $node "$V_CS")" = revoked ] &&
		has $node model "$V1" && ! has $node model "$V2" && st=0
	case $node in
	H2) what="the revocation arriving later takes the applied changeset back into quarantine as revoked" ;;
	*) what="a revoked device's later changeset is quarantined as revoked; its earlier one stays" ;;
	esac
	check "$node: $what" $st "exit $rc: $(out1) $(err1)" "reason: $(reason $node "$V_CS")"
done

run -C H2 verify
check "verify passes on a hub holding not-enrolled, bad-signature and revoked changesets in quarantine" $rc "$(err1)"

# ------------------------------------------------------------ 4. workflow

k -C RV init --role device --unit $U >/dev/null
enrol RV H1 reviewer $U
st=1; [ "$(idj RV cert_role)" = reviewer ] && st=0
check "a reviewer of the same commune is enrolled on another device" $st "$(err1)"

W=$(k -C D1 put model name="Dân vận khéo: đường nông thôn" unit=$U kind=collective \
	field=party_building status=registered beneficiaries=10)
k -C D1 commit >/dev/null
k -C D1 set model "$W" status=building >/dev/null && k -C D1 commit >/dev/null &&
	k -C D1 set model "$W" status=review >/dev/null && k -C D1 commit >/dev/null
st=$?; [ "$(field D1 model "$W" status)" = review ] || st=1
check "the collector registers a model and moves it registered -> building -> review" $st

for bad in status=recognized level=commune; do
	before=$(k -C D1 get model "$W" --json)
	pend=$(idj D1 pending_edits)
	run -C D1 set model "$W" $bad
	st=1
	[ $rc -eq 1 ] && grep -qF "refused" "$T/err" && grep -qF "${bad%%=*}" "$T/err" &&
		[ "$before" = "$(k -C D1 get model "$W" --json)" ] &&
		[ "$pend" = "$(idj D1 pending_edits)" ] && st=0
	check "the collector's own device refuses $bad at once (exit 1, nothing recorded)" $st "exit $rc: $(err1)"
done

ship D1 H1
ship H1 RV
run -C RV set model "$W" status=recognized level=commune
check "the reviewer of the same commune recognises the model after sync" $rc "exit $rc: $(err1)"
ship RV H1
ship H1 D1
ship H1 P
st=0
for node in D1 H1 P; do
	[ "$(field $node model "$W" status)" = recognized ] &&
		[ "$(field $node model "$W" level)" = commune ] || st=1
done
check "device, hub and province show the model recognized at level commune" $st

# A reviewer of another commune (tam-thang).  Before its enrolment (open
# mode) it "recognised" the model at province level (chain RV2/ea-po,
# rejected); once enrolled its device refuses such an edit at once.
k -C RV2 init --role device --unit $CJ/tam-thang >/dev/null
ship H1 RV2
k -C RV2 set model "$W" status=recognized level=province >/dev/null
k -C RV2 commit >/dev/null
enrol RV2 H1 reviewer $CJ/tam-thang
X_CS=$(csid RV2 $U 1)
run -C RV2 set model "$W" status=building review_comment="sai"
st=1
[ $rc -eq 1 ] && grep -qF "refused" "$T/err" && grep -qF "$U" "$T/err" &&
	[ "$(idj RV2 pending_edits)" = 0 ] && st=0
check "a reviewer of another commune is refused at once on its own device" $st "exit $rc: $(err1)"
ship RV2 H1
st=1
[ $rc -eq 1 ] && [ "$(reason H1 "$X_CS")" = out-of-scope ] &&
	[ "$(field H1 model "$W" level)" = commune ] && st=0
check "H1: that reviewer's pre-enrolment recognition is quarantined as out-of-scope; the level stays commune" $st \
	"exit $rc: $(out1)" "reason: $(reason H1 "$X_CS")"

# The collector, having seen the recognition, edits the model; it syncs
# only after the reviewer's send-back, so its op falls between the two.
k -C D1 set model "$W" beneficiaries=99 >/dev/null
k -C D1 commit >/dev/null
run -C RV set model "$W" status=building review_comment="Thiếu ảnh minh chứng"
check "the reviewer sends the model back with a comment" $rc "exit $rc: $(err1)"
ship RV H1
ship H1 D1
st=1
[ "$(field D1 model "$W" status)" = building ] &&
	[ "$(field D1 model "$W" review_comment)" = "Thiếu ảnh minh chứng" ] && st=0
check "after sync the collector's device sees the send-back and its comment" $st \
	"status $(field D1 model "$W" status), comment $(field D1 model "$W" review_comment)"

ship D1 H1
ship H1 P
for node in H1 P; do
	k -C $node conflicts --json >c.json
	st=1
	[ "$(field $node model "$W" beneficiaries)" = 10 ] &&
		[ "$(json "[(c['table'], c['id'], c['field']) for c in d]" <c.json)" = "[('model', '$W', 'beneficiaries')]" ] &&
		[ "$(json "sorted((v['value'], v['wins']) for v in d[0]['values'])" <c.json)" = "[(10, True), (99, False)]" ] &&
		st=0
	check "$node: the collector's edit between recognition and send-back shows as a conflict and does not win" $st \
		"beneficiaries $(field $node model "$W" beneficiaries)" "$(head -c 300 c.json)"
done
# Control: after the send-back the collector's edits count again.
k -C D1 set model "$W" beneficiaries=12 >/dev/null
ship D1 H1
st=1; [ "$(field H1 model "$W" beneficiaries)" = 12 ] && st=0
check "after the send-back the collector's edits win again (control)" $st "beneficiaries $(field H1 model "$W" beneficiaries)"

# ------------------------------------------------------- 5. unit merger

OLD=$CJ/dak-drong
NEW=$CJ/nam-dong
k -C DO init --role device --unit $OLD >/dev/null
enrol DO H1 collector $OLD
MO=$(k -C DO put model name="Mô hình xã cũ" unit=$OLD beneficiaries=1)
ship DO H1
# DM's key is drawn until it sorts below the province's, so that a replay
# in (author, unit, useq) order (kheo verify's) meets DM's writes before
# the merger that allows them: the state must not depend on that order.
tries=0
while :; do
	rm -rf DM
	k -C DM init --role device --unit $NEW >/dev/null
	tries=$((tries + 1))
	first=$(printf '%s\n%s\n' "$(idj DM key)" "$PKEY" | LC_ALL=C sort | head -n 1)
	[ "$first" != "$PKEY" ] && break
	[ $tries -ge 40 ] && break
done
enrol DM H1 collector $NEW
ship H1 DM
run -C DM set model "$MO" beneficiaries=5
st=1; [ $rc -eq 1 ] && grep -qF "$OLD" "$T/err" && st=0
check "before the merger an officer of $NEW may not write a record of $OLD (control)" $st "exit $rc: $(err1)"

run -C P put sys_unit slug=$OLD name="Xã Đắk Đrông" successor=$NEW
check "the province merges two communes with one sys_unit put" $rc "exit $rc: $(err1)"
ship P H1
ship H1 DM
run -C DM set model "$MO" beneficiaries=5
st=$rc
MN=$(k -C DM put model name="Mới ở xã cũ" unit=$OLD 2>"$T/err") || st=1
check "after the merger reaches it, the officer of $NEW writes records of $OLD" $st "$(err1)"
for node in H1 P; do
	ship DM $node
	counts
	st=1
	[ $rc -eq 0 ] && [ "$rejected" = 0 ] && [ "$held" = 0 ] &&
		[ "$(field $node model "$MO" beneficiaries)" = 5 ] &&
		[ "$(field $node model "$MN" unit)" = $OLD ] && st=0
	check "$node applies the successor's officer's writes to the merged commune's records" $st "exit $rc: $(out1) $(err1)"
done

# ------------------------------------------------------------ 6. digests

for pair in "RV H1" "DS H1" "DR H1" "DG H1" "DV H1" "H1 P" "P H1" \
	"H1 D1" "P H2"; do
	ship $pair
done
dd1=$(k -C D1 digest --unit $U)
dh1=$(k -C H1 digest --unit $U)
dp=$(k -C P digest --unit $U)
dh2=$(k -C H2 digest --unit $U)
nmod=$(k -C P ls model --json | json "len([r for r in d if r['unit'] == '$U'])")
st=1
[ -n "$dd1" ] && [ "$dd1" = "$dh1" ] && [ "$dd1" = "$dp" ] && [ "$nmod" -ge 3 ] && st=0
check "device, hub and province print the same digest of the device's unit ($nmod models)" $st \
	"D1 $dd1" "H1 $dh1" "P  $dp"
st=1; [ "$dd1" = "$dh2" ] && st=0
check "the other district's hub prints it too once the province's bundle reached it" $st "D1 $dd1" "H2 $dh2"
# verify rebuilds the state by replaying the applied changesets in
# (author, unit, useq) order; DM's key sorts below the province's (section
# 5), so the replay meets DM's writes to the merged commune before the
# merger that allows them, and must still accept them.
st=0
bad=
for node in D1 H1 P H2 DM; do
	run -C $node verify
	[ $rc -eq 0 ] || { st=1; bad="$bad$node: $(err1);"; }
done
check "verify passes on every node after the merger, whatever order its replay meets the merger in" $st "$bad"

finish
