#!/bin/sh
# cross.sh - build the unit tests and corpus replays for aarch64 and 32-bit
# armhf with Debian's cross compilers and run them under qemu-user.
#
#   sh mk/cross.sh [aarch64|armhf ...]      (what `make cross-test` runs)
#
# It is the Makefile's own `unit-test` target, run once per architecture
# with BUILD=build/<arch>, the cross CC and AR, a pkg-config that looks only
# at that architecture's libraries, and RUNNER=qemu.  Each run ends with
# the runner's "kheo: N passed, N failed"; both architectures run even if
# the first fails, so a failure on one alone (endianness, alignment, 32-bit
# size_t) shows as such, and the recap at the end names the architecture.
# Exit status is non-zero if anything failed to build or pass.
#
# Why a sysroot of unpacked .debs and not a multiarch install: apt-get
# install libsodium-dev:arm64 wants libc6-dev:arm64, whose index lags the
# amd64 one, and apt gives up ("held broken packages").  The cross
# toolchain (libc6-<arch>-cross) already brings libc, so all we need are
# the libraries themselves: we `apt-get download` the target-arch -dev
# packages named in mk/deps.sh's LIBS table, plus the runtime packages they
# depend on, and `dpkg -x` them into build/sysroot-<arch>.  Nothing is
# installed for the foreign architecture and no dependency has to resolve.
# The sysroot is kept and rebuilt only when the LIBS table changes.
#
# What it installs when missing (as root, with apt-get; otherwise it prints
# the command and fails): the foreign dpkg architecture, the cross gcc
# packages and qemu-user.
set -eu

jobs=$(nproc 2>/dev/null || echo 2)
arches=${*:-aarch64 armhf}
top=$(pwd)

# arch name: Debian architecture, GNU triplet, qemu-user binary
arch_info() {
	case $1 in
	aarch64) echo "arm64 aarch64-linux-gnu qemu-aarch64" ;;
	armhf)   echo "armhf arm-linux-gnueabihf qemu-arm" ;;
	*)       echo "cross: unknown architecture '$1' (aarch64, armhf)" >&2
	         return 1 ;;
	esac
}

# The -dev packages the host build uses: the right-hand side of each
# "pkg-config name:Debian package" line of the LIBS table in mk/deps.sh.
dev_packages() {
	sed -n '/^LIBS="/,/^"/s/^[A-Za-z0-9_.+-]*:\([a-z0-9.+-]*\)$/\1/p' \
		mk/deps.sh
}

# The packages to unpack for Debian architecture $debarch: the -dev
# packages and, transitively, what they depend on, less what the cross
# toolchain already provides (libc, libgcc, kernel headers) and virtual
# packages.  One apt-cache call per level of dependencies: each call costs
# a second or more here, as apt rebuilds its cache every time.
closure() {
	level=$(dev_packages)
	seen=" "
	while [ -n "$level" ]; do
		next=""
		for pkg in $level; do
			case $seen in *" $pkg "*) continue ;; esac
			seen="$seen$pkg "
			next="$next $pkg:$debarch"
		done
		[ -n "$next" ] || break
		# shellcheck disable=SC2086
		level=$(apt-cache depends --no-recommends --no-suggests \
			--no-conflicts --no-breaks --no-replaces --no-enhances \
			$next |
			sed -n 's/^ *|\{0,1\}Depends: \([^<][^:]*\).*/\1/p' |
			grep -vxE 'libc6|libc6-dev|libgcc-s1|libcrypt1|libcrypt-dev|linux-libc-dev|libstdc\+\+6' |
			sort -u)
	done
	# shellcheck disable=SC2086
	echo $seen
}

