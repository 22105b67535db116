#!/bin/sh
# run.sh - run the suite and end with one summary line: "N passed, N failed".
#
#   BUILD=build RUNNER="" sh tests/run.sh unit|all
#
# unit: the cmocka unit tests and the fuzz-corpus replays (what cross-test
# runs under qemu).  all: those, then the integration scripts in
# tests/integration/*.sh (multi-process, real files and sockets).
# cmocka reports in TAP (one "ok"/"not ok" line per test); a binary that
# dies without reporting counts as one failure.
set -u
BUILD=${BUILD:-build}
RUNNER=${RUNNER:-}
mode=${1:-all}
export CMOCKA_MESSAGE_OUTPUT=TAP
export KHEO_VECTORS=${KHEO_VECTORS:-tests/vectors}
# Under an emulator (cross-test) the convergence property runs fewer
# scenarios; make test itself runs the full 2,000.
if [ -n "$RUNNER" ] && [ -z "${KHEO_SCENARIOS:-}" ]; then
	export KHEO_SCENARIOS=200
fi

passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # name, exit status, log
	ok=$(grep -c '^ok ' "$3")
	bad=$(grep -c '^not ok ' "$3")
	if [ "$2" -ne 0 ] && [ "$bad" -eq 0 ]; then
		bad=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$bad" -ne 0 ]; then
		failures="$failures $1"
		echo "--- $1 (exit $2)"
		grep -v '^ok ' "$3" | tail -40
	fi
	printf '%-32s %4d ok %4d failed\n' "$1" "$ok" "$bad"
}

for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] || continue
	$RUNNER "$bin" >"$log" 2>&1
	count "$(basename "$bin")" $? "$log"
done

# Every fuzz target replays its corpus: each input is one test.
for bin in "$BUILD"/tests/replay_*; do
	[ -x "$bin" ] || continue
	name=${bin##*/replay_}
	$RUNNER "$bin" tests/fuzz/corpus/"$name" >"$log" 2>&1
	count "replay_$name" $? "$log"
done

if [ "$mode" = all ]; then
	for script in tests/integration/*.sh; do
		[ -f "$script" ] || continue
		BUILD=$BUILD sh "$script" >"$log" 2>&1
		count "$(basename "$script" .sh)" $? "$log"
	done
fi

[ -n "$failures" ] && echo "failed:$failures"
echo "kheo: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
