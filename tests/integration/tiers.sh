#!/bin/sh
# tiers.sh - network sync through three tiers of real processes on
# loopback, cut at random points, refused when it must be, and cheap when
# there is nothing to do (issue 5, "Tests that must exist and pass").
# Prints TAP.
#
#   BUILD=build sh tests/integration/tiers.sh   (from the repository root)
#   TIERS_SEED=N repeats a run's random cut points (the seed is printed)
#   KHEO_KEEP=1 keeps the scratch directory (nodes and kheod logs)
#
# 1. Three tiers: a province kheod, two hub kheods (two districts, each
#    with the province as upstream), two collectors per village enrolled
#    through their hub and a reviewer, with conflicting offline edits.
#    Devices -> hubs (kheo sync), hubs -> province (kheo sync --now on one
#    hub, SIGUSR1 on the other), hubs -> devices; then device, hub and
#    province agree on kheo digest --unit, the province holds every record
#    and shows the conflicts.
# 2. An already-in-sync session: one round trip after the handshake and at
#    most 2 KiB in all, counted on the socket by tests/integration/
#    cutproxy.c (a proxy that counts, cuts and alters bytes).
# 3. Refusals, each with its log line on the hub and another device served
#    right after: a client expecting another key, unenrolled devices (open
#    mode; another province's; another district's), a revoked device,
#    garbage, a replayed handshake, oversized records.
# 4. Cuts: 50 syncs cut at a random byte (half the connection dropped by
#    the proxy, half kheod killed with SIGKILL and started again), each
#    from the same starting state and followed by a complete sync: nothing
#    lost or duplicated, and what was sent in vain bounded by one chunk
#    (the method is described there).
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/daemon.sh"
daemon_setup tiers
CUTHUB=""      # the kheod of the current cut trial

proxy_build
check "the cutting proxy builds" $? "$(err1)"

# MARK / newlog LOG: the hub's log lines since mark LOG
mark() { MARK=$(wc -l <"$1"); }
newlog() { tail -n +$((MARK + 1)) "$1"; }
# waitnew LOG PATTERN [TENTHS]: until a line since the mark matches
# (default 5 s)
waitnew() {
	i=0
	while ! newlog "$1" | grep -q -- "$2"; do
		i=$((i + 1))
		[ $i -gt "${3:-50}" ] && return 1
		sleep 0.1
	done
	return 0
}

PROV=dak-nong
DA=$PROV/cu-jut
DB=$PROV/dak-mil
VA=$DA/ea-po
VB=$DB/duc-minh

# ============================================================ 1. three tiers

k -C P init --role province --unit $PROV >/dev/null
ROOTFP=$(idj P root)
PKEY=$(idj P key)
k -C H1 init --role hub --unit $DA >/dev/null && enrol H1 P hub $DA
k -C H2 init --role hub --unit $DB >/dev/null && enrol H2 P hub $DB
for d in D1 D2; do
	k -C $d init --role device --unit $VA >/dev/null && enrol $d H1 collector $VA
done
for d in D3 D4; do
	k -C $d init --role device --unit $VB >/dev/null && enrol $d H2 collector $VB
done
k -C R1 init --role device --unit $DA >/dev/null && enrol R1 H1 reviewer $DA
st=0
for d in H1 H2 D1 D2 D3 D4 R1; do
	[ "$(idj $d mode)" = enforcing ] || st=1
done
[ "$(idj R1 cert_role)" = reviewer ] || st=1
check "a province, two district hubs, four collectors (two per village) and a reviewer, enrolled through their hubs" $st

PP=$(freeport)
HP1=$(freeport)
HP2=$(freeport)
daemon prov.log -C P --listen 127.0.0.1:$PP
PROVPID=$pid
for h in 1 2; do
	eval "hp=\$HP$h"
	cat >h$h.conf <<EOF
listen = 127.0.0.1:$hp
upstream = 127.0.0.1:$PP
upstream_key = $PKEY
nightly = off
EOF
	daemon h$h.log -C H$h --config h$h.conf
	eval "HUB$h=\$pid"
done
st=1
grep -q "serving $T/P on 127.0.0.1:$PP; upstream none" prov.log &&
	grep -q "serving $T/H1 on 127.0.0.1:$HP1; upstream 127.0.0.1:$PP" h1.log &&
	grep -q "serving $T/H2 on 127.0.0.1:$HP2; upstream 127.0.0.1:$PP" h2.log &&
	st=0
