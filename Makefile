# moat — build, test, run, fuzz, bench.
#
#   make run          install missing Debian packages, build, start the demo gateway
#   make test         install, build, run unit and end-to-end tests
#   make test SAN=1   the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz         run every libFuzzer driver briefly (FUZZ_SECONDS each)
#   make bench        moatd against HAProxy and nginx, side by side
#   make lint         format check, banned-function check, cppcheck

CC ?= cc
SAN ?= 0
PKGS := openssl libuv inih jansson libpcre2-8 libhs sqlite3
PY := /usr/bin/python3

# O=DIR builds into DIR instead (separate trees for parallel builds)
ifeq ($(SAN),1)
BUILD := $(or $(O),build/san)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
BUILD := $(or $(O),build/release)
OPT := -O2
endif

WARN := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -Werror
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -Isrc $(CFLAGS) \
	$(shell pkg-config --cflags $(PKGS) libcurl 2>/dev/null)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)
LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

SRC := $(sort $(shell find src -name '*.c'))
MOATCTL_SRC := $(sort $(wildcard tools/moatctl/*.c))
LIB_SRC := $(filter-out src/moatd.c,$(SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(sort $(shell find tests/unit -name '*_test.c' 2>/dev/null))
UNIT_BIN := $(UNIT_SRC:%.c=$(BUILD)/%)
FUZZ_SRC := $(sort $(wildcard fuzz/*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 20

.PHONY: all deps run test unit e2e fuzz fuzz-build bench lint format clean
all: $(BUILD)/moatd $(BUILD)/moatctl

deps:
	@./scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libmoat.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/moatd: $(BUILD)/obj/src/moatd.o $(BUILD)/libmoat.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# moatctl speaks only HTTP to the admin API: libcurl and jansson, nothing of libmoat
$(BUILD)/moatctl: $(MOATCTL_SRC:%.c=$(BUILD)/obj/%.o)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(shell pkg-config --libs libcurl jansson)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libmoat.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(filter %.o,$^) $(BUILD)/libmoat.a $(LIBS) -lcmocka

# the admin API's tests that run on a store share tests/unit/admin/fixture.c
$(addprefix $(BUILD)/tests/unit/admin/,core_test devices_test rules_test): \
	$(BUILD)/obj/tests/unit/admin/fixture.o

run: deps
	@$(MAKE) --no-print-directory all
	@./scripts/run.sh $(BUILD)/moatd

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

e2e: $(BUILD)/moatd $(BUILD)/moatctl
	MOATD=$(abspath $(BUILD)/moatd) MOATCTL=$(abspath $(BUILD)/moatctl) $(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

test: deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory e2e

# The library is compiled once for every driver (instrumented, without libFuzzer's main).
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fno-sanitize-recover=all -Isrc \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@

build/fuzz/libmoat.a: $(LIB_SRC:%.c=build/fuzz/obj/%.o)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: fuzz/%.c build/fuzz/libmoat.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< build/fuzz/libmoat.a \
		$(LIBS)

fuzz-build: deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		echo "== fuzz $$n ($(FUZZ_SECONDS)s)"; mkdir -p build/fuzz/corpus/$$n; \
		dict=""; [ -f fuzz/$$n.dict ] && dict="-dict=fuzz/$$n.dict"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 $$dict \
			-print_final_stats=1 build/fuzz/corpus/$$n fuzz/corpus/$$n 2>&1 | tail -n 12; \
	done

bench: deps all
	@./bench/run.sh $(BUILD)/moatd

lint:
	@./scripts/lint.sh

format:
	@clang-format -i $$(find src tools tests/unit fuzz bench -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find $(BUILD) build/fuzz/obj -name '*.d' 2>/dev/null)
