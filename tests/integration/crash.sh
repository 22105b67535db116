#!/bin/sh
# crash.sh - kill the real kheo binary with SIGKILL at random moments and
# check that nothing acknowledged is lost and the store stays whole.
# Prints TAP.
#
#   BUILD=build sh tests/integration/crash.sh     (from the repository root)
#   KHEO_CRASH_TRIALS=220 KHEO_CRASH_SEED=42      (optional)
#
# Each trial starts a child, a shell loop of kheo commands on one node V
# (put, set, del, commit, bundle create, bundle apply of prepared bundles,
# import of small traces), in its own process group, and kills the whole
# group with SIGKILL after a random 0-80 ms.  The child logs "T ..." before
# a command and "K ..." after it exited 0.  After each kill:
#
#   - kheo verify passes (SQLite's integrity check, every signature and
#     chain, the state rebuilt from the changesets);
#   - every acknowledged edit is there: a put's record with the value of
#     its last acknowledged edit, or of one tried after it (a command cut
#     by the kill may or may not have committed), never anything else;
#     an acknowledged delete has hidden its record;
#   - a put or set cut by the kill is all or nothing (name and
#     beneficiaries always change together);
#   - an acknowledged import is wholly there; an acknowledged bundle apply
#     has brought every record of that bundle, equal to the source's;
#   - no record appears that no command ever tried to make.
#
# At the end: the cumulative bundle applied once more completes the
# source's data (equal digests), and V, sealed and verified, bundled to a
# fresh node gives the same digest there.
#
# The scratch directory is on /dev/shm when it is writable, for speed.
# tmpfs has no real fsync, so this does not test durability against a
# power cut; it tests what a process kill can break: SQLite transactions
# and the library's use of them (a kill leaves exactly the bytes that were
# written before it, as on any file system).  Run with TMPDIR=/some/disk
# to use a real file system instead.
set -u