check "three kheods serve: the province, and each hub with the province as upstream" $st "$(cat prov.log h1.log h2.log)"

# device DIR HUBPORT: kheo sync, exit status counted in $syncfail
syncfail=""
dsync() {
	run -C "$1" sync 127.0.0.1:"$2"
	[ $rc -eq 0 ] || syncfail="$syncfail $1:$rc:$(err1)"
}

# Round 0: one shared model per village, known to both its collectors.
MA=$(k -C D1 put model name="Tổ hợp tác nuôi bò" unit=$VA kind=collective status=building)
MB=$(k -C D3 put model name="Câu lạc bộ cồng chiêng" unit=$VB kind=individual status=building)
for d in D1 D2 R1; do dsync $d $HP1; done
for d in D3 D4; do dsync $d $HP2; done
st=1
[ -z "$syncfail" ] && k -C D2 get model "$MA" >/dev/null 2>&1 &&
	k -C R1 get model "$MA" >/dev/null 2>&1 &&
	k -C D4 get model "$MB" >/dev/null 2>&1 && st=0
check "round 0: each village's shared model reaches the other collector through the hub" $st "$syncfail"

# Offline: both collectors of a village set the same field of the same
# model to different values, and each makes records of its own; the
# reviewer writes a reviewer-only field.
ALL="$MA $MB"
k -C D1 set model "$MA" beneficiaries=10 owner="Hộ ông A" >/dev/null
k -C D2 set model "$MA" beneficiaries=20 >/dev/null
k -C D3 set model "$MB" beneficiaries=30 >/dev/null
k -C D4 set model "$MB" beneficiaries=40 >/dev/null
k -C R1 set model "$MA" review_comment="Thiếu số liệu về hộ hưởng lợi" >/dev/null
for d in D1 D2; do for i in 1 2 3; do
	ALL="$ALL $(k -C $d put model name="$d mô hình $i" unit=$VA kind=individual)"
done; done
for d in D3 D4; do for i in 1 2 3; do
	ALL="$ALL $(k -C $d put model name="$d mô hình $i" unit=$VB kind=collective)"
done; done
ALL="$ALL $(k -C R1 put model name="R1 mô hình" unit=$VA kind=collective)"

# Round 1: devices -> hubs
syncfail=""
for d in D1 D2 R1; do dsync $d $HP1; done
for d in D3 D4; do dsync $d $HP2; done
check "round 1: every device syncs its offline edits to its hub (exit 0)" "$([ -z "$syncfail" ]; echo $?)" "$syncfail"

# Hubs -> province: on demand through the control socket, and by SIGUSR1
run -C H1 sync --now
st=1
[ $rc -eq 0 ] && grep -q "^upstream 127.0.0.1:$PP (127.0.0.1) key $(echo "$PKEY" | cut -c1-16): done in" "$T/out" && st=0
check "hub 1 -> province: kheo sync --now prints the upstream session's done line" $st "exit $rc: $(out1) $(err1)"
mark h2.log
kill -USR1 $HUB2
st=1
waitnew h2.log "upstream 127.0.0.1:$PP (127.0.0.1) key .*: done in" && st=0
check "hub 2 -> province: SIGUSR1, and the hub logs the upstream session done" $st "$(newlog h2.log)"

# Round 2: hubs -> devices
syncfail=""
for d in D1 D2 R1; do dsync $d $HP1; done
for d in D3 D4; do dsync $d $HP2; done
check "round 2: every device syncs again with its hub (exit 0)" "$([ -z "$syncfail" ]; echo $?)" "$syncfail"

dg() { k -C "$1" digest --unit "$2"; }
same() { # UNIT DIR...: all print the same digest
	sunit=$1
	shift
	sref=$(dg "$1" "$sunit")
	sdiag="$sunit:"
	sst=0
	for sd in "$@"; do
		sv=$(dg "$sd" "$sunit")
		sdiag="$sdiag $sd=$(echo "$sv" | head -c 24)"
		[ -n "$sv" ] && [ "$sv" = "$sref" ] || sst=1
	done
}
same $VA D1 D2 H1 P; s1=$sst; d1=$sdiag
same $VB D3 D4 H2 P; s2=$sst; d2=$sdiag
same $DA R1 H1 P; s3=$sst; d3=$sdiag
st=1; [ $s1 -eq 0 ] && [ $s2 -eq 0 ] && [ $s3 -eq 0 ] &&
	[ "$(dg D1 $VA)" != "$(dg D3 $VB)" ] && st=0
