# Tally build. `make` builds build/tallyd and build/tally; `make test` runs the
# unit, simulation and end-to-end tests; `make test SANITIZE=1` does the same
# with ASan+UBSan in build-san/. `make deps` installs Debian packages (root).

CC ?= cc
SANITIZE ?= 0
FUZZ ?= 0
ifeq ($(FUZZ),1)
# libFuzzer builds: everything instrumented with clang, in build-fuzz/.
CC := clang
BUILD := build-fuzz
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else ifeq ($(SANITIZE),1)
BUILD := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
OPT := -O2 -g
endif

# --- dependencies -------------------------------------------------------------
# Debian's libnng-dev ships no pkg-config file: look for the header instead.
define need_pc
$(if $(shell pkg-config --exists $(1) && echo yes),,$(error missing $(1): install the Debian package $(2) (or run: make deps)))
endef
define need_header
$(if $(wildcard /usr/include/$(1) /usr/local/include/$(1)),,$(error missing $(1): install the Debian package $(2) (or run: make deps)))
endef

DEB_PACKAGES := build-essential pkg-config libsodium-dev libssl-dev libnng-dev librocksdb-dev \
                libjansson-dev libcmocka-dev clang libclang-rt-14-dev jq iproute2

ifeq ($(filter deps clean format format-check check fuzz,$(MAKECMDGOALS)),)
ifeq ($(MAKECMDGOALS)$(shell command -v pkg-config),)
$(error missing pkg-config: install the Debian package pkg-config (or run: make deps))
endif
$(call need_pc,libsodium,libsodium-dev)
$(call need_pc,libcrypto,libssl-dev)
$(call need_pc,rocksdb,librocksdb-dev)
$(call need_pc,jansson,libjansson-dev)
$(call need_header,nng/nng.h,libnng-dev)
DEP_CFLAGS := $(shell pkg-config --cflags libsodium libcrypto rocksdb jansson)
DEP_LIBS := $(shell pkg-config --libs libsodium libcrypto rocksdb jansson) -lnng -lpthread -lm
TEST_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers
CFLAGS := -std=gnu11 $(OPT) $(WARN) $(SANFLAGS) -I. -D_GNU_SOURCE $(DEP_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)

