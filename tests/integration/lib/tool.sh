# tool.sh - build_tool NAME [CFLAGS...]: a small C test tool,
# tests/integration/NAME.c, built against $BUILD/libkheo.a into ./NAME,
# compiler messages in $T/err (sourced, not run).  The library may be a
# sanitizer build (make asan): a tool that does not link plainly is built
# again with the sanitizers, so `build_tool NAME` works for both.

tool_pkgs="libsodium libzstd libutf8proc sqlite3 jansson"
pkg-config --exists libgit2 2>/dev/null && tool_pkgs="$tool_pkgs libgit2"

tool_cc() { # NAME [CFLAGS...]
	tool_name=$1
	shift
	# shellcheck disable=SC2046,SC2086 # pkg-config prints word lists
	cc -std=c11 -D_DEFAULT_SOURCE "$@" -I"$ROOT/client-core/include" \
		-I"$ROOT/proto" $(pkg-config --cflags $tool_pkgs) \
		-o "$tool_name" "$ROOT/tests/integration/$tool_name.c" \
		"$BUILD/libkheo.a" $(pkg-config --libs $tool_pkgs) -lm \
		2>"$T/err"
}

build_tool() { # NAME [CFLAGS...]
	tool_cc "$@" || tool_cc "$@" -fsanitize=address,undefined
}