ROOT=$(pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KHEO=$BUILD/kheo
TRIALS=${KHEO_CRASH_TRIALS:-220}
SEED=${KHEO_CRASH_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
BUDGET=150 # seconds for the trials; the script stops early past it
# a sanitizer build runs each command several times slower
case $BUILD in *asan*) BUDGET=300 ;; esac
NB=30      # prepared bundles, each adding one unit of the source's data

if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
	base=/dev/shm
else
	base=${TMPDIR:-/tmp}
fi
S=$(mktemp -d "$base/kheo-crash.XXXXXX") || exit 1
pgid=
cleanup() {
	[ -n "$pgid" ] && kill -9 -"$pgid" 2>/dev/null
	rm -rf "$S"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$S" || exit 1

. "$ROOT/tests/integration/lib/tap.sh"

if [ ! -x "$KHEO" ]; then
	not_ok "$KHEO is not built"
	finish
fi
if command -v timeout >/dev/null 2>&1; then TO="timeout 60"; else TO=; fi
k() { $TO "$KHEO" "$@"; }
if ! command -v setsid >/dev/null 2>&1 || ! sleep 0.001 2>/dev/null; then
	not_ok "setsid and fractional sleep are needed"
	finish
fi
echo "# scratch $S, seed $SEED, $TRIALS trials"

U=dak-nong/cu-jut/ea-po

# ------------------------------------------------------------------ setup
#
# The source node SRC writes NB units (dak-nong/cu-jut/src/uNN), four
# changesets each, and after each unit a cumulative bundle b_N.khb.
# imp/ holds small traces with fresh ids for the child's imports.

mkdir -p imp src
python3 - "$TRIALS" "$NB" <<'EOF'
import json, random, sys
trials, nb = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(7)
def rid():
    return "%032x" % rnd.getrandbits(128)
def put(i, unit, n):
    return {"op": "put", "table": "model", "id": i, "fields": {
        "name": "Mô hình %d" % n, "kind": rnd.choice(["collective", "individual"]),
        "unit": unit, "year": 2013 + n % 12, "beneficiaries": n,
        "lat": round(12 + rnd.random(), 6), "updated_by": "x"}}
def st(i, n):
    return {"op": "set", "table": "model", "id": i,
            "field": rnd.choice(["beneficiaries", "year"]),
            "value": 2000 + n % 100}
n = 0
for u in range(1, nb + 1):
    unit = "dak-nong/cu-jut/src/u%02d" % u
    for r in range(4):
        ids, lines = [], []
        for _ in range(3):
            n += 1; i = rid(); ids.append(i); lines.append(put(i, unit, n))
        for _ in range(5):
            n += 1; lines.append(st(rnd.choice(ids), n))
        with open("src/u%02d_%d.jsonl" % (u, r), "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines))
for t in range(1, trials + 1):
    for c in (1, 2, 3):
        ids, lines = [], []
        for _ in range(6):
            n += 1; i = rid(); ids.append(i)
            lines.append(put(i, "dak-nong/cu-jut/imp", n))
        for _ in range(6):
            n += 1; lines.append(st(rnd.choice(ids), n))
        lines.append({"op": "del", "table": "model", "id": ids[0]})
        with open("imp/imp_%d_%d.jsonl" % (t, c), "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines))
EOF
setup_ok=$?
t0=$(date +%s)
k -C SRC init --role province --unit dak-nong >/dev/null || setup_ok=1
u=1
while [ $u -le $NB ] && [ $setup_ok -eq 0 ]; do
	uu=$(printf '%02d' $u)
	for r in 0 1 2 3; do
		k -C SRC import "src/u${uu}_$r.jsonl" >/dev/null &&
			k -C SRC commit >/dev/null || setup_ok=1
	done
	k -C SRC bundle create "b_$u.khb" >/dev/null || setup_ok=1
	u=$((u + 1))
done
k -C SRC ls model --json >src.json || setup_ok=1
k -C V init --role hub --unit dak-nong/cu-jut >/dev/null || setup_ok=1
echo 1 >nextb
: >lastid
: >log
if [ $setup_ok -ne 0 ]; then
	not_ok "setup: a source node with $NB bundles, import traces, node V"
	finish
fi
ok "setup: a source node with $NB bundles, import traces, node V ($(( $(date +%s) - t0 )) s)"

# ------------------------------------------------------------- the child

cat >child.sh <<'EOF'
# child.sh KHEO V LOG TRIAL STEP NEXTB LAST NB - the loop that is killed
set -u
K=$1 V=$2 LOG=$3 trial=$4 step=$5 nb=$6 last=$7 NB=$8
U=dak-nong/cu-jut/ea-po
echo $$ >"$LOG.pid"
i=0 ni=0
while :; do
	i=$((i + 1))
	v=$((trial * 1000 + i))
	id=$(printf '%016x%016x' "$trial" "$i")
	case $((step % 8)) in
	0|2)
		echo "T put $id $v" >>"$LOG"
		"$K" -C "$V" put model --id "$id" name="p$v" unit=$U \
			kind=collective year=2020 beneficiaries=$v \
			>/dev/null 2>>"$LOG.err" &&
			{ echo "K put $id $v" >>"$LOG"; last=$id; } ;;
	1|4)
		if [ -n "$last" ]; then
			echo "T set $last $v" >>"$LOG"
			"$K" -C "$V" set model "$last" beneficiaries=$v \
				name="n$v" 2>>"$LOG.err" &&
				echo "K set $last $v" >>"$LOG"
		fi ;;
	3)
		ni=$((ni + 1))
		f=imp/imp_${trial}_$ni.jsonl
		if [ -f "$f" ]; then
			echo "T import $f" >>"$LOG"
			"$K" -C "$V" import "$f" >/dev/null 2>>"$LOG.err" &&
				echo "K import $f" >>"$LOG"
		fi ;;
	5)
		if [ $((i % 2)) -eq 0 ]; then
			echo "T commit" >>"$LOG"
			"$K" -C "$V" commit >/dev/null 2>>"$LOG.err" &&
				echo "K commit" >>"$LOG"
		else
			echo "T create" >>"$LOG"
			"$K" -C "$V" bundle create out.khb >/dev/null \
				2>>"$LOG.err" && echo "K create" >>"$LOG"
		fi ;;
	6)
		b=$nb
		[ "$b" -gt "$NB" ] && b=$NB
		echo "T apply $b" >>"$LOG"
		"$K" -C "$V" bundle apply "b_$b.khb" >/dev/null \
			2>>"$LOG.err" &&
			{ echo "K apply $b" >>"$LOG"; nb=$((b + 1)); } ;;
	7)
		echo "T put $id $v" >>"$LOG"
		if "$K" -C "$V" put model --id "$id" name="p$v" unit=$U \
			kind=collective year=2020 beneficiaries=$v \
			>/dev/null 2>>"$LOG.err"; then
			echo "K put $id $v" >>"$LOG"
			echo "T del $id" >>"$LOG"
			"$K" -C "$V" del model "$id" 2>>"$LOG.err" &&
				echo "K del $id" >>"$LOG"
		fi ;;
	esac
	step=$((step + 1))