check "each device, its hub and the province print the same digest for the device's unit" $st "$d1" "$d2" "$d3"
same $DA H1 P; s1=$sst; d1=$sdiag
same $DB H2 P; s2=$sst; d2=$sdiag
st=1; [ $s1 -eq 0 ] && [ $s2 -eq 0 ] && [ "$(dg H1 $DA)" != "$(dg H2 $DB)" ] && st=0
check "each hub and the province print the same digest for the hub's district" $st "$d1" "$d2"

# ids NODE: the model ids a node holds, sorted
ids() { k -C "$1" ls model --json | json '"\n".join(sorted(r["id"] for r in d))'; }
echo $ALL | tr ' ' '\n' | sort >all.ids
ids P >p.ids
st=1; [ "$(wc -l <all.ids)" -eq 15 ] && cmp -s all.ids p.ids && st=0
check "the province holds every record made on every device (15 of 15)" $st "made $(wc -l <all.ids), province $(wc -l <p.ids)"

# a device receives its scope only; a hub its district only
ids D1 >d1.ids
ids H1 >h1.ids
st=1
grep -q "$MA" d1.ids && ! grep -q "$MB" d1.ids && ! grep -q "$MB" h1.ids &&
	grep -q "$MA" h1.ids && [ "$(wc -l <h1.ids)" -eq 8 ] && [ "$(wc -l <d1.ids)" -eq 8 ] && st=0
check "a device and its hub hold their village's and district's records, none of the other district's" $st "D1 $(wc -l <d1.ids), H1 $(wc -l <h1.ids)"

k -C P conflicts --json >pc.json
st=1
python3 -c 'import json, sys
d = json.load(sys.stdin)
def vals(rid):
    return sorted(v["value"] for c in d if c["id"] == rid and
                  c["field"] == "beneficiaries" for v in c["values"])
a, b = vals(sys.argv[1]), vals(sys.argv[2])
print(a, b)
assert a == [10, 20] and b == [30, 40]' "$MA" "$MB" <pc.json >pc.out 2>&1 && st=0
check "the province shows both conflicting offline edits of each village in kheo conflicts" $st "$(cat pc.out)" "$(head -c 300 pc.json)"

st=0
ref=$(k -C P get model "$MA" --json)
for d in D1 D2 R1 H1; do
	[ "$(k -C $d get model "$MA" --json)" = "$ref" ] || st=1
done
echo "$ref" | grep -q 'Thiếu số liệu' || st=1
check "every node of the village shows the same merged model, the reviewer's comment included" $st "$(echo "$ref" | head -c 300)"

