# Ailurus build. One binary (build/$(BUILD)/ailurus), one static library of everything but
# main (libailurus.a) that unit tests, fuzzers and tools link against.
#
#   make                 release build (-O2, assertions on)
#   make BUILD=debug     -O0
#   make BUILD=asan      AddressSanitizer + UndefinedBehaviorSanitizer
#   make run             install what is missing, build, start a single-node broker on :9092
#   make test            every test (see scripts/test.sh); under 30 minutes on 2 cores
#   make fuzz            longer fuzzing runs (FUZZ_SECONDS per target, default 300)
#   make codegen         regenerate src/kafka/gen from ../shared/kafka-protocol/messages
#   make bench           benchmarks that print figures
#
# Sources are found by wildcard: add a .c under src/ and it is built; add tests/unit/test_X.c
# and it becomes a test program.

BUILD    ?= release
CC       ?= cc
O        := build/$(BUILD)
WERROR   ?= -Werror

CSTD     := -std=gnu17
WARN     := -Wall -Wextra $(WERROR) -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers \
            -Wstrict-prototypes -Wmissing-prototypes -Wvla
INC      := -Isrc -Isrc/kafka/gen
DEFS     := -D_GNU_SOURCE
ARCH     := -msse4.2 -mpclmul

ifeq ($(BUILD),release)
  OPT := -O2 -g
else ifeq ($(BUILD),debug)
  OPT := -O0 -g -DAL_DEBUG=1
else ifeq ($(BUILD),asan)
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
         -fno-sanitize-recover=undefined -DAL_DEBUG=1
  LDSAN := -fsanitize=address,undefined
else
  $(error BUILD must be release, debug or asan)
endif

CFLAGS   ?=
CFLAGS   += $(CSTD) $(WARN) $(INC) $(DEFS) $(ARCH) $(OPT) -MMD -MP
LDLIBS   := -luring -lz -lzstd -llz4 -lsnappy -lyaml -ljansson -lhttp_parser -lssl -lcrypto \
            -lpthread -lm
LDFLAGS  += $(LDSAN)

ALL_SRC  := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(ALL_SRC))
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/%.o)
MAIN_OBJ := $(O)/src/main.o

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TEST_SUPPORT_SRC := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(O)/%.o)

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.SECONDARY:

.PHONY: all lib tests fuzzers run test fuzz codegen codegen-check bench clean install format
all: $(O)/ailurus

lib: $(O)/libailurus.a

$(O)/libailurus.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(O)/ailurus: $(MAIN_OBJ) $(O)/libailurus.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

tests: $(UNIT_BIN)

$(O)/tests/%: $(O)/tests/unit/%.o $(TEST_SUPPORT_OBJ) $(O)/libailurus.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets: clang, ASan+UBSan. The library is compiled once with coverage
# instrumentation (fuzzer-no-link) into build/fuzz/libailurus-fuzz.a; each target links it.
FUZZ_SAN    := -fsanitize=address,undefined
FUZZ_CFLAGS := -std=gnu17 -g -O1 $(INC) $(DEFS) $(ARCH) -DAL_FUZZING=1 -MMD -MP
FUZZ_OBJ    := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
fuzzers: $(FUZZ_BIN)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/libailurus-fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/%: tests/fuzz/%.c build/fuzz/libailurus-fuzz.a
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< build/fuzz/libailurus-fuzz.a $(LDLIBS)

run:
	scripts/install-deps.sh
	$(MAKE) BUILD=release
	$(O)/ailurus start --dev

test:
	scripts/test.sh

FUZZ_SECONDS ?= 300
fuzz: fuzzers
	scripts/fuzz.sh $(FUZZ_SECONDS)

SHARED ?= ../shared
codegen:
	/usr/bin/python3 tools/kafka_codegen.py $(SHARED)/kafka-protocol/messages src/kafka/gen

codegen-check:
	scripts/codegen-check.sh $(SHARED)

bench:
	scripts/bench.sh

PREFIX ?= /usr/local
install: $(O)/ailurus
	install -D -m 0755 $(O)/ailurus $(DESTDIR)$(PREFIX)/bin/ailurus

format:
	clang-format -i $$(find src tests tools -name '*.[ch]' -not -path 'src/kafka/gen/*')

clean:
	rm -rf build

-include $(shell find $(O) build/fuzz/obj -name '*.d' 2>/dev/null)