done
EOF

# ------------------------------------------------------------ the checker

cat >check.py <<'EOF'
# check.py KHEO V FINAL - check node V against the child's log; print
# "FAIL <category> <message>" lines, "INFLIGHT <op>", and write nextb and
# lastid for the next trial.
import json, subprocess, sys
kheo, V, final = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
U = "dak-nong/cu-jut/ea-po"
fails = []
def fail(cat, msg):
    if sum(1 for c, _ in fails if c == cat) < 5:
        fails.append((cat, msg))

def kj(*args):
    p = subprocess.run([kheo, "-C", V] + list(args) + ["--json"],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        return None, p.stderr.decode(errors="replace").strip()
    return json.loads(p.stdout), None

events = []  # (kind, T/K, arg, value)
trial_start = 0
for line in open("log", encoding="utf-8"):
    w = line.split()
    if not line.endswith("\n") or len(w) < 2:
        continue  # the kill cut this line
    if w[0] == "X":
        trial_start = len(events)
        continue
    events.append((w[1], w[0], w[2] if len(w) > 2 else None,
                   int(w[3]) if len(w) > 3 else None))

# what was in flight when this trial's child was killed
inflight = "none"
for e in events[trial_start:]:
    inflight = e[0] if e[1] == "T" else "none"
print("INFLIGHT", inflight)

recs = {}      # id -> list of [value, acked] in order; put first
tried_put, acked_del, tried_del = set(), set(), set()
acked_del_now = set()
imports_t, imports_k = set(), set()
apply_max_t, apply_max_k = 0, 0
for idx, (kind, tk, arg, val) in enumerate(events):
    if kind in ("put", "set"):
        if tk == "T":
            if kind == "put":
                tried_put.add(arg)
            recs.setdefault(arg, []).append([val, False])
        else:
            recs[arg][-1][1] = True
    elif kind == "del":
        (tried_del if tk == "T" else acked_del).add(arg)
        if tk == "K" and idx >= trial_start:
            acked_del_now.add(arg)
    elif kind == "import":
        (imports_t if tk == "T" else imports_k).add(arg)
    elif kind == "apply":
        if tk == "T":
            apply_max_t = max(apply_max_t, int(arg))
        else:
            apply_max_k = max(apply_max_k, int(arg))

ls, err = kj("ls", "model")
if ls is None:
    print("FAIL acked kheo ls model failed:", err)
    sys.exit(0)
live = {r["id"]: r for r in ls}

def consistent(r):
    b = r.get("beneficiaries")
    return (isinstance(b, int) and r.get("name") in ("p%d" % b, "n%d" % b)
            and r.get("kind") == "collective" and r.get("year") == 2020
            and r.get("unit") == U and r.get("_unit") == U)

# the node's own puts, sets and deletes
for rid, seq in recs.items():
    acked = [i for i, (_, a) in enumerate(seq) if a]
    r = live.get(rid)
    if rid in acked_del:
        if r is not None:
            fail("acked", "%s: delete acknowledged, still listed" % rid)
        continue
    if r is None:
        if acked and rid not in tried_del:
            fail("acked", "%s: acknowledged put missing" % rid)
        continue
    if not consistent(r):
        fail("atomic", "%s: fields of one put or set only partly there: %s"
             % (rid, json.dumps(r, ensure_ascii=False)[:200]))
        continue
    allowed = [v for v, _ in seq[acked[-1]:]] if acked else [v for v, _ in seq]
    if r["beneficiaries"] not in allowed:
        fail("acked", "%s: value %s, acknowledged/tried since: %s"
             % (rid, r["beneficiaries"], allowed[:6]))

check_dels = acked_del if final else acked_del_now
for rid in sorted(check_dels):
    g, err = kj("get", "model", rid)
    if g is None or g.get("_deleted") is not True:
        fail("acked", "%s: acknowledged delete: get says %s" % (rid, err or g))

# imports
def expected(path):
    want, gone = {}, set()
    for line in open(path, encoding="utf-8"):
        o = json.loads(line)
        if o["op"] == "put":
            want[o["id"]] = {k: v for k, v in o["fields"].items()
                             if k != "updated_by"}
        elif o["op"] == "set" and o["id"] in want:
            want[o["id"]][o["field"]] = o["value"]
        elif o["op"] == "del" and o["id"] in want:
            del want[o["id"]]
            gone.add(o["id"])
    return want, gone

import_ids = set()
for path in sorted(imports_t):
    want, gone = expected(path)
    import_ids |= set(want) | gone
    if path not in imports_k:
        continue
    for rid, fields in want.items():
        r = live.get(rid)
        if r is None or any(r.get(k) != v for k, v in fields.items()):
            fail("import", "%s acknowledged: %s is %s" % (path, rid,
                 "missing" if r is None else "different"))
    for rid in gone:
        if rid in live:
            fail("import", "%s acknowledged: deleted %s is listed" % (path, rid))

# bundles
src = json.load(open("src.json", encoding="utf-8"))
def unit_no(r):
    return int(r["_unit"].rsplit("/u", 1)[1])
src_ids = {r["id"] for r in src if unit_no(r) <= apply_max_t}
for r in src:
    if unit_no(r) <= apply_max_k:
        got = live.get(r["id"])
        if got != r:
            fail("bundle", "b_%d.khb acknowledged: %s is %s" % (apply_max_k,
                 r["id"], "missing" if got is None else "different"))

# records nobody tried to make
for rid in live:
    if rid not in tried_put and rid not in import_ids and rid not in src_ids:
        fail("phantom", "%s (%s) was never put, imported or bundled"
             % (rid, live[rid].get("_unit")))

for cat, msg in fails:
    print("FAIL", cat, msg)

# the next trial's set target: an acknowledged put not deleted or tried
last = ""
for rid, seq in recs.items():
    if rid in live and rid not in tried_del and any(a for _, a in seq):
        last = rid
open("lastid", "w").write(last + "\n")
open("nextb", "w").write("%d\n" % (apply_max_k + 1))
print("ACKED", sum(1 for e in events if e[1] == "K" and e[0] in ("put", "set", "del")),
      len(imports_k), apply_max_k,
      sum(1 for e in events if e[1] == "K" and e[0] in ("commit", "create")))
EOF

# ------------------------------------------------------------- the trials

# group_alive PGID: true while a process of the group is not yet dead.
# Orphans the kill leaves as zombies until init reaps them hold no files.
group_alive() {
	for p in $(pgrep -g "$1" 2>/dev/null); do
		read -r _ _ pst _ <"/proc/$p/stat" 2>/dev/null || continue
		[ "$pst" != Z ] && return 0
	done
	return 1
}

# Kill after 0-80 ms, or 0-8 puts' time when a put is slower than 10 ms
# (a sanitizer or emulator build), so that commands still complete.
k -C probe init --role device --unit dak-nong/probe >/dev/null
ms0=$(date +%s%N)
for i in 1 2 3 4 5; do k -C probe put model name=x unit=dak-nong/probe >/dev/null; done
ms1=$(date +%s%N)
case $ms0$ms1 in
*N*) window=80 ;;
*) window=$(( (ms1 - ms0) / 5000000 * 8 )); [ $window -lt 80 ] && window=80 ;;
esac
echo "# kill window 0-$window ms"
awk -v seed="$SEED" -v n="$TRIALS" -v w="$window" 'BEGIN { srand(seed);
	for (i = 1; i <= n; i++) printf "%.3f\n", rand() * w / 1000 }' >delays

