# kheo - the one build entry point.
#
#   make            libkheo.a and libkheo.so (hidden visibility)
#   make test       build and run the whole suite; ends with "N passed, N failed"
#   make asan       the suite under address + undefined sanitizers
#   make cross-test proto/ and client-core/ unit tests on aarch64 and armhf (qemu)
#   make soak       the convergence property over 100,000 scenarios
#   make fuzz       libFuzzer targets with clang, each run FUZZ_SECONDS
#   make bench      throughput and size figures (not part of make test)
#   make demo       the demonstration
#   make deps       install missing libraries (as root, with apt-get)
#
# Every target runs `make deps` first.  Variants build in their own folder:
# BUILD=build/asan, build/aarch64, ...; CC, PKG_CONFIG, RUNNER and SAN are
# what a variant changes.

BUILD      ?= build
CC         ?= cc
AR         ?= ar
PKG_CONFIG ?= pkg-config
RUNNER     ?=
SAN        ?=
CFLAGS     ?= -O2 -g
FUZZ_SECONDS ?= 300

WARN = -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
       -Wstrict-prototypes -Wvla
BASE_CPPFLAGS = -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64 \
	-Iclient-core/include -Iproto
# The audit mirror (client-core/src/audit.c) writes git repositories with
# libgit2.  AUDIT=0 leaves it out, as a phone build does (phones do not
# audit): the kheo_audit_* calls then fail with KHEO_EUNSUPPORTED.
AUDIT ?= 1
ifeq ($(AUDIT),1)
AUDIT_PKGS = libgit2
else
AUDIT_PKGS =
BASE_CPPFLAGS += -DKHEO_NO_AUDIT
endif
LIB_PKGS  = libsodium libzstd libutf8proc sqlite3 jansson $(AUDIT_PKGS)
TEST_PKGS = cmocka
CLI_PKGS  = libqrencode xlsxwriter
DAEMON_PKGS = libuv inih

# Looked up once, and only when first used: `make deps` may have just
# installed what pkg-config is asked about.
lazy = $(eval $(1) := $$(shell $(PKG_CONFIG) $(2)))$($(1))
PKG_CFLAGS  = $(call lazy,PKG_CFLAGS,--cflags $(LIB_PKGS))
PKG_LIBS    = $(call lazy,PKG_LIBS,--libs $(LIB_PKGS))
TEST_CFLAGS = $(call lazy,TEST_CFLAGS,--cflags $(TEST_PKGS))
TEST_LIBS   = $(call lazy,TEST_LIBS,--libs $(TEST_PKGS))
CLI_LIBS    = $(call lazy,CLI_LIBS,--libs $(CLI_PKGS))
DAEMON_CFLAGS = $(call lazy,DAEMON_CFLAGS,--cflags $(DAEMON_PKGS))
DAEMON_LIBS   = $(call lazy,DAEMON_LIBS,--libs $(DAEMON_PKGS))

ALL_CFLAGS = $(WARN) $(CFLAGS) $(SAN) $(BASE_CPPFLAGS) $(PKG_CFLAGS)