# --- sources ------------------------------------------------------------------
LIB_SRCS := $(wildcard src/*.c crypto/*.c config/*.c ledger/*.c) $(wildcard tools/lib/*.c)
LIB_SRCS := $(filter-out src/tallyd_main.c,$(LIB_SRCS))
TOOL_SRCS := $(wildcard tools/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libtally.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
SIM_SUPPORT := $(filter-out tests/sim/test_%.c,$(wildcard tests/sim/*.c))
SIM_SUPPORT_OBJS := $(SIM_SUPPORT:%.c=$(BUILD)/%.o)
SIM_SRCS := $(wildcard tests/sim/test_*.c)
SIM_BINS := $(SIM_SRCS:%.c=$(BUILD)/%)
TEST_HELPER_SRCS := $(wildcard tests/helpers/*.c)
TEST_HELPER_OBJS := $(TEST_HELPER_SRCS:%.c=$(BUILD)/%.o)

.SECONDARY:
.PHONY: all test check disk-test unit sim e2e demo fuzz fuzz-build fuzz-corpus clean deps format format-check
all: $(BUILD)/tallyd $(BUILD)/tally

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tallyd: $(BUILD)/src/tallyd_main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

# A replica with fault injection (TALLY_FAULT=silent|equivocate), for the
# end-to-end tests only: the same sources, the replica shell compiled with
# -DTALLY_FAULTS. Never installed, never the default.
$(BUILD)/src/replica_faulty.o: src/replica.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DTALLY_FAULTS -MMD -MP -c $< -o $@

$(BUILD)/tallyd-faulty: $(BUILD)/src/tallyd_main.o $(BUILD)/src/replica_faulty.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/tally: $(TOOL_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(TEST_HELPER_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS) $(TEST_LIBS)

$(BUILD)/tests/sim/%: $(BUILD)/tests/sim/%.o $(SIM_SUPPORT_OBJS) $(TEST_HELPER_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS) $(TEST_LIBS)

# Seeds for the simulator in `make test`; `make sim SEEDS=N` runs more.
SEEDS ?= 500
CRASH_CYCLES ?= 50
E2E_SKIP ?=
test: all $(BUILD)/tallyd-faulty $(UNIT_BINS) $(SIM_BINS)
	BUILD=$(BUILD) SEEDS=$(SEEDS) CRASH_CYCLES=$(CRASH_CYCLES) E2E_SKIP="$(E2E_SKIP)" ./tests/run.sh

# What CI runs: the whole suite, then again under ASan+UBSan with fewer seeds.
# `make disk-test` runs the disk-fault test alone (root: a replica on a small
# tmpfs, corrupted RocksDB files; about 20 s).
disk-test: all
	BUILD=$(BUILD) ONLY=e2e E2E_ONLY=test_disk_faults ./tests/run.sh

# The sanitizer pass runs fewer seeds and a shorter crash loop, and skips the
# tests of the network, the disk and floods (they exercise the system, not
# memory safety, and are long): CI stays
# well under 30 minutes on 2 cores.
check:
	$(MAKE) test
	$(MAKE) test SANITIZE=1 SEEDS=50 CRASH_CYCLES=15 E2E_SKIP="test_netns test_disk_faults test_hostile_input"
	$(MAKE) fuzz FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS)

CHECK_FUZZ_SECONDS ?= 10

# The main job: a 4-node local testnet on 127.0.0.1, a few transfers, its status.
demo: all
	./tools/demo.sh

unit: all $(UNIT_BINS)
	BUILD=$(BUILD) ONLY=unit ./tests/run.sh

sim: all $(SIM_BINS)
	BUILD=$(BUILD) SEEDS=$(SEEDS) ONLY=sim ./tests/run.sh

e2e: all $(BUILD)/tallyd-faulty
	BUILD=$(BUILD) ONLY=e2e ./tests/run.sh

# Fuzzing (libFuzzer): `make fuzz` runs every target FUZZ_SECONDS seconds from
# the seed corpus in tests/fuzz/corpus/NAME (copied, so the repo is not touched).
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/fuzz/%)
fuzz:
	$(MAKE) FUZZ=1 fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/fuzz/run.sh

fuzz-build: $(FUZZ_BINS)

# Regenerate the committed seed corpus (valid inputs of every kind).
fuzz-corpus: $(BUILD)/tests/fuzz/make_corpus
	$(BUILD)/tests/fuzz/make_corpus

$(BUILD)/tests/fuzz/make_corpus: $(BUILD)/tests/fuzz/make_corpus.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(DEP_LIBS)

build-fuzz/fuzz/%: $(BUILD)/tests/fuzz/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(DEP_LIBS)

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (installs Debian packages)"; exit 1; fi
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "all build dependencies present"; fi

FORMAT_SRCS := $(shell find src crypto config ledger tools tests -name '*.[ch]' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- bench ----------------------------------------------------------------------
# `make bench-plot`: a short open-loop sweep on a testnet of its own
# (tools/bench_sweep.sh, RATES="..." DURATION=S to change it), then receipt
# latency p50/p99 against throughput into docs/bench.png (gnuplot-nox).
# See BENCHMARKS.md.
BENCH_DAT ?= $(BUILD)/bench/sweep.dat
BENCH_PNG ?= docs/bench.png
.PHONY: bench-sweep bench-plot
bench-sweep: all
	BUILD=$(BUILD) ./tools/bench_sweep.sh $(BENCH_DAT)

bench-plot: all
	@command -v gnuplot >/dev/null 2>&1 || { echo "make bench-plot: gnuplot is missing: apt-get install gnuplot-nox"; exit 1; }
	BUILD=$(BUILD) ./tools/bench_sweep.sh $(BENCH_DAT)
	gnuplot -e "datafile='$(BENCH_DAT)'; outfile='$(BENCH_PNG)'; plottitle='$$(sed -n 's/^# title: //p' $(BENCH_DAT))'; ceiling=$$(sed -n 's/^# ceiling: //p' $(BENCH_DAT))" tools/bench_plot.gp
	@echo "wrote $(BENCH_PNG)"

# `make bench-ledger`: the ledger alone (tally bench --ledger), 1,000 and then
# 1,000,000 accounts (~2 minutes, ~400 MB in a temporary directory), JSON lines
# into $(BUILD)/bench/ledger.jsonl. See BENCHMARKS.md, "The ledger alone".
.PHONY: bench-ledger
bench-ledger: all
	@mkdir -p $(BUILD)/bench
	for n in 1000 1000000; do $(BUILD)/tally bench --ledger --accounts $$n --blocks 50 --json; done | tee $(BUILD)/bench/ledger.jsonl