verify_fail=
cat_fail=
inflight=
trial=0
stop=0
t0=$(date +%s)
while read -r delay; do
	trial=$((trial + 1))
	if [ $(( $(date +%s) - t0 )) -gt $BUDGET ]; then
		echo "# time budget of $BUDGET s spent after $((trial - 1)) trials"
		trial=$((trial - 1))
		break
	fi
	# a line the kill cut short must not swallow the marker
	[ -n "$(tail -c 1 log)" ] && echo >>log
	echo "X trial $trial" >>log
	rm -f log.pid
	setsid sh child.sh "$KHEO" V log "$trial" "$trial" "$(cat nextb)" \
		"$(cat lastid)" "$NB" </dev/null >/dev/null 2>&1 &
	child=$!
	w=0
	while [ ! -s log.pid ] && [ $w -lt 500 ]; do sleep 0.002; w=$((w + 1)); done
	pgid=$(cat log.pid 2>/dev/null)
	sleep "$delay"
	[ -n "$pgid" ] && kill -9 -"$pgid" 2>/dev/null
	kill -9 "$child" 2>/dev/null
	wait "$child" 2>/dev/null
	# every process of the group (the kheo the loop was running) is dead
	w=0
	while [ -n "$pgid" ] && group_alive "$pgid" && [ $w -lt 500 ]; do
		sleep 0.002; w=$((w + 1))
	done
	pgid=

	# verify and the checker only read: run them side by side
	k -C V verify </dev/null >verify.out 2>&1 &
	vpid=$!
	python3 check.py "$KHEO" V 0 </dev/null >check.out 2>&1 ||
		echo "FAIL checker $(tail -n 3 check.out | tr '\n' ' ')" >>check.out
	if ! wait $vpid; then
		verify_fail="$verify_fail
