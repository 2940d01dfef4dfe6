# embedserve -- plain Makefile (see ../shared/STYLE.md §2.9).
#
#   make                      build/embedserve
#   make test                 unit + numeric + HTTP tests on a generated model
#   make SANITIZE=address,undefined test    the same under ASan+UBSan (own build dir)
#   make CI=true test         warnings are errors
#   make deps                 install the Debian packages (needs root)
#   make format-check / check-headers

CC       ?= cc
CXX      ?= c++
PYTHON   ?= /usr/bin/python3
STD       = -std=c11 -D_GNU_SOURCE
WARN      = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
            -Wno-missing-field-initializers -Werror=deprecated-declarations -Werror=return-type
OPT      ?= -O2 -g -fno-omit-frame-pointer
PKGS      = libmicrohttpd libcjson openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

CPPFLAGS += -I. $(PKG_CFLAGS) -MMD -MP
CFLAGS   += $(STD) $(WARN) $(OPT) -pthread
CXXFLAGS += -std=c++17 -Wall -Wextra $(OPT) -pthread
LDFLAGS  += -pthread
LDLIBS   += $(PKG_LIBS) -lsentencepiece -lstdc++ -lm

ifeq ($(CI),true)
  CFLAGS   += -Werror
  CXXFLAGS += -Werror
endif

comma := ,
BUILD ?= build
ifdef SANITIZE
  BUILD     := build/san-$(subst $(comma),-,$(SANITIZE))
  CFLAGS    += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
  CXXFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
  LDFLAGS   += -fsanitize=$(SANITIZE)
endif

# The Debian packages: kept in docker/apt-*.txt, the one list that
# scripts/install-deps (so .ci/run) and docker/Dockerfile all read.
DEB_BUILD := $(shell cat docker/apt-build.txt)
DEB_TEST  := $(shell cat docker/apt-test.txt)

ENGINE_SRCS = $(wildcard engine/*.c)
CONFIG_SRCS = $(wildcard config/*.c)
TOK_SRCS    = tokenizer/tokenizer_spm.cc
SERVER_SRCS = $(filter-out server/main.c,$(wildcard server/*.c))
TEST_SRCS   = $(wildcard tests/*.c)

obj = $(patsubst %.cc,$(BUILD)/%.o,$(patsubst %.c,$(BUILD)/%.o,$(1)))
LIB_OBJS  = $(call obj,$(ENGINE_SRCS) $(CONFIG_SRCS) $(TOK_SRCS) $(SERVER_SRCS))
MAIN_OBJ  = $(call obj,server/main.c)
TEST_OBJS = $(call obj,$(TEST_SRCS))

.PHONY: all test clean deps format format-check check-headers testmodel bench
all: $(BUILD)/embedserve

$(BUILD)/embedserve: $(MAIN_OBJ) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_all: $(TEST_OBJS) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcurl

$(BUILD)/bench: $(call obj,tests/bench/bench.c) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench_gemm: $(call obj,tests/bench/bench_gemm.c) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The engine's kernels rely on auto-vectorisation (see engine/ops.c).
$(BUILD)/engine/%.o: CFLAGS += -O3

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

# Generated test model (small random weights in the real layout) and the
# float64 NumPy reference's expected outputs. Shared by every build flavour.
TESTMODEL = build/testmodel
$(TESTMODEL)/model.safetensors: tests/gen_model.py tests/data/corpus.txt
	@mkdir -p $(TESTMODEL)
	$(PYTHON) tests/gen_model.py --out $(TESTMODEL)
$(TESTMODEL)/expected.json: $(TESTMODEL)/model.safetensors tests/reference.py tests/data/engine_cases.json
	$(PYTHON) tests/reference.py --model $(TESTMODEL) --cases tests/data/engine_cases.json --out $@
testmodel: $(TESTMODEL)/expected.json

test: $(BUILD)/embedserve $(BUILD)/test_all $(TESTMODEL)/expected.json
	BUILD=$(BUILD) TESTMODEL=$(TESTMODEL) PYTHON=$(PYTHON) sh tests/run.sh

# make bench [BENCH_MODEL=DIR]: a full-size random-weight checkpoint in the
# real layout is generated once into the cache (or BENCH_MODEL is used).
BENCH_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/embedserve/full-random
BENCH_MODEL ?= $(BENCH_CACHE)
bench: $(BUILD)/bench $(BUILD)/embedserve
	@if [ "$(BENCH_MODEL)" = "$(BENCH_CACHE)" ] && [ ! -f $(BENCH_CACHE)/model.safetensors ]; then \
	    mkdir -p $(BENCH_CACHE) && $(PYTHON) tests/gen_model.py --full --out $(BENCH_CACHE); fi
	BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/bench/run.sh $(BENCH_MODEL)

deps:
	scripts/install-deps --test

print-deb-%:
	@echo $(DEB_$*)

FMT_SRCS = $(ENGINE_SRCS) $(CONFIG_SRCS) $(TOK_SRCS) $(wildcard server/*.c) $(TEST_SRCS) \
           $(wildcard */*.h)
format:
	clang-format -i $(FMT_SRCS)
format-check:
	clang-format --dry-run --Werror $(FMT_SRCS)

check-headers:
	@for h in engine/engine.h tokenizer/tokenizer.h config/config.h; do \
	    echo "#include \"$$h\"" | $(CC) $(CPPFLAGS) $(STD) -fsyntax-only -x c - || exit 1; done; \
	echo headers ok

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/tests/bench/bench.d