# ======================================================= 2. in-sync cost
# (before the refusals, which add a revocation the devices would lack)
#
# D1 has just synced and nothing changed since: its next session must be
# HELLO -> HELLO + DONE -> DONE after the handshake.  The proxy's trace
# lists the pieces it forwarded, in order; after the handshake's fixed
# bytes (client 64 + 112, server 36 + 64 + 80), consecutive pieces one way
# make one flight, and each flight of the hub's that follows one of the
# device's is one round trip the device waited for.
run -C D1 sync 127.0.0.1:$HP1 # the hub's upstream session may have added _sys
proxy insync.px -t insync.tr pport $HP1
run -C D1 sync 127.0.0.1:$PXPORT --json
pxwait
RT=$(awk 'BEGIN { c = 0; s = 0; last = ""; rt = 0; seen_c = 0 }
	{ if ($1 == "C") { c += $2; post = c - 176 } else { s += $2; post = s - 180 }
	  if (post <= 0) next
	  if ($1 != last) { if ($1 == "S" && seen_c) rt++; if ($1 == "C") seen_c = 1 }
	  last = $1 }
	END { print rt }' insync.tr)
FLIGHTS=$(awk '{ printf "%s%s ", $1, $2 }' insync.tr)
st=1
[ $rc -eq 0 ] && [ "$(json 'd["sent"] + d["received"]' <"$T/out")" -eq 0 ] &&
	[ "$RT" -eq 1 ] && st=0
check "an in-sync session costs one round trip after the handshake (flights on the socket: $FLIGHTS)" $st "exit $rc, round trips $RT: $(out1) $(err1)"
st=1
[ $rc -eq 0 ] && [ $((cs + sc)) -le 2048 ] &&
	[ "$(json 'd["bytes_in"] + d["bytes_out"]' <"$T/out")" -eq $((cs + sc)) ] && st=0
check "an in-sync session costs at most 2 KiB on the socket, handshake and certificates included ($cs bytes up, $sc down)" $st "$(cat insync.px) $(out1)"

# ========================================================== 3. refusals
# Each: the refusal, its line in the hub's log, then D2 served at once.
cat >client.py <<'EOF'
# client.py MODE PORT [ARG]: prints its own port, then how it ended
#   garbage PORT N    send N random bytes
#   replay PORT FILE  a replayed handshake: read the announce, send the
#                     recorded msg1 (FILE's first 64 bytes), read msg2,
#                     send the recorded msg3 (the next 112)
import os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
print(s.getsockname()[1], flush=True)
s.settimeout(10)
got = 0
def recvn(n):
    global got
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x:
            break
        b += x
    got += len(b)
    return b
if mode == "garbage":
    s.sendall(os.urandom(int(sys.argv[3])))
elif mode == "replay":
    cap = open(sys.argv[3], "rb").read()
    recvn(36)
    s.sendall(cap[:64])
    recvn(64)
    s.sendall(cap[64:176])
t0 = time.time()
try:
    while True:
        x = s.recv(4096)
        if not x:
            break
        got += len(x)
    print("closed after %.1f s, %d bytes received" % (time.time() - t0, got))
except socket.timeout:
    print("still open after 10 s")
except OSError as e:
    print("closed after %.1f s (%s), %d bytes received" % (time.time() - t0, e, got))
EOF
served() { # after a refusal: another device syncs at once
	run -C D2 sync 127.0.0.1:$HP1
	[ $rc -eq 0 ]
}
HKEY1=$(idj H1 key)

# a client expecting another key (the province's): it stops at the
# announce, before msg1; the hub logs the peer that left
mark h1.log
run -C D1 sync 127.0.0.1:$HP1 --key "$PKEY"
st=1
[ $rc -eq 1 ] && grep -q "key is $(echo "$HKEY1" | cut -c1-16)…, not the $(echo "$PKEY" | cut -c1-16)… expected" "$T/err" &&
	waitnew h1.log "refused in the handshake after .*: the peer closed the connection" && served && st=0
check "a client expecting another key refuses the hub before msg1 (bad-key); the hub logs the peer that left, and serves another device" $st "exit $rc: $(err1)" "$(newlog h1.log)"

# the same from the hub's side: a man in the middle announces another key
# (the province's) to a device that insists on none; the device's msg3 is
# boxed for that key, and the hub refuses it
mark h1.log
proxy mitm.px -P "4:$PKEY" pport $HP1
run -C D1 sync 127.0.0.1:$PXPORT
pxwait
st=1
[ $rc -eq 1 ] && waitnew h1.log "refused in the handshake .*(bad-auth)" && served && st=0
check "a device that expects another key (announce swapped on the path): refused at msg3 (bad-auth) with a log line; another device served" $st "exit $rc: $(err1)" "$(newlog h1.log)"

# unenrolled: a device in open mode refuses to sync before it connects
k -C U1 init --role device --unit $VA >/dev/null
mark h1.log
proxy open.px pport $HP1
run -C U1 sync 127.0.0.1:$PXPORT
kill $PX 2>/dev/null
wait $PX 2>/dev/null
PX=""
sleep 0.2
st=1
[ $rc -eq 1 ] && grep -q 'open mode' "$T/err" && [ -z "$(newlog h1.log)" ] &&
	[ ! -s open.px ] && served && st=0
check "an unenrolled device (open mode) refuses to sync before connecting: nothing reaches the hub" $st "exit $rc: $(err1)" "$(newlog h1.log)"

# a device enrolled under another province: another network key, so the
# hub refuses its very first message
k -C P2 init --role province --unit $PROV >/dev/null
k -C X1 init --role device --unit $VA >/dev/null
k -C X1 enroll request >X1.req && k -C P2 enroll sign X1.req --role collector --unit $VA >X1.cert &&
	k -C X1 enroll accept X1.cert --root "$(idj P2 root)" >/dev/null
mark h1.log
run -C X1 sync 127.0.0.1:$HP1
st=1
[ $rc -eq 1 ] && [ "$(idj X1 mode)" = enforcing ] &&
	waitnew h1.log "refused in the handshake .*msg1.*(bad-hello)" && served && st=0
check "a device enrolled under another province: refused at msg1 (bad-hello) with a log line; another device served" $st "exit $rc: $(err1)" "$(newlog h1.log)"

# a device of the other district: enrolled in this deployment, but it and
# this hub have no units in common
mark h1.log
run -C D3 sync 127.0.0.1:$HP1
st=1
[ $rc -eq 1 ] && grep -q 'no units in common' "$T/err" &&
	waitnew h1.log "key $(idj D3 key | cut -c1-16): refused .*no units in common" && served && st=0
check "a device of another district: refused (no units in common) with a log line naming its key; another device served" $st "exit $rc: $(err1)" "$(newlog h1.log)"

# revoked: a collector syncs, is revoked at the hub, then tries again
k -C D5 init --role device --unit $VA >/dev/null && enrol D5 H1 collector $VA
D5KEY=$(idj D5 key | cut -c1-16)
run -C D5 sync 127.0.0.1:$HP1
rc0=$rc
k -C H1 revoke "$D5KEY" --reason "stolen phone" >/dev/null 2>"$T/err"
rcr=$?
mark h1.log
run -C D5 sync 127.0.0.1:$HP1
st=1
[ $rc0 -eq 0 ] && [ $rcr -eq 0 ] && [ $rc -eq 1 ] && grep -q 'revoked' "$T/err" &&
	waitnew h1.log "key $D5KEY: refused .*$D5KEY… is revoked" && served && st=0
check "a device revoked at the hub (while kheod runs): its next sync refused with a log line naming it; another device served" $st "$rc0 $rcr $rc: $(err1)" "$(newlog h1.log)"

# garbage bytes
mark h1.log
python3 client.py garbage $HP1 200 >garbage.out
GP=$(head -1 garbage.out)
st=1
grep -q 'closed after 0\.[0-9] s.* 36 bytes received' garbage.out &&
	waitnew h1.log "session 127.0.0.1:$GP: refused in the handshake .*(bad-hello)" && served && st=0
check "200 random bytes: the hub closes at once after its announce, logs the peer refused (bad-hello); another device served" $st "$(cat garbage.out)" "$(newlog h1.log)"

# a replayed handshake: D2's first bytes, captured on the path, sent again
# on a new connection; msg1 is answered (it is only a public key and its
# HMAC) but the recorded msg3 was boxed for the old session's msg2
proxy cap.px -w cap.bin pport $HP1
run -C D2 sync 127.0.0.1:$PXPORT
pxwait
rc0=$rc
mark h1.log
python3 client.py replay $HP1 cap.bin >replay.out
RP=$(head -1 replay.out)
st=1
[ $rc0 -eq 0 ] && [ "$(wc -c <cap.bin)" -gt 176 ] &&
	grep -q 'closed after 0\.[0-9] s.* 100 bytes received' replay.out &&
	waitnew h1.log "session 127.0.0.1:$RP: refused in the handshake .*msg3.*(bad-auth)" && served && st=0
check "a replayed handshake: answered up to msg2, then refused at msg3 (bad-auth) without msg4, with a log line; another device served" $st "$rc0 $(cat replay.out)" "$(newlog h1.log)"

# An oversized record.  Only a peer that finished the handshake sends
# records, so a genuine device (D2) syncs through the proxy, which
# rewrites the length field of its first record (stream offset 64 + 112 +
# 24 = 200) to 1,048,594 bytes, one above the limit (1 MiB of plaintext
# plus 17): the hub must refuse on those 4 bytes (too-big), not wait for
# a MiB.  Then 0xffffffff; then the same on a record from the hub to the
# device (server stream offset 36 + 64 + 80 + 24 = 204), which the device
# must refuse.
for len in 00100012 ffffffff; do
	mark h1.log
	proxy big.px -p "200:$len" pport $HP1
	t0=$(date +%s)
	run -C D2 sync 127.0.0.1:$PXPORT
	t1=$(date +%s)
	pxwait
	st=1
	[ $rc -eq 1 ] && [ $((t1 - t0)) -le 2 ] &&
		waitnew h1.log "key $(idj D2 key | cut -c1-16): refused .*(too-big)" && served && st=0
	check "a record length of 0x$len (above 1 MiB) from an authenticated device: refused at once (too-big) with a log line; another device served" $st "exit $rc after $((t1 - t0)) s: $(err1)" "$(newlog h1.log)"
done
proxy big.px -P "204:00100012" pport $HP1
run -C D2 sync 127.0.0.1:$PXPORT
pxwait
st=1
[ $rc -eq 1 ] && grep -q 'too-big' "$T/err" && served && st=0
check "a record length above 1 MiB from the hub's side: the device refuses it (too-big)" $st "exit $rc: $(err1)"

st=0
for p in $PROVPID $HUB1 $HUB2; do kill -0 $p 2>/dev/null || st=1; done
check "after every refusal the province and both hubs still run" $st

# ============================================================= 4. cuts
#
# A third district with its own hub (HC) and two collectors of one
# village: DX has synced 16 records of about 2 KB; DC holds 24 records of
# about 18 KB it has never sent.  HC sends chunks of 8 KiB (chunk_bytes),
# DC the library's 128 KiB: the session is several chunks each way.  That
# state is kept (HC0, DC0) and every trial starts from a copy of it: a
# sync through cutproxy cut at a random byte N of the session (both ways
# counted), then a complete sync through the proxy.
#
# Half the cuts drop the connection (the proxy closes both sides after
# byte N).  The other half kill the hub: at byte N plus 0-10 ms the proxy
# sends kheod SIGKILL (kill -9) and closes; kheod is started again on the
# same directory for the second sync.
#
# After each: the device and the hub print, for the village, the digest
# of the uncut reference sync (nothing lost); kheo log --json lists each
# changeset id once, as many as after the reference (nothing duplicated);
# kheo verify passes on both.
#
# Bytes sent in vain, measured on the socket: per direction,
#   waste = (bytes of the cut session + bytes of the next) - bytes of the
#           uncut reference session,
# which is what the cut session sent that the next one had to send again
# (what was made durable is not sent again, and the next session is the
# reference minus what the cut one made durable).  It may not exceed one
# chunk plus the fixed cost of opening the extra session: the limit per
# direction is the reference's largest chunk record + its handshake,
# stream header, HELLO and HEADS records (all read off the reference by
# the proxy's record parse) + 512 bytes of slack: after a cut each side
# may hold part of the other's chain, so the second session's HEADS carry
# one more head (about 90 bytes) than the reference's.  A sync that
# started again from scratch would exceed it by a chunk or more.
VC=$PROV/krong-no/dak-sor
k -C HC init --role hub --unit $PROV/krong-no >/dev/null && enrol HC P hub $PROV/krong-no
k -C DC init --role device --unit $VC >/dev/null && enrol DC HC collector $VC
k -C DX init --role device --unit $VC >/dev/null && enrol DX HC collector $VC
CP=$(freeport)
cat >hc.conf <<EOF
listen = 127.0.0.1:$CP
chunk_bytes = 8k
shutdown_grace = 0
EOF
daemon hc.log -C HC --config hc.conf
CUTHUB=$pid
syncfail=""
dsync DC $CP
dsync DX $CP
dsync DC $CP
python3 - <<'EOF'
import base64, os
with open("big.txt", "w") as f:
    for i in range(24):
        f.write(base64.b64encode(os.urandom(13500)).decode()[:18000] + "\n")
with open("small.txt", "w") as f:
    for i in range(16):
        f.write(base64.b64encode(os.urandom(1500)).decode()[:2000] + "\n")
EOF
i=0
while read -r text; do
	i=$((i + 1))
	k -C DX put model name="DX $i" unit=$VC description="$text" >/dev/null
	k -C DX commit >/dev/null
done <small.txt
dsync DX $CP
i=0
while read -r text; do
	i=$((i + 1))
	k -C DC put model name="DC $i" unit=$VC description="$text" >/dev/null
	k -C DC commit >/dev/null
done <big.txt
st=1; [ -z "$syncfail" ] && [ "$(idj DC pending_edits)" -eq 0 ] && st=0
kill -TERM $CUTHUB
wait $CUTHUB
CUTHUB=""
cp -a HC HC0
cp -a DC DC0
check "the cut trials' starting state: a hub, a device with 24 unsent records of 18 KB, the hub with 16 the device lacks" $st "$syncfail"

# trial_start: fresh copies of the starting state, a kheod on them
trial_start() {
	rm -rf Ht Dt
	cp -a HC0 Ht && cp -a DC0 Dt
	daemon ht.log -C Ht --config hc.conf
	CUTHUB=$pid
}
trial_stop() {
	kill -TERM $CUTHUB 2>/dev/null
	wait $CUTHUB 2>/dev/null
	CUTHUB=""
}
logids() { # DIR: "COUNT UNIQUE" of kheo log --json's ids
	k -C "$1" log --json | json 'str(len(d)) + " " + str(len(set(c["id"] for c in d)))'
}

# the reference: an uncut sync of the same state
trial_start
proxy ref.px pport $CP
run -C Dt sync 127.0.0.1:$PXPORT --json
pxwait
REFCS=$cs REFSC=$sc
REFDIG=$(dg Dt $VC)
REFHUB=$(dg Ht $VC)
REFLOG=$(logids Ht)
trial_stop
# per direction: pre (handshake + header + HELLO + HEADS), largest chunk,
# chunk records (those after HELLO and HEADS above 100 bytes: ACKs and
# DONE are about 25)
limits() { # C|S PREFIX
	sed -n "/^$1 /p" ref.px | awk -v pre="$2" '{ p = pre + $2 + $3; m = 0; n = 0
		for (i = 4; i <= NF; i++) { if ($i > m) m = $i; if ($i > 100) n++ }
		print p, m, n }'
}
set -- $(limits C 200)
PREC=$1 CHUNKC=$2 NCHC=$3
set -- $(limits S 204)
PRES=$1 CHUNKS=$2 NCHS=$3
LIMC=$((PREC + CHUNKC + 512))
LIMS=$((PRES + CHUNKS + 512))
st=1
[ $rc -eq 0 ] && [ "$(json 'd["sent"]' <"$T/out")" -eq 24 ] &&
	[ "$(json 'd["received"]' <"$T/out")" -eq 16 ] && [ "$REFDIG" = "$REFHUB" ] &&
	[ "${NCHC:-0}" -ge 3 ] && [ "${NCHS:-0}" -ge 3 ] && st=0
