#!/bin/sh
# deps.sh - make sure every library kheo builds against is installed.
#
# Each line of the table below is "pkg-config name : Debian package".  A
# library pkg-config cannot find is installed with apt-get when we run as
# root on Debian; otherwise we print the exact command and fail, so a fresh
# machine needs nothing by hand and a developer's machine is never changed
# behind their back.  Tools (clang for fuzzing, cross compilers) are listed
# in TOOLS as "command : package".
set -eu

LIBS="
libsodium:libsodium-dev
libzstd:libzstd-dev
libutf8proc:libutf8proc-dev
sqlite3:libsqlite3-dev
cmocka:libcmocka-dev
jansson:libjansson-dev
libqrencode:libqrencode-dev
xlsxwriter:libxlsxwriter-dev
libuv:libuv1-dev
inih:libinih-dev
libgit2:libgit2-dev
"
TOOLS="
pkg-config:pkg-config
cc:gcc
python3:python3
pgrep:procps
git:git
ssh-keygen:openssh-client
"

missing=""
command -v pkg-config >/dev/null 2>&1 || missing="pkg-config"
for entry in $LIBS; do
	pc=${entry%%:*}
	deb=${entry#*:}
	if ! command -v pkg-config >/dev/null 2>&1 ||
	   ! pkg-config --exists "$pc"; then
		missing="$missing $deb"
	fi
done
for entry in $TOOLS; do
	cmd=${entry%%:*}
	deb=${entry#*:}
	command -v "$cmd" >/dev/null 2>&1 || missing="$missing $deb"
done
# extra packages asked for by the caller (fuzzing, cross builds)
for deb in "$@"; do
	dpkg-query -W -f='${Status}' "$deb" 2>/dev/null |
		grep -q "install ok installed" || missing="$missing $deb"
done

missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
[ -z "${missing# }" ] && exit 0

line="apt-get install -y --no-install-recommends $missing"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing $missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || echo "deps: apt-get update had errors; trying anyway" >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2
	exit 0
fi
echo "deps: missing $missing" >&2
echo "deps: run as root:  $line" >&2
exit 1
