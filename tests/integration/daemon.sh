#!/bin/sh
# daemon.sh - kheod and kheo sync as real processes on loopback.  Prints TAP.
#
#   BUILD=build sh tests/integration/daemon.sh   (from the repository root)
#
# A province, a district hub and two devices (each its own data
# directory, enrolled through the CLI) and kheods on random free ports.
# The script proves: flags win over kheod.conf and a bad file or flag is
# refused with its line; the start-up handshake of a backgrounded kheod;
# one kheod per data directory; SIGHUP reloads (and a bad reload keeps
# the running configuration); garbage bytes and an idle connection are
# refused with a log line naming the peer while a device is served; the
# session and per-peer limits; kheo sync's exit status and summary (and a
# wrong --key refused); the upstream on demand (kheo sync --now, SIGUSR1),
# in the nightly window, and retried with backoff when it fails; SIGTERM
# exits 0 after cutting what is still open.  Sessions themselves (resume,
# scopes, three tiers at scale) are tested by the sync work's own tests.
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/daemon.sh"
daemon_setup daemon

# Clients that are not kheo: they print their own port first, then
# "closed after S" when the daemon closes on them.
cat >client.py <<'EOF'
import os, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 20
s = socket.create_connection(("127.0.0.1", port))
print(s.getsockname()[1], flush=True)
if mode == "garbage":
    s.sendall(os.urandom(300))
t0 = time.time()
s.settimeout(wait)
try:
    while s.recv(4096):
        pass
    print("closed after %.1f" % (time.time() - t0), flush=True)
except socket.timeout:
    print("still open after %.1f" % wait, flush=True)
except OSError as e:
    print("closed after %.1f (%s)" % (time.time() - t0, e), flush=True)
EOF
client() { python3 client.py "$@"; }
# in the background, as python3 client.py ... & (so that $! is its pid)

