# tap.sh - TAP helpers the integration scripts share (sourced, not run;
# tests/run.sh runs only tests/integration/*.sh).
#
#   ok NAME                      a passing test
#   not_ok NAME [LINE...]        a failing one, with diagnostic lines
#   check NAME STATUS [LINE...]  ok when STATUS is 0, else not_ok
#   finish                       the plan line; exit 1 if anything failed

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
check() {
	chk_name=$1 chk_st=$2
	shift 2
	if [ "$chk_st" -eq 0 ]; then ok "$chk_name"; else not_ok "$chk_name" "$@"; fi
}
finish() { echo "1..$n"; [ "$failed" -eq 0 ]; exit $?; }
