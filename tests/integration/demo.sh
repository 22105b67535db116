#!/bin/sh
# demo.sh - `make demo` inside `make test`: the README's first command must
# keep working.  Runs tests/demo.sh (a province and two hubs as kheod
# processes, five officers' phones and two reviewers syncing with them)
# and checks what it promises against what tests/demo-data implies.
#
#   BUILD=build sh tests/integration/demo.sh   (from the repository root)
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/integration/lib/tap.sh"
BUILD=${BUILD:-build}
case $BUILD in /*) BUILD=${BUILD#"$ROOT"/} ;; esac
dir=$(mktemp -d "${TMPDIR:-/tmp}/kheo-demo-test-XXXXXX")
trap 'rm -rf "$dir"' EXIT

cd "$ROOT"
start=$(date +%s)
KHEO_DEMO_DIR="$dir/demo" sh tests/demo.sh "$BUILD" >"$dir/out.txt" 2>&1
st=$?
took=$(($(date +%s) - start))
check "make demo runs to the end" "$st" "$(tail -5 "$dir/out.txt")"
# the promise is for the normal build; a sanitizer build runs slower
limit=60
case $BUILD in *asan*) limit=180 ;; esac
[ "$took" -lt "$limit" ]
check "it takes under a minute (normal build; 3 under sanitizers)" $? "$took s"
# the demo's kheods run in its folder: none may be left there
left=""
for p in $(pgrep -x kheod); do
	case $(readlink "/proc/$p/cwd" 2>/dev/null) in
	"$dir/demo"*) left="$left $p" ;;
	esac
done
[ -z "$left" ]
check "it leaves no kheod running" $? "still running:$left"
verified=$(grep -c 'verify: ok' "$dir/out.txt")
[ "$verified" -eq 10 ]
check "all 10 nodes verify" $? "$verified verified"
grep -q "each node prints the province's digest for its own unit" "$dir/out.txt"
check "every node prints the province's digest for its unit" $? \
	"$(grep digest "$dir/out.txt")"
[ "$(grep -E '^   eapo2? .* digest ' "$dir/out.txt" | awk '{print $4}' |
	sort -u | wc -l)" -eq 1 ] &&
	[ "$(grep -cE '^   eapo2? .* digest ' "$dir/out.txt")" -eq 2 ]
check "the two phones of Ea Pô print one digest" $?
grep -q 'hub: model .* beneficiaries: 48 .* | 45 ' "$dir/out.txt" &&
	[ "$(grep -c 'hub: no conflicts' "$dir/out.txt")" -eq 1 ]
check "the conflict shows at the hub with both values, then is resolved" $? \
	"$(grep 'hub:' "$dir/out.txt")"
grep -q 'a collector may not: .*may be set only by a reviewer' "$dir/out.txt"
check "a collector cannot recognise a model" $?
grep -q 'audit.git: [0-9]* commits, [0-9]* changesets, head [0-9a-f]*: verified (0 errors' "$dir/out.txt" &&
	git -C "$dir/demo/audit.git" fsck --strict >/dev/null 2>&1
check "the province's audit mirror verifies, and stock git fsck --strict accepts it" $? \
	"$(grep -A2 'audit mirror' "$dir/out.txt")"
grep -q 'Good "git" signature for kheo-mirror with ED25519 key' "$dir/out.txt" &&
	sed -n '/who changed model m01/,/its beneficiaries line/p' "$dir/out.txt" | grep -q ': put model' &&
	sed -n '/every write to that field/,/13. the/p' "$dir/out.txt" | grep -q 'set beneficiaries 48'
check "stock git verifies the mirror's signature, and git log and kheo audit log show model m01's history" $? \
	"$(grep -A8 'audit mirror' "$dir/out.txt")"
grep -q 'damaged bundle refused whole' "$dir/out.txt"
check "a damaged bundle is refused whole" $?
grep -q 'rejected [1-9]' "$dir/out.txt"
[ $? -ne 0 ]
check "no session rejected anything" $? "$(grep 'rejected [1-9]' "$dir/out.txt")"

# the report, against tests/demo-data: 12 models, m09 deleted; recognised
# by the reviewers: m03, m06 (Cư Jút), m07, m12 (Đắk Mil)
grep -q '^   Huyện Cư Jút  *6  *6  *2$' "$dir/out.txt" &&
	grep -q '^   Huyện Đắk Mil  *5  *5  *2$' "$dir/out.txt" &&
	grep -q '^   Tổng cộng  *11  *11  *4$' "$dir/out.txt"
check "the province report: 6 models in Cư Jút, 5 in Đắk Mil, 4 recognised" $? \
	"$(grep -A6 'province.s report' "$dir/out.txt")"
grep -q '^   Tập thể  *8  *6  *1$' "$dir/out.txt" &&
	grep -q '^   Cá nhân  *3  *1  *3$' "$dir/out.txt"
check "2025: collective 6 registered, 1 recognised; individual 1 and 3" $? \
	"$(grep -A5 'collective / individual' "$dir/out.txt")"
grep -q '^   Huyện Cư Jút  *6  *6  *2  *4$' "$dir/out.txt" &&
	grep -q '^   Huyện Đắk Mil  *5  *5  *2  *5$' "$dir/out.txt" &&
	grep -q '^   Tổng cộng  *11  *11  *4  *9$' "$dir/out.txt"
check "9 models without an inspection or supervision in 6 months" $? \
	"$(grep -A6 'no inspection' "$dir/out.txt")"
python3 - "$dir/demo/bao-cao.csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], encoding='utf-8-sig', newline='')))
assert rows[0][:2] == ['unit', 'unit_name'], rows[0]
assert rows[-1][0] == 'total' and rows[-1][3] == '11', rows[-1]
EOF
check "the CSV report was written, with its total row" $?
[ -s "$dir/demo/bao-cao.xlsx" ]
check "the XLSX report was written" $?
finish