trial $trial (killed after ${delay}s): $(head -c 300 verify.out)"
		stop=$((stop + 1))
	fi
	inflight="$inflight $(sed -n 's/^INFLIGHT //p' check.out)"
	if grep -q '^FAIL' check.out; then
		cat_fail="$cat_fail
$(sed -n "s/^FAIL /trial $trial: /p" check.out)"
		stop=$((stop + 1))
	fi
	# a broken store makes every later trial fail the same way
	[ $stop -ge 3 ] && { echo "# stopping after 3 failing trials"; break; }
done <delays
ran=$trial
elapsed=$(( $(date +%s) - t0 ))
acked=$(sed -n 's/^ACKED //p' check.out)
set -- $acked
a_edits=${1:-0} a_imports=${2:-0} a_bundles=${3:-0} a_seals=${4:-0}
mid=$(echo "$inflight" | tr ' ' '\n' | grep -v '^$' | grep -cv '^none$')
summary=$(echo "$inflight" | tr ' ' '\n' | grep -v '^$' | sort | uniq -c |
	awk '{ printf "%s%s %d", sep, $2, $1; sep = ", " }')

st=1
[ "$ran" -ge 200 ] && [ "$mid" -ge $((ran / 2)) ] && st=0
check_line="$ran trials in $elapsed s; killed during: $summary"
if [ $st -eq 0 ]; then ok "$check_line"; else
	not_ok "$check_line" "want >= 200 trials, half of them killed mid-command"
