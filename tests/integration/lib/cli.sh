# cli.sh - what the integration scripts that drive the kheo command share
# (sourced, not run: tests/run.sh runs only tests/integration/*.sh).
#
#   ROOT=$(pwd); . "$ROOT/tests/integration/lib/cli.sh"   (the repo root)
#   cli_setup NAME   a scratch folder $T (on tmpfs when there is one),
#                    made the current directory and removed on exit
#                    (KHEO_KEEP=1 keeps it), when every process in $PIDS
#                    is killed too; a TAP failure and exit when $KHEO is
#                    not built
#   cli_need TOOL... a TAP failure and exit unless every TOOL is on the
#                    PATH (make deps installs them)
#   run ARGS...      kheo with stdout in $T/out, stderr in $T/err, status
#                    in $rc
#   k ARGS...        kheo, its output as it comes
#   err1, out1       the start of $T/err and $T/out on one line, for a
#                    failing test's diagnostics
#   json EXPR        EXPR evaluated with d = the JSON document on stdin
#   idj DIR FIELD    a field of `kheo -C DIR id --json` ("None" for null)
#   enrol DIR ISSUER ROLE UNIT
#                    DIR enrolled by ISSUER through files (the offline
#                    round trip) under the root $ROOTFP; errors in $T/err
#
# KHEO is $BUILD/kheo (BUILD relative to the root, or absolute); every
# command is bounded to CLI_TIMEOUT seconds (60 unless the script set it
# first) where timeout(1) exists.  TAP helpers come
# from tap.sh.

. "$ROOT/tests/integration/lib/tap.sh"

BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KHEO=$BUILD/kheo
if command -v timeout >/dev/null 2>&1; then TO="timeout ${CLI_TIMEOUT:-60}"
else TO=; fi

PIDS=""		# processes that must not outlive the script
cli_cleanup() {
	for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
	if [ -n "${KHEO_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}

cli_setup() {
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		cli_scratch=/dev/shm
	else
		cli_scratch=${TMPDIR:-/tmp}
	fi
	T=$(mktemp -d "$cli_scratch/kheo-$1.XXXXXX") || exit 1
	trap cli_cleanup EXIT
	trap 'exit 130' INT TERM HUP
	cd "$T" || exit 1
	if [ ! -x "$KHEO" ]; then
		echo "1..1"
		echo "not ok 1 - $KHEO is not built (make $BUILD/kheo)"
		exit 1
	fi
}

cli_need() {
	for cli_tool in "$@"; do
		if ! command -v "$cli_tool" >/dev/null 2>&1; then
			echo "1..1"
			echo "not ok 1 - $cli_tool is missing (make deps installs it)"
			exit 1
		fi
	done
}

run() {
	$TO "$KHEO" "$@" >"$T/out" 2>"$T/err"
	rc=$?
}
k() { $TO "$KHEO" "$@"; }
err1() { head -c 400 "$T/err" | tr '\n' ' '; }
out1() { head -c 400 "$T/out" | tr '\n' ' '; }
json() {
	python3 -c 'import json, sys
d = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$1"
}
idj() { k -C "$1" id --json | json "d.get(\"$2\")"; }
enrol() {
	k -C "$1" enroll request >"$1.req" 2>"$T/err" &&
		k -C "$2" enroll sign "$1.req" --role "$3" --unit "$4" \
			>"$1.cert" 2>"$T/err" &&
		k -C "$1" enroll accept "$1.cert" --root "$ROOTFP" \
			>/dev/null 2>"$T/err"
}
