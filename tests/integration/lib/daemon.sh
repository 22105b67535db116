# daemon.sh - what the integration scripts that run kheod share, on top
# of cli.sh (sourced, not run).
#
#   ROOT=$(pwd); . "$ROOT/tests/integration/lib/daemon.sh"
#   daemon_setup NAME   cli_setup NAME, and a TAP failure and exit when
#                       $KHEOD is not built
#   freeport            a TCP port nobody listens on (a small race,
#                       harmless on loopback)
#   waitfor FILE PATTERN [TENTHS]
#                       until grep finds PATTERN in FILE (default 5 s)
#   daemon LOG ARGS...  kheod ARGS in the foreground, its log in LOG, its
#                       pid in $pid and added to $PIDS; fails when it
#                       has not said it serves within 5 s, or has died
#   proxy_build         builds tests/integration/cutproxy.c (a proxy that
#                       counts, cuts and alters bytes) into ./cutproxy
#   proxy OUT ARGS...   cutproxy ARGS in the background (ARGS name the
#                       port file `pport`), its report in OUT, its pid in
#                       $PX, its port in $PXPORT
#   pxwait              waits for the proxy; its counts in $cs (client to
#                       server), $sc (server to client) and $cut

. "$ROOT/tests/integration/lib/cli.sh"

KHEOD=$BUILD/kheod
PX=""

daemon_setup() {
	cli_setup "$1"
	if [ ! -x "$KHEOD" ]; then
		echo "1..1"
		echo "not ok 1 - $KHEOD is not built (make $KHEOD)"
		exit 1
	fi
}

freeport() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

waitfor() {
	i=0
	while ! grep -q -- "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt "${3:-50}" ] && return 1
		sleep 0.1
	done
	return 0
}

daemon() {
	dlog=$1
	shift
	"$KHEOD" "$@" --foreground >"$dlog" 2>&1 &
	pid=$!
	PIDS="$PIDS $pid"
	i=0
	while ! grep -q "started (kheo" "$dlog" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 500 ] && return 1
		kill -0 $pid 2>/dev/null || return 1
		sleep 0.01
	done
}

proxy_build() {
	cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -O2 -o cutproxy \
		"$ROOT/tests/integration/cutproxy.c" 2>"$T/err"
}

proxy() {
	pout=$1
	shift
	rm -f pport
	./cutproxy "$@" >"$pout" 2>"$pout.err" &
	PX=$!
	PIDS="$PIDS $PX"
	i=0
	while [ ! -s pport ]; do
		i=$((i + 1))
		[ $i -gt 500 ] && return 1
		sleep 0.01
	done
	PXPORT=$(cat pport)
}

pxwait() {
	wait $PX
	PX=""
	set -- $(head -1 "$pout")
	cs=${2:-0} sc=${4:-0} cut=${6:-0}
}