fi

# categories of the checker
report() { # NAME CATEGORY
	lines=$(echo "$cat_fail" | grep " $2 " | head -n 10)
	if [ -z "$lines" ]; then ok "$1"; else
		not_ok "$1" "$(echo "$lines" | head -n 1)"
		echo "$lines" | sed 1d | sed 's/^/#   /'
	fi
}
if [ -z "$verify_fail" ]; then
	ok "kheo verify passed after every kill"
else
	not_ok "kheo verify passed after every kill" "$(echo "$verify_fail" | sed -n 2,4p)"
fi
report "every acknowledged put, set and delete is there after every kill" acked
report "a put or set cut by a kill is all or nothing" atomic
report "every acknowledged import is wholly there" import
report "every acknowledged bundle apply brought all of its records" bundle
report "no record appears that no command tried to make" phantom
report "the checker ran" checker

st=1
[ "$a_edits" -ge $((ran / 2)) ] && [ "$a_imports" -ge 10 ] && [ "$a_bundles" -ge 5 ] &&
	[ "$a_seals" -ge 10 ] && st=0
line="the child made progress: $a_edits edits, $a_imports imports, $a_bundles bundles, $a_seals seals acknowledged"
if [ $st -eq 0 ]; then ok "$line"; else not_ok "$line" "too little was acknowledged for the checks to mean much"; fi
[ -s log.err ] && echo "# child's stderr (refusals): $(sort log.err | uniq -c | sort -rn | head -n 3 | tr '\n' ' ')"

# ------------------------------------------------------------------- end

python3 check.py "$KHEO" V 1 >check.out 2>&1
if grep -q '^FAIL' check.out || ! grep -q '^ACKED' check.out; then
	not_ok "at the end, every acknowledged edit (deletes checked with get) is there" \
		"$(grep '^FAIL' check.out | head -n 3)" "$(tail -n 2 check.out)"
else
	ok "at the end, every acknowledged edit (deletes checked with get) is there"
fi

run_ok() { $TO "$KHEO" "$@" >end.out 2>&1; }
st=1
if run_ok -C V bundle apply "b_$NB.khb"; then
	st=0
	u=1
	while [ $u -le $NB ]; do
		p=dak-nong/cu-jut/src/u$(printf '%02d' $u)
		[ "$(k -C V digest --unit $p)" = "$(k -C SRC digest --unit $p)" ] || st=1
		u=$((u + 1))
	done
fi
if [ $st -eq 0 ]; then ok "the source's bundle applied once more completes its data (equal digests)"
else not_ok "the source's bundle applied once more completes its data (equal digests)" "$(head -c 300 end.out)"; fi

st=1
run_ok -C V commit && run_ok -C V verify &&
	run_ok -C V bundle create all.khb &&
	run_ok -C W init --role hub --unit dak-nong/cu-jut &&
	run_ok -C W bundle apply all.khb &&
	[ "$(k -C V digest)" = "$(k -C W digest)" ] &&
	[ "$(k -C V ls model --json)" = "$(k -C W ls model --json)" ] && st=0
if [ $st -eq 0 ]; then ok "after the kills, V seals and verifies, and a fresh node from its bundle shows the same state"
else not_ok "after the kills, V seals and verifies, and a fresh node from its bundle shows the same state" "$(head -c 300 end.out)"; fi

if grep -q '^T create' log; then
	st=1
	[ -f out.khb ] && run_ok -C X init --role hub --unit dak-nong/cu-jut &&
		run_ok -C X bundle apply out.khb && st=0
	if [ $st -eq 0 ]; then ok "the bundle file left by killed bundle creates is whole"
	else not_ok "the bundle file left by killed bundle creates is whole" "$(head -c 300 end.out)"; fi
fi
finish