PROTO_SRC = $(wildcard proto/*.c)
CORE_SRC  = $(wildcard client-core/src/*.c)
LIB_SRC   = $(PROTO_SRC) $(CORE_SRC)
# The default schema, compiled in from its JSON file (mk/embed.py).
GEN_SRC   = $(BUILD)/gen/schema_default.c $(BUILD)/gen/schema_system.c
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(GEN_SRC:%.c=$(BUILD)/obj/%.o)
# The library the tests link: the same sources with the allocation fault
# hook compiled in (see proto/alloc.h).
TLIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/tobj/%.o) $(GEN_SRC:%.c=$(BUILD)/tobj/%.o)

UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNIT_BIN   = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_OBJ = $(BUILD)/tobj/tests/unit/helpers.o $(BUILD)/tobj/tests/unit/nodes.o
FUZZ_SRC   = $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BIN = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/replay_%)

.SECONDARY:
.PHONY: all deps test unit-test asan soak cross-test fuzz bench demo clean
.DEFAULT_GOAL := all

all: $(BUILD)/libkheo.a $(BUILD)/libkheo.so $(BUILD)/kheo $(BUILD)/kheod

deps:
	@sh mk/deps.sh

$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

$(BUILD)/tobj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -DKHEO_FAULT_INJECTION \
		-Itests/unit -Iclient-core/src -MMD -MP -c $< -o $@

$(BUILD)/gen/schema_default.c: client-core/schema/dvk-v1.json mk/embed.py
	@mkdir -p $(dir $@)
	python3 mk/embed.py kheo_schema_default_json $< $@

$(BUILD)/gen/schema_system.c: client-core/schema/sys-v1.json mk/embed.py
	@mkdir -p $(dir $@)
	python3 mk/embed.py kheo_schema_system_json $< $@

$(BUILD)/libkheo.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libkheo.so: $(LIB_OBJ)
	$(CC) -shared $(SAN) -o $@ $^ $(PKG_LIBS)

CLI_SRC = $(wildcard client-core/cli/*.c)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
$(BUILD)/kheo: $(CLI_OBJ) $(BUILD)/libkheo.a
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS) $(CLI_LIBS) -lm

# kheod: libkheo's public API, libuv and inih (daemon/README.md).
DAEMON_SRC = $(wildcard daemon/*.c)
DAEMON_OBJ = $(DAEMON_SRC:%.c=$(BUILD)/obj/%.o)
$(BUILD)/obj/daemon/%.o: daemon/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DAEMON_CFLAGS) -MMD -MP -c $< -o $@
$(BUILD)/kheod: $(DAEMON_OBJ) $(BUILD)/libkheo.a
	$(CC) $(SAN) -o $@ $^ $(DAEMON_LIBS) $(PKG_LIBS) -lm

$(BUILD)/libkheo-test.a: $(TLIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tests/test_%: $(BUILD)/tobj/tests/unit/test_%.o $(HELPER_OBJ) \
		$(BUILD)/libkheo-test.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(TEST_LIBS) $(PKG_LIBS) -lm

$(BUILD)/tests/replay_%: $(BUILD)/tobj/tests/fuzz/%.o \
		$(BUILD)/tobj/tests/fuzz/replay.o $(BUILD)/libkheo-test.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS) -lm

# Unit tests and corpus replays only: what cross-test runs under qemu.
unit-test: $(UNIT_BIN) $(REPLAY_BIN) | deps
	@BUILD=$(BUILD) RUNNER="$(RUNNER)" sh tests/run.sh unit

test: all $(UNIT_BIN) $(REPLAY_BIN) $(DEMO_BIN) $(BUILD)/bench/bench_sessions \
		| deps
	@BUILD=$(BUILD) RUNNER="$(RUNNER)" sh tests/run.sh all

asan: | deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
		test

# The convergence property at length: 100,000 seeded scenarios.
soak: $(BUILD)/tests/test_convergence | deps
	KHEO_SCENARIOS=$${KHEO_SCENARIOS:-100000} CMOCKA_MESSAGE_OUTPUT=TAP \
		$(BUILD)/tests/test_convergence

cross-test: | deps
	sh mk/cross.sh

# libFuzzer needs clang; each target runs FUZZ_SECONDS on a copy of its
# corpus, and new inputs it finds are kept in build/fuzz/corpus-*.
FUZZ_CC = clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined $(BASE_CPPFLAGS) \
	-Iclient-core/src
fuzz: $(GEN_SRC) | deps
	@sh mk/deps.sh clang libclang-rt-14-dev
	@mkdir -p build/fuzz
	@for src in $(FUZZ_SRC); do \
		name=$$(basename $$src .c); \
		echo "fuzz: building $$name"; \
		$(FUZZ_CC) $(FUZZ_FLAGS) -DKHEO_FAULT_INJECTION $$($(PKG_CONFIG) --cflags $(LIB_PKGS)) \
			-o build/fuzz/$$name $$src $(LIB_SRC) $(GEN_SRC) \
			$$($(PKG_CONFIG) --libs $(LIB_PKGS)) -lm || exit 1; \
	done
	@for src in $(FUZZ_SRC); do \
		name=$$(basename $$src .c); corpus=build/fuzz/corpus-$$name; \
		mkdir -p $$corpus; cp tests/fuzz/corpus/$$name/* $$corpus/ 2>/dev/null; \
		echo "fuzz: running $$name for $(FUZZ_SECONDS) s"; \
		build/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-print_final_stats=1 $$corpus 2>build/fuzz/$$name.log || \
			{ tail -40 build/fuzz/$$name.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|stat::peak_rss" build/fuzz/$$name.log; \
	done

BENCH_BIN = $(BUILD)/bench/bench_proto $(BUILD)/bench/bench_core \
	$(BUILD)/bench/bench_sync $(BUILD)/bench/bench_sessions \
	$(BUILD)/bench/bench_daemon $(BUILD)/bench/bench_audit \
	$(BUILD)/bench/bench_blob
$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libkheo.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $$($(PKG_CONFIG) --cflags jansson) -o $@ \
		$(filter-out %.h,$^) $$($(PKG_CONFIG) --libs jansson) \
		$(PKG_LIBS) -lm
# every bench that replays a trace shares tests/bench/trace.h
$(BENCH_BIN): tests/bench/trace.h
# the daemon benches drive kheod processes (tests/bench/daemons.h)
$(BUILD)/bench/bench_sessions $(BUILD)/bench/bench_daemon: \
	tests/bench/daemons.h

bench: | deps
	@sh mk/deps.sh libjansson-dev
	$(MAKE) $(BENCH_BIN) $(BUILD)/kheod
	sh tests/bench/run.sh $(BUILD)

DEMO_BIN = $(BUILD)/demo_proto
$(DEMO_BIN): tests/demo_proto.c $(BUILD)/libkheo.a | deps
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS) -lm

demo: $(DEMO_BIN) $(BUILD)/kheo $(BUILD)/kheod | deps
	@sh tests/demo.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