# Absolute symlinks in a .deb would point into the host's /usr; make them
# relative so they stay inside the sysroot.  (None of today's packages has
# one: their .so links are relative.  This is a guard for the next.)
fix_symlinks() {
	find "$1" -type l | while read -r link; do
		target=$(readlink "$link")
		case $target in /*) ;; *) continue ;; esac
		dir=${link%/*}
		rel=${dir#"$1"/}
		up=$(echo "$rel" | sed 's|[^/][^/]*|..|g')
		ln -sfn "$up$target" "$link"
	done
}

# A .pc file in usr/lib/<triplet>/pkgconfig describes libraries in
# usr/lib/<triplet>, but Debian's libzstd.pc says libdir=${exec_prefix}/lib:
# harmless on the host, where the linker searches the multiarch folder
# anyway, but here it names an empty folder.  Point such a libdir home.
fix_pc_files() {
	for pc in "$1/usr/lib/$triplet/pkgconfig"/*.pc; do
		[ -f "$pc" ] || continue
		sed -i "s|^libdir=\(.*\)/lib\$|libdir=\1/lib/$triplet|" "$pc"
	done
}

# pkg-config for the sysroot $1: its .pc files only, paths prefixed with
# the sysroot.  Emptying the system include and library paths makes sure
# no -I or -L is dropped as a "system" one: without the -I, the cross gcc,
# which searches the host's /usr/include too, would quietly use the host's
# headers.
write_pkg_config() {
	mkdir -p "$1/bin"
	cat >"$1/bin/pkg-config" <<EOF
#!/bin/sh
# pkg-config for this sysroot (written by mk/cross.sh).
root=\$(cd "\$(dirname "\$0")/.." && pwd)
PKG_CONFIG_SYSROOT_DIR=\$root
PKG_CONFIG_LIBDIR=\$root/usr/lib/$triplet/pkgconfig:\$root/usr/share/pkgconfig
PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent
PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent
export PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
export PKG_CONFIG_SYSTEM_INCLUDE_PATH PKG_CONFIG_SYSTEM_LIBRARY_PATH
unset PKG_CONFIG_PATH
exec pkg-config "\$@"
EOF
	chmod +x "$1/bin/pkg-config"
}

# Make sure apt knows the packages of Debian architecture $1.
apt_ready() {
	if ! dpkg --print-foreign-architectures | grep -qx "$1"; then
		if [ "$(id -u)" != 0 ]; then
			echo "cross: run as root:  dpkg --add-architecture $1 &&" \
				"apt-get update" >&2
			exit 1
		fi
		echo "cross: adding dpkg architecture $1" >&2
		dpkg --add-architecture "$1"
	fi
	first=$(dev_packages | head -n 1)
	apt-cache show "$first:$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "cross: apt has no $1 package lists; run as root:" \
			"apt-get update" >&2
		exit 1
	fi
	echo "cross: apt-get update for $1" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
		echo "cross: apt-get update had errors; trying anyway" >&2
	apt-cache show "$first:$1" >/dev/null 2>&1 || {
		echo "cross: apt still has no $first:$1" >&2
		exit 1
	}
}

# Build (or reuse) build/sysroot-<arch>.
make_sysroot() {
	root=$top/build/sysroot-$arch
	# bump the layout number when what this script puts there changes
	key="layout 1: $(dev_packages | tr '\n' ' ')"
	if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$key" ]; then
		echo "cross: $arch: reusing build/sysroot-$arch" >&2
		return 0
	fi
	apt_ready "$debarch"
	pkgs=$(closure)
	echo "cross: $arch: fetching $pkgs" >&2
	tmp=$root.new
	rm -rf "$tmp"
	mkdir -p "$tmp/debs"
	# apt drops to the _apt user to download, which cannot write here.
	sandbox=""
	[ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
	qualified=$(for p in $pkgs; do printf '%s:%s ' "$p" "$debarch"; done)
	# shellcheck disable=SC2086
	(cd "$tmp/debs" && apt-get download -q $sandbox $qualified) >&2
	for deb in "$tmp"/debs/*.deb; do
		dpkg -x "$deb" "$tmp"
	done
	fix_symlinks "$tmp"
	fix_pc_files "$tmp"
	write_pkg_config "$tmp"
	echo "$key" >"$tmp/.stamp"
	rm -rf "$root"
	mv "$tmp" "$root"
}

# The cross compilers (which bring binutils and libc6-<arch>-cross) and
# qemu-user, through deps.sh like every other build dependency.
tools="qemu-user"
for arch in $arches; do
	info=$(arch_info "$arch")
	tools="$tools gcc-$(echo "$info" | cut -d' ' -f2)"
done
# shellcheck disable=SC2086
sh mk/deps.sh $tools

recap=""
counts=""
status=0
for arch in $arches; do
	# shellcheck disable=SC2046
	set -- $(arch_info "$arch")
	debarch=$1 triplet=$2 qemu=$3
	make_sysroot
	root=$top/build/sysroot-$arch
	libs=$root/usr/lib/$triplet:$root/lib/$triplet
	log=$top/build/$arch/cross.log
	mkdir -p "$top/build/$arch"
	echo "cross: $arch: make unit-test under $qemu" >&2
	# The exit status of make travels through a file: sh has no pipefail.
	{
		rc=0
		# AUDIT=0: a phone build leaves the audit mirror out
		make -j"$jobs" BUILD="build/$arch" CC="$triplet-gcc" AUDIT=0 \
			AR="$triplet-ar" PKG_CONFIG="$root/bin/pkg-config" \
			RUNNER="$qemu -L /usr/$triplet -E LD_LIBRARY_PATH=$libs" \
			unit-test || rc=$?
		echo "$rc" >"$log.rc"
	} 2>&1 | tee "$log"
	line=$(grep -E '^kheo: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
	if [ "$(cat "$log.rc")" != 0 ]; then
		status=1
		[ -n "$line" ] || line="build failed (see build/$arch/cross.log)"
	fi
	recap="$recap$arch ($qemu): $line
"
	counts="$counts $(echo "$line" | sed -n 's/^kheo: \([0-9]*\) passed.*/\1/p')"
done

# The same sources should run the same tests everywhere.  A count that
# differs means some test or corpus ran fewer cases on one architecture
# without failing: worth a look, so say so (it does not fail the run).
# shellcheck disable=SC2086
if [ "$(echo $counts | tr ' ' '\n' | sort -u | wc -l)" -gt 1 ]; then
	echo "cross: warning: passed counts differ between architectures" \
		"(compare the per-test lines above)"
fi
echo "cross-test:"
printf '%s' "$recap"
exit $status