check "the uncut reference sync: 24 records up in $NCHC chunks ($REFCS bytes), 16 down in $NCHS chunks ($REFSC bytes)" $st "exit $rc: $(out1) $(err1)" "$(cat ref.px)"
echo "# limits of bytes sent in vain: up $LIMC (chunk $CHUNKC + session $PREC + 512), down $LIMS (chunk $CHUNKS + session $PRES + 512)"

SEED=${TIERS_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
echo "# cut points from TIERS_SEED=$SEED"
# Trials alternate: odd ones drop the connection, even ones kill kheod
# (0-10 ms after byte N); one in five cuts in the first 2,000 bytes
# (handshake, HELLO, HEADS), the rest anywhere in the session.  A session
# may still finish (N near its end, or the kill after its last byte): such
# a trial is checked all the same but not counted, and trials go on until
# 25 of each kind were really cut.
awk -v seed="$SEED" -v total=$((REFCS + REFSC)) 'BEGIN { srand(seed)
	for (i = 1; i <= 100; i++) {
		top = (i % 5 == 0) ? 2000 : total - 1
		printf "%d %s %d %d\n", i, (i % 2) ? "drop" : "kill",
			1 + int(rand() * top), int(rand() * 11) }
	}' >plan

nf_sync="" nf_dig="" nf_dup="" nf_ver="" nf_waste="" nf_log=""
maxwc=0 maxws=0 late=0 early=0 cutdone=0 ndrop=0 nkill=0
exec 3<plan
while read -r tn kind at delay <&3; do
	[ $ndrop -ge 25 ] && [ $nkill -ge 25 ] && break
	[ $kind = drop ] && [ $ndrop -ge 25 ] && continue
	[ $kind = kill ] && [ $nkill -ge 25 ] && continue
	trial_start
	mark ht.log
	if [ "$kind" = kill ]; then
		proxy cut.px -c "$at" -k "$CUTHUB" -d "$delay" pport $CP
	else
		proxy cut.px -c "$at" pport $CP
	fi
	run -C Dt sync 127.0.0.1:$PXPORT
	r1=$rc
	pxwait
	cs1=$cs sc1=$sc
	if [ $r1 -eq 0 ]; then
		cutdone=$((cutdone + 1))
	elif [ $kind = drop ]; then
		ndrop=$((ndrop + 1))
	else
		nkill=$((nkill + 1))
	fi
	if [ "$kind" = kill ]; then
		# killed by the proxy, unless the session ended first
		kill -KILL $CUTHUB 2>/dev/null
		wait $CUTHUB 2>/dev/null
		daemon ht2.log -C Ht --config hc.conf || nf_sync="$nf_sync $tn:restart"
		CUTHUB=$pid
	else
		# a dropped session leaves its line on the hub (soon, but
		# a hub fsyncing on a loaded machine may take seconds)
		waitnew ht.log "session 127.0.0.1:[0-9]*" 150 &&
			[ "$(newlog ht.log | grep -c "session 127.0.0.1:")" -eq 1 ] ||
			nf_log="$nf_log