# gone PID [TENTHS]: until the process is gone (default 5 s)
gone() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt "${2:-50}" ] && return 1
		sleep 0.1
	done
	return 0
}
# reload: SIGHUP to the hub, and wait until it has answered
reload() {
	nh=$(grep -c "SIGHUP:" hub.log)
	kill -HUP $HUB
	i=0
	while [ "$(grep -c "SIGHUP:" hub.log)" -le "$nh" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
}

PROV=dak-nong
CJ=dak-nong/cu-jut
U=$CJ/ea-po

# ------------------------------------------------------------- the nodes

k -C P init --role province --unit $PROV >/dev/null
ROOTFP=$(idj P root)
PKEY=$(idj P key)
k -C H init --role hub --unit $CJ >/dev/null
enrol H P hub $CJ
HKEY=$(idj H key)
for d in D1 D2; do
	k -C $d init --role device --unit $U >/dev/null
	enrol $d H collector $U
done
st=1
[ "$(idj H mode)" = enforcing ] && [ "$(idj D1 mode)" = enforcing ] &&
	[ "$(idj D2 mode)" = enforcing ] && st=0
check "a province, a hub and two devices, enrolled" $st

# ------------------------------------------------- command line and config

"$KHEOD" --help >"$T/out" 2>&1
st1=$?
"$KHEOD" --bogus >"$T/out" 2>"$T/err"
st2=$?
st=1; [ $st1 -eq 0 ] && [ $st2 -eq 2 ] && grep -q '^usage: kheod' "$T/err" && st=0
check "kheod --help exits 0; an unknown flag is a usage error (2)" $st "$st1 $st2 $(err1)"

printf 'idle_timeout = 30\nbogus_key = 1\n' >bad.conf
"$KHEOD" -C H --config bad.conf --foreground >"$T/out" 2>"$T/err"
st1=$?
printf 'max_sessions = many\n' >bad2.conf
"$KHEOD" -C H --config bad2.conf --foreground >"$T/out" 2>"$T/err2"
st2=$?
st=1
[ $st1 -eq 1 ] && grep -q 'bad.conf:2: unknown key "bogus_key"' "$T/err" &&
	[ $st2 -eq 1 ] && grep -q 'bad2.conf:1: max_sessions: "many"' "$T/err2" && st=0
check "a config with an unknown key or a bad value is refused (exit 1) naming file, line and key" $st "$st1 $st2 $(err1) $(cat "$T/err2")"

"$KHEOD" --config bad.conf --check >"$T/out" 2>"$T/err"
st1=$?
printf 'idle_timeout = 5m ; five minutes\n# a comment\nnightly = 22:00-04:00\n' >good.conf
"$KHEOD" --config good.conf --check >"$T/out" 2>"$T/err2"
st2=$?
st=1
[ $st1 -eq 1 ] && grep -q 'bad.conf:2' "$T/err" && [ $st2 -eq 0 ] &&
	grep -q 'good.conf: ok' "$T/out" && st=0
check "kheod --check: the bad line and exit 1, or ok and exit 0" $st "$st1 $st2 $(err1) $(out1)"

"$KHEOD" -C H --listen nowhere --foreground >"$T/out" 2>"$T/err"
st1=$?
"$KHEOD" -C nonode --foreground >"$T/out" 2>"$T/err2"
st2=$?
st=1
[ $st1 -eq 1 ] && grep -q -- '--listen "nowhere"' "$T/err" && [ $st2 -eq 1 ] &&
	grep -q 'nonode' "$T/err2" && st=0
check "a bad --listen and a missing data directory are refused (exit 1)" $st "$st1 $st2 $(err1) $(cat "$T/err2")"

# The file says one port, the flag another: the flag wins.
PA=$(freeport)
PB=$(freeport)
cat >hub.conf <<EOF
# a hub
listen = 127.0.0.1:$PA
idle_timeout = 30
log_level = info
EOF
daemon hub.log -C H --config hub.conf --listen 127.0.0.1:$PB
HUB=$pid
st=1
grep -q "serving $T/H on 127.0.0.1:$PB" hub.log &&
	client idle $PB 0.3 >c.out && ! client idle $PA 0.3 >/dev/null 2>&1 && st=0
check "--listen wins over the file's listen (serves the flag's port only)" $st "$(cat hub.log)"
HP=$PB

run -C D1 sync 127.0.0.1:$HP
st=1
[ $rc -eq 0 ] && grep -Eq "^synced with 127.0.0.1:$HP \([0-9a-f]{16}\): sent [0-9]+, received [0-9]+ \(applied [0-9]+, held [0-9]+, rejected [0-9]+\), .* in, .* out, [0-9.]+ s, clock offset [+-][0-9]+ ms$" "$T/out" && st=0
check "kheo sync to the hub exits 0 with a one-line summary" $st "exit $rc: $(out1) $(err1)"

M1=$(k -C D1 put model name="Tổ hợp tác nuôi bò" unit=$U kind=collective \
	field=economy status=registered)
run -C D1 sync 127.0.0.1:$HP
st=1
[ $rc -eq 0 ] && grep -q 'sent [1-9]' "$T/out" && k -C H get model "$M1" >/dev/null 2>&1 &&
	waitfor hub.log "done in" && grep -q "key $(echo "$(idj D1 key)" | cut -c1-16): done in" hub.log && st=0
check "a new record is sealed and sent; the hub holds it and logs the session with the device's key" $st "exit $rc: $(out1) $(err1) $(tail -3 hub.log)"

run -C D2 sync 127.0.0.1:$HP --json
st=1
[ $rc -eq 0 ] && [ "$(json 'd["peer_key"]' <"$T/out")" = "$HKEY" ] &&
	k -C D2 get model "$M1" >/dev/null 2>&1 && st=0
check "kheo sync --json names the hub's key; the other device receives the record" $st "exit $rc: $(out1) $(err1)"

# the hub's view of its devices: D2 sends a record D1 has not seen yet
M2=$(k -C D2 put model name="Câu lạc bộ cồng chiêng" unit=$U \
	kind=individual field=culture_society status=registered)
run -C D2 sync 127.0.0.1:$HP
run -C H status --json
st=1
[ $rc -eq 0 ] && [ -n "$M2" ] && python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
p = {x["key"]: x for x in d["peers"]}
d1, d2 = p[sys.argv[2]], p[sys.argv[3]]
for x in (d1, d2):
    assert x["scope"] == sys.argv[4] and x["cert_role"] == "collector", x
    assert x["last_error"] is None and x["last_ok"] and x["last_contact"], x
    assert isinstance(x["clock_offset_ms"], int), x
    assert abs(x["clock_offset_ms"]) < 600000, x
    assert x["held"] == 0 and x["quarantined"] == 0, x
assert d1["waiting"] >= 1 and d2["waiting"] == 0, (d1, d2)
assert d2["sent"] >= 1, d2' "$T/out" "$(idj D1 key)" "$(idj D2 key)" $U &&
	k -C H status | grep -q "^$(idj D1 key | cut -c1-8)  collector  $U " &&
	st=0
check "the hub's kheo status lists each device: role, scope, clock offset, what waits for its next sync" $st "exit $rc: $(out1) $(err1)"

run -C D2 sync 127.0.0.1:$HP --key "$PKEY"
st=1
[ $rc -eq 1 ] && [ -s "$T/err" ] && ! grep -q '^synced' "$T/out" && st=0
check "kheo sync --key with a key the hub does not have: exit 1, a reason on stderr" $st "exit $rc: $(out1) $(err1)"

run -C D2 sync 127.0.0.1:$(freeport)
st=1; [ $rc -eq 1 ] && grep -q 'cannot connect' "$T/err" && st=0
check "kheo sync to a port nobody serves: exit 1, cannot connect" $st "exit $rc: $(err1)"

run -C D2 sync
st1=$rc
run -C D2 sync 127.0.0.1:$HP --key abc
st=1; [ $st1 -eq 2 ] && [ $rc -eq 2 ] && st=0
check "kheo sync without an address, or with a malformed --key: usage error (2)" $st "$st1 $rc"

# --------------------------------------- garbage and idle, others served

cat >>hub.conf <<EOF
idle_timeout = 2
EOF
reload
st=1
grep -q 'SIGHUP: reloaded .*idle_timeout 2 s' hub.log && st=0
check "SIGHUP re-reads the file (idle_timeout 30 -> 2)" $st "$(tail -3 hub.log)"

python3 client.py idle $HP 10 >idle.out &
IDLE=$!
client garbage $HP 10 >garbage.out
waitfor idle.out . 
run -C D1 sync 127.0.0.1:$HP
wait $IDLE
GPORT=$(head -1 garbage.out)
IPORT=$(head -1 idle.out)
st=1
grep -q 'closed after 0\.' garbage.out &&
	grep -q "session 127.0.0.1:$GPORT: refused in the handshake after [0-9.]* s: ." hub.log && st=0
check "garbage bytes: closed at once, one log line naming the peer and why" $st "$(cat garbage.out) $(grep "$GPORT" hub.log)"
st=1
grep -Eq 'closed after (1\.[5-9]|2\.|3\.)' idle.out &&
	grep -q "session 127.0.0.1:$IPORT: refused in the handshake after 2.* s: idle for 2 s (idle_timeout)" hub.log && st=0
check "an idle connection: closed after idle_timeout, one log line naming the peer" $st "$(cat idle.out) $(grep "$IPORT" hub.log)"
st=1; [ $rc -eq 0 ] && grep -q '^synced with' "$T/out" && st=0
check "a device syncing meanwhile is served (exit 0)" $st "exit $rc: $(out1) $(err1)"

cat >>hub.conf <<EOF
idle_timeout = 20
handshake_timeout = 1
EOF
reload
client idle $HP 10 >idle.out
IPORT=$(head -1 idle.out)
st=1
grep -Eq 'closed after (0\.[89]|1\.|2\.)' idle.out &&
	grep -q "session 127.0.0.1:$IPORT: refused in the handshake after 1.* s: no handshake within 1 s (handshake_timeout)" hub.log && st=0
check "a connection that does not finish the handshake: closed after handshake_timeout, with a log line" $st "$(cat idle.out) $(grep "$IPORT" hub.log)"

# -------------------------------------------------------------- limits

cat >>hub.conf <<EOF
handshake_timeout = 30
max_sessions_per_peer = 2
EOF
reload
# the idle clients hold their sessions far longer than the checks take on
# a loaded machine (they are killed after); a third is refused at once
python3 client.py idle $HP 30 >h1.out &
H1=$!
python3 client.py idle $HP 30 >h2.out &
H2=$!
waitfor h1.out . && waitfor h2.out . && sleep 0.2
client idle $HP 3 >h3.out
run -C D1 sync 127.0.0.1:$HP
P3=$(head -1 h3.out)
st=1
grep -q 'closed after 0\.' h3.out &&
	grep -q "refused 127.0.0.1:$P3: 2 sessions from 127.0.0.1 open (max_sessions_per_peer 2)" hub.log &&
	[ $rc -eq 1 ] && grep -q 'closed the connection during the handshake' "$T/err" &&
	[ "$(wc -l <h1.out)" -eq 1 ] && [ "$(wc -l <h2.out)" -eq 1 ] && st=0
check "max_sessions_per_peer 2: a third connection and a sync are refused with a log line; the two stay open" $st "exit $rc $(err1) $(cat h1.out h3.out) $(grep "$P3" hub.log)"
kill $H1 $H2 2>/dev/null
wait $H1 $H2 2>/dev/null

cat >>hub.conf <<EOF
max_sessions_per_peer = 16
max_sessions = 1
EOF
reload
python3 client.py idle $HP 30 >h1.out &
H1=$!
waitfor h1.out . && sleep 0.2
run -C D1 sync 127.0.0.1:$HP
st=1
[ $rc -eq 1 ] && grep -q "refused 127.0.0.1:[0-9]*: 1 sessions open (max_sessions 1)" hub.log && st=0
check "max_sessions 1: a second session is refused (exit 1) with a log line" $st "exit $rc $(err1)"
kill $H1 2>/dev/null
wait $H1 2>/dev/null

cat >>hub.conf <<EOF
max_sessions = many
EOF
reload
st=1
grep -q "max_sessions: \"many\".*keeping the running configuration" hub.log &&
	run -C D1 sync 127.0.0.1:$HP && [ $rc -eq 0 ] && kill -0 $HUB && st=0
check "a reload with a bad value keeps the running configuration, and the hub serves" $st "exit $rc $(tail -2 hub.log)"
# put the limits back
cat >hub.conf <<EOF
listen = 127.0.0.1:$PA
idle_timeout = 20
shutdown_grace = 1
EOF
reload

# ------------------------------------------------------------ upstream

run -C H sync --now
st=1; [ $rc -eq 1 ] && grep -q 'has no upstream' "$T/err" && st=0
check "kheo sync --now with no upstream: exit 1, says so" $st "exit $rc $(err1)"

run -C D1 sync --now
st=1; [ $rc -eq 1 ] && grep -q 'no kheod answers' "$T/err" && st=0
check "kheo sync --now where no kheod runs: exit 1" $st "exit $rc $(err1)"

"$KHEOD" -C H --listen 127.0.0.1:$(freeport) --foreground >"$T/out" 2>"$T/err"
st1=$?
st=1; [ $st1 -eq 1 ] && grep -q 'another kheod serves' "$T/err" && st=0
check "a second kheod on the same data directory is refused" $st "$(err1)"

PP=$(freeport)
daemon prov.log -C P --listen 127.0.0.1:$PP
PROVD=$pid
cat >>hub.conf <<EOF
upstream = 127.0.0.1:$PP
upstream_key = $PKEY
nightly = off
EOF
reload
run -C H sync --now
st=1
[ $rc -eq 0 ] && grep -q "^kheod: syncing with 127.0.0.1:$PP" "$T/out" &&
	grep -q "^upstream 127.0.0.1:$PP (127.0.0.1) key $(echo "$PKEY" | cut -c1-16): done in" "$T/out" &&
	k -C P get model "$M1" >/dev/null 2>&1 && st=0
check "kheo sync --now: the hub syncs with the province, prints the result, the province holds the record" $st "exit $rc $(out1) $(err1)"
st=1
[ "$(k -C D1 digest --unit $U)" = "$(k -C H digest --unit $U)" ] &&
	[ "$(k -C H digest --unit $U)" = "$(k -C P digest --unit $U)" ] && st=0
check "device, hub and province print the same digest for the device's unit" $st

M2=$(k -C D1 put model name="Câu lạc bộ cồng chiêng" unit=$U kind=individual \
	field=culture_society)
k -C D1 sync 127.0.0.1:$HP >/dev/null 2>&1
n0=$(grep -c "^kheod: upstream .* done in" hub.log)
kill -USR1 $HUB
st=1
waitfor hub.log "syncing now (SIGUSR1)" && i=0 &&
	while [ "$(grep -c "^kheod: upstream .* done in" hub.log)" -le "$n0" ] && [ $i -lt 50 ]; do
		sleep 0.1; i=$((i + 1)); done &&
	k -C P get model "$M2" >/dev/null 2>&1 && st=0
check "SIGUSR1: the hub syncs with the province now" $st "$(tail -3 hub.log)"

# the nightly window: open now (local time), first attempt within retry_min
NOW=$(date +%H:%M)
LATER=$(date -d '+3 min' +%H:%M 2>/dev/null || date -v+3M +%H:%M)
cat >>hub.conf <<EOF
nightly = $NOW-$LATER
retry_min = 1
retry_max = 2
EOF
reload
st=1
waitfor hub.log "syncing (nightly window)" 40 && st=0
check "an open nightly window: the hub syncs with its upstream by itself" $st "$(tail -3 hub.log)"

# upstream gone: the failed attempt is retried with backoff
kill -TERM $PROVD
gone $PROVD
cat >>hub.conf <<EOF
upstream = 127.0.0.1:$(freeport)
EOF
reload
st=1
waitfor hub.log "next attempt in [12] s (attempt 2 in this window)" 40 &&
	waitfor hub.log "next attempt in [12] s (attempt 3 in this window)" 40 &&
	grep -q "upstream 127.0.0.1:[0-9]* (127.0.0.1): failed before the session started after .*: connect: connection refused" hub.log && st=0
check "an unreachable upstream: each failure logged, retried with backoff (retry_min 1, retry_max 2)" $st "$(tail -4 hub.log)"

# ------------------------------------------------------------- stopping

python3 client.py idle $HP 10 >stop.out &
C1=$!
waitfor stop.out .
kill -TERM $HUB
wait $HUB
st=$?
wait $C1
SP=$(head -1 stop.out)
s2=1
[ $st -eq 0 ] && grep -q "SIGTERM: stopping" hub.log &&
	grep -q "session 127.0.0.1:$SP: refused in the handshake after .*: cut: kheod is stopping" hub.log &&
	grep -q 'stopped$' hub.log && [ ! -e H/kheod.sock ] && s2=0
check "SIGTERM: in-flight sessions get shutdown_grace, then are cut with a log line; exit 0; the socket is gone" $s2 "exit $st $(tail -4 hub.log)"

# Without --foreground: the parent returns once the child serves, or
# with the child's failure.
PD=$(freeport)
"$KHEOD" -C D2 --listen 127.0.0.1:$PD >"$T/out" 2>"$T/err"
st1=$?
"$KHEOD" -C D2 --listen 127.0.0.1:$PD >"$T/out" 2>"$T/err2"
st2=$?
DPID=$(pgrep -f "kheod -C D2 --listen 127.0.0.1:$PD" | head -1)
[ -n "$DPID" ] && PIDS="$PIDS $DPID"
st=1
[ $st1 -eq 0 ] && [ $st2 -eq 1 ] && grep -q 'another kheod serves' "$T/err2" &&
	client idle $PD 0.3 >/dev/null && [ -n "$DPID" ] && kill -TERM "$DPID" &&
	gone "$DPID" && st=0
check "kheod in the background: exit 0 once serving; a failing one exits 1 with its message" $st "$st1 $st2 $(err1) $(cat "$T/err2")"

finish
