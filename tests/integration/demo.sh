#!/bin/sh
# demo.sh - `make demo` inside `make test`: the README's first command must
# keep working.  Runs tests/demo.sh (a province, two hubs and four devices,
# enrolled, exchanging bundles) and checks what it promises: it ends well,
# every node prints the province's digest and verifies, and the province
# holds the 4 live models its sample data implies.
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
KHEO_DEMO_DIR="$dir/demo" sh tests/demo.sh "$BUILD" >"$dir/out.txt" 2>&1
st=$?
check "make demo runs to the end" "$st" "$(tail -5 "$dir/out.txt")"
verified=$(grep -c 'verify: ok' "$dir/out.txt")
[ "$verified" -eq 7 ]
check "all 7 nodes verify" $? "$verified verified"
digests=$(grep '  digest ' "$dir/out.txt" | awk '{print $3}' | sort -u | wc -l)
[ "$digests" -eq 1 ]
check "all 7 nodes print one digest" $? "$(grep digest "$dir/out.txt")"
grep -q '4 live models' "$dir/out.txt"
check "the province holds the 4 live models of the sample data" $?
grep -q 'damaged bundle refused whole' "$dir/out.txt"
check "a damaged bundle is refused whole" $?
finish