trial $tn ($kind at byte $at, sync exit $r1): $(newlog ht.log | tail -4)"
	fi
	proxy next.px pport $CP
	run -C Dt sync 127.0.0.1:$PXPORT
	pxwait
	[ $rc -eq 0 ] || nf_sync="$nf_sync
trial $tn ($kind at byte $at): $(err1); the hub: $(tail -3 "$(ls -t ht*.log | head -1)")"
	wc=$((cs1 + cs - REFCS - PREC))
	ws=$((sc1 + sc - REFSC - PRES))
	[ $wc -gt $maxwc ] && maxwc=$wc
	[ $ws -gt $maxws ] && maxws=$ws
	[ $((cs1 + cs - REFCS)) -le $LIMC ] && [ $((sc1 + sc - REFSC)) -le $LIMS ] ||
		nf_waste="$nf_waste $tn:$kind@$at:up$((cs1 + cs - REFCS)),down$((sc1 + sc - REFSC))"
	# a sync that started again from scratch would exceed the limit here
	[ "$cs1" -gt $LIMC ] && late=$((late + 1))
	[ "$cs1" -le "$PREC" ] && early=$((early + 1))
	[ "$(dg Dt $VC)" = "$REFDIG" ] && [ "$(dg Ht $VC)" = "$REFDIG" ] ||
		nf_dig="$nf_dig $tn:$kind@$at"
	[ "$(logids Ht)" = "$REFLOG" ] && lg=$(logids Dt) &&
		[ "${lg% *}" = "${lg#* }" ] || nf_dup="$nf_dup $tn:$kind@$at:$(logids Ht)"
	k -C Dt verify >/dev/null 2>&1 && k -C Ht verify >/dev/null 2>&1 ||
		nf_ver="$nf_ver $tn"
	trial_stop
