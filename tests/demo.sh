#!/bin/sh
# demo.sh - what `make demo` runs: a province server and two district hubs
# of Đắk Nông as real kheod processes on loopback, with commune officers'
# devices and two district reviewers syncing with them over TCP, using the
# real kheo and kheod binaries and nothing else.
#
#   sh tests/demo.sh [BUILD]          (KHEO_DEMO_DIR keeps the files there)
#
# The sample data is in tests/demo-data: the province's units (published in
# sys_unit), the models the officers register offline, the visits they
# record.  Two officers of one commune edit the same model at once; the
# conflict shows and is resolved; reviewers recognise models; a damaged
# bundle is refused whole; every node ends with the same digest for what
# it holds and a passing `kheo verify`; the province's audit mirror is
# written and verified; the province prints its report.
set -eu

BUILD=${1:-build}
ROOT=$(pwd)
K="$ROOT/$BUILD/kheo"
KD="$ROOT/$BUILD/kheod"
DATA="$ROOT/tests/demo-data"
for b in "$K" "$KD"; do
	[ -x "$b" ] || { echo "demo: $b not built (make)" >&2; exit 1; }
done
dir=${KHEO_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kheo-demo-XXXXXX")}
mkdir -p "$dir"
cd "$dir"

PIDS=""
stop_daemons() {
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	PIDS=""
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM HUP

say() { printf '\n== %s\n' "$*"; }
k() { "$K" "$@"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
freeport() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# daemon NODE PORT [UPSTREAM_PORT UPSTREAM_KEY]: kheod serving NODE
daemon() {
	{
		echo "listen = 127.0.0.1:$2"
		echo "log_level = info"
		if [ $# -gt 2 ]; then
			echo "upstream = 127.0.0.1:$3"
			echo "upstream_key = $4"
			echo "nightly = off"
		fi
	} >"$1.conf"
	"$KD" -C "$1" --config "$1.conf" --foreground >"$1.log" 2>&1 &
	PIDS="$PIDS $!"
	i=0
	until grep -q "started (kheo" "$1.log" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 100 ] && { echo "demo: kheod $1 did not start" >&2; cat "$1.log" >&2; exit 1; }
		sleep 0.05
	done
}
# sync DEVICE HUB: one session over TCP, the summary line indented
sync() {
	printf '   %-15s <-> %-10s ' "$1" "$2"
	eval "port=\$PORT_$(echo "$2" | tr -d -)"
	k -C "$1" sync "127.0.0.1:$port" | sed 's/^synced with [^ ]* ([0-9a-f]*): //'
}
# upstream HUB: the hub's kheod syncs with the province now
upstream() {
	printf '   %-15s <-> %-10s ' "$1" province
	k -C "$1" sync --now | grep '^upstream' | sed 's/^upstream [^ ]* ([^)]*) key [0-9a-f]*: //'
}
# id KEY: the record id a models.tsv key got
id() { grep "^$1 " ids.txt | cut -d' ' -f2; }

DEVICES="eapo eapo2 namdong ducminh thuanan"
REVIEWERS="review-cujut review-dakmil"
NODES="province hub-cujut hub-dakmil $DEVICES $REVIEWERS"

say "1. one changeset through proto/: encode, sign, frame, open, forge"
"$ROOT/$BUILD/demo_proto" | sed 's/^/   /'

say "2. nodes: a province, two district hubs, five officers' phones, two reviewers"
k -C province init --role province --unit dak-nong >/dev/null
k -C hub-cujut init --role hub --unit dak-nong/cu-jut >/dev/null
k -C hub-dakmil init --role hub --unit dak-nong/dak-mil >/dev/null
k -C eapo init --role device --unit dak-nong/cu-jut/ea-po >/dev/null
k -C eapo2 init --role device --unit dak-nong/cu-jut/ea-po >/dev/null
k -C namdong init --role device --unit dak-nong/cu-jut/nam-dong >/dev/null
k -C ducminh init --role device --unit dak-nong/dak-mil/duc-minh >/dev/null
k -C thuanan init --role device --unit dak-nong/dak-mil/thuan-an >/dev/null
k -C review-cujut init --role device --unit dak-nong/cu-jut >/dev/null
k -C review-dakmil init --role device --unit dak-nong/dak-mil >/dev/null
# enrolment, offline: the node asks, the issuer signs, the node accepts
# only with the root fingerprint it was told (docs/identity.md)
root=$(k -C province id --json | field key)
enrol() { # issuer node role unit
	k -C "$2" enroll request > "$2.request"
	k -C "$1" enroll sign "$2.request" --role "$3" --unit "$4" > "$2.cert"
	k -C "$2" enroll accept "$2.cert" --root "$root" >/dev/null
}
enrol province hub-cujut hub dak-nong/cu-jut
enrol province hub-dakmil hub dak-nong/dak-mil
enrol hub-cujut eapo collector dak-nong/cu-jut/ea-po
enrol hub-cujut eapo2 collector dak-nong/cu-jut/ea-po
enrol hub-cujut namdong collector dak-nong/cu-jut/nam-dong
enrol hub-dakmil ducminh collector dak-nong/dak-mil/duc-minh
enrol hub-dakmil thuanan collector dak-nong/dak-mil/thuan-an
enrol hub-cujut review-cujut reviewer dak-nong/cu-jut
enrol hub-dakmil review-dakmil reviewer dak-nong/dak-mil
for n in $NODES; do
	printf '   %-14s %s\n' "$n" "$(k -C $n id --json |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print("%-8s %-26s %-9s %s %s…" % (d["node_role"], d["unit"], d["cert_role"], d["mode"], d["key"][:16]))')"
done
echo "   root fingerprint (the province's key): $(echo "$root" | cut -c1-16)…"
# the province names its units for every node (sys_unit, in _sys)
grep -v '^#' "$DATA/units.tsv" | while IFS='	' read -r slug name parent; do
	if [ -n "$parent" ]; then
		k -C province put sys_unit slug="$slug" name="$name" parent="$parent" >/dev/null
	else
		k -C province put sys_unit slug="$slug" name="$name" >/dev/null
	fi
done
echo "   the province publishes $(grep -vc '^#' "$DATA/units.tsv") unit names"

say "3. the province and the hubs start serving (kheod on loopback)"
PORT_province=$(freeport)
PORT_hubcujut=$(freeport)
PORT_hubdakmil=$(freeport)
daemon province "$PORT_province"
daemon hub-cujut "$PORT_hubcujut" "$PORT_province" "$root"
daemon hub-dakmil "$PORT_hubdakmil" "$PORT_province" "$root"
for n in province hub-cujut hub-dakmil; do
	printf '   %-11s %s\n' "$n" "$(grep -o 'serving .*' "$n.log" | sed "s|$dir/||")"
done

say "4. offline work: officers register models and record visits"
: > ids.txt
grep -v '^#' "$DATA/models.tsv" | while IFS='	' read -r key dev name kind fld status reg year ben; do
	unit=$(k -C "$dev" id --json | field unit)
	mid=$(k -C "$dev" put model name="$name" unit="$unit" kind="$kind" \
		field="$fld" status="$status" registered_on="$reg" year="$year" \
		beneficiaries="$ben")
	echo "$key $mid" >> ids.txt
done
grep -v '^#' "$DATA/visits.tsv" | while IFS='	' read -r key dev date kind who rating; do
	unit=$(k -C "$dev" id --json | field unit)
	k -C "$dev" put visit model="$(id "$key")" date="$date" kind="$kind" \
		inspector="$who" rating="$rating" unit="$unit" >/dev/null
done
k -C thuanan del model "$(id m09)"
echo "   $(wc -l < ids.txt) models and $(grep -vc '^#' "$DATA/visits.tsv") visits on 5 phones; one model withdrawn by deletion; no network yet"

say "5. devices sync with their hubs; the hubs with the province"
for d in eapo eapo2 namdong; do sync $d hub-cujut; done
for d in ducminh thuanan; do sync $d hub-dakmil; done
upstream hub-cujut
upstream hub-dakmil
upstream hub-cujut

say "6. two officers of Ea Pô change the same model at once"
sync eapo2 hub-cujut
m01=$(id m01)
k -C eapo set model "$m01" beneficiaries=45
k -C eapo2 set model "$m01" beneficiaries=48
echo "   eapo says 45 beneficiaries, eapo2 says 48, each offline"
sync eapo hub-cujut
sync eapo2 hub-cujut
k -C hub-cujut conflicts | sed 's/^/   hub: /'
sync eapo hub-cujut
k -C eapo set model "$m01" beneficiaries=46
echo "   the officers agree on 46; eapo records it, having seen both values"
sync eapo hub-cujut
k -C hub-cujut conflicts | sed 's/^/   hub: /'

say "7. district reviewers recognise models"
sync review-cujut hub-cujut
sync review-dakmil hub-dakmil
k -C review-cujut set model "$(id m03)" status=recognized recognized_on=2025-06-20 level=commune
k -C review-cujut set model "$(id m06)" status=recognized recognized_on=2025-07-01 level=district
k -C review-dakmil set model "$(id m07)" status=recognized recognized_on=2025-05-15 level=commune
k -C review-dakmil set model "$(id m12)" status=recognized recognized_on=2025-08-01 level=district
echo "   4 models recognised (Ea Pô, Nam Dong, Đức Minh twice)"
if k -C eapo set model "$(id m02)" status=recognized 2>err.txt; then
	echo "demo: a collector recognised a model" >&2; exit 1
fi
printf '   a collector may not: %s\n' "$(cat err.txt)"
sync review-cujut hub-cujut
sync review-dakmil hub-dakmil

say "8. a bundle damaged on the way (one bit flipped): the sneakernet path"
k -C namdong set model "$(id m05)" status=building
k -C namdong bundle create namdong.kheo >/dev/null
python3 - "$dir/namdong.kheo" <<'PY'
# one bit flipped in the middle of the file, as a bad SD card would
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 1
open(p, 'wb').write(b)
PY
if k -C eapo bundle apply namdong.kheo 2>err.txt; then
	echo "demo: a damaged bundle was accepted!" >&2
	exit 1
fi
printf '   damaged bundle refused whole: %s\n' "$(cat err.txt)"

say "9. everything everywhere: up to the province, then down to every device"
sync namdong hub-cujut
upstream hub-cujut
upstream hub-dakmil
upstream hub-cujut
for d in eapo eapo2 namdong review-cujut; do sync $d hub-cujut; done
for d in ducminh thuanan review-dakmil; do sync $d hub-dakmil; done

say "10. the hub's view of its devices"
k -C hub-cujut status | sed -n '/^peer/,$p' | sed 's/^/   /'

say "11. every node agrees on what it holds, and every node verifies"
for n in $NODES; do
	unit=$(k -C $n id --json | field unit)
	printf '   %-14s %-26s digest %s  verify: %s\n' "$n" "$unit" \
		"$(k -C $n digest --unit "$unit" | cut -c1-16)" \
		"$(k -C $n verify >/dev/null 2>&1 && echo ok || echo FAILED)"
done
bad=0
for n in $NODES; do
	unit=$(k -C $n id --json | field unit)
	[ "$(k -C $n digest --unit "$unit")" = "$(k -C province digest --unit "$unit")" ] ||
		{ echo "demo: $n differs from the province on $unit" >&2; bad=1; }
done
[ $bad -eq 0 ]
echo "   each node prints the province's digest for its own unit"

say "12. the audit mirror: the province's history as a git repository"
k -C province audit export audit.git | sed 's/^/   /'
k audit verify audit.git | sed "s|^$dir/||; s/^/   /"
f=dak-nong/cu-jut/ea-po/model/$(echo "$m01" | cut -c1-2)/$m01.json
echo "   every commit is signed by the province (git verify-commit, stock git):"
echo "kheo-mirror $(git -C audit.git show main:_kheo/mirror.json | field signing_key)" >allowed
git -C audit.git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile="$dir/allowed" \
	verify-commit main 2>&1 | sed 's/^/     /'
echo "   who changed model m01 (git log, stock git):"
git -C audit.git log --format='     %ad  %an  %s' --date=format:'%Y-%m-%d %H:%M:%S' -- "$f" | cut -c1-120
echo "   its beneficiaries line (git blame):"
git -C audit.git blame --date=short "$f" 2>/dev/null | grep beneficiaries | sed 's/^/     /' | cut -c1-120
echo "   and every write to that field, the losing one too (kheo audit log):"
k audit log audit.git model "$m01" | grep -A1 ' beneficiaries ' | sed 's/^/     /' | cut -c1-120

say "13. the province's report"
k -C province report --by unit --unit dak-nong | sed 's/^/   /'
echo
echo "   recognised and registered in 2025, collective / individual:"
k -C province report --by kind --from 2025-01-01 --to 2025-12-31 | sed 's/^/   /'
echo
echo "   no inspection or supervision in the 6 months to 30 November 2025:"
k -C province report --by unit --unit dak-nong --overdue 6 --as-of 2025-11-30 --list | sed 's/^/   /'
k -C province report --by unit,field --format xlsx --out bao-cao.xlsx
k -C province report --by unit,field --format csv --out bao-cao.csv
echo "   also as bao-cao.xlsx and bao-cao.csv; search: kheo ls model --search \"cong chieng\":"
k -C province ls model --search "cong chieng" | sed 's/^/   /'

stop_daemons
say "done"
echo "   files: $dir (each folder is a node: try '$BUILD/kheo -C $dir/province log',"
echo "   '$BUILD/kheo -C $dir/hub-cujut status', or"
echo "   sqlite3 $dir/province/kheo.db 'SELECT name, status FROM model')"