done
exec 3<&-

st=1; [ -z "$nf_sync" ] && [ $ndrop -eq 25 ] && [ $nkill -eq 25 ] && st=0
check "50 syncs cut at a random byte ($ndrop connection drops, $nkill kheod kill -9 and restart): each next sync completes (exit 0)" \
	$st "$nf_sync"
check "after each cut and resync, the device and the hub print the uncut sync's digest for the device's unit (nothing lost)" \
	"$([ -z "$nf_dig" ]; echo $?)" "$nf_dig"
check "after each, kheo log --json on the hub lists each changeset id once, as many as after the uncut sync, and the device's ids are unique (nothing duplicated)" \
	"$([ -z "$nf_dup" ]; echo $?)" "$nf_dup ref $REFLOG"
check "after each, kheo verify passes on the device and on the hub" \
	"$([ -z "$nf_ver" ]; echo $?)" "$nf_ver"
check "each dropped session leaves one line in the hub's log" \
	"$([ -z "$nf_log" ]; echo $?)" "$nf_log"
st=1
[ -z "$nf_waste" ] && [ $late -ge 10 ] && st=0
check "bytes sent in vain by each cut are within one chunk (at most $maxwc up, $maxws down beyond the extra session's opening; chunks $CHUNKC up, $CHUNKS down; $late cuts late enough that starting again from scratch would exceed the limit, $early in the opening)" $st "$nf_waste late=$late"
echo "# $((ndrop + nkill + cutdone)) trials: $cutdone sessions finished before their cut (checked, not counted)"

finish
