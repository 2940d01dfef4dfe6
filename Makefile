# embedserve -- plain Makefile: no generator, GNU make only.
#
#   make                      build/embedserve
#   make test                 unit + numeric + HTTP tests on a generated model
#   make SANITIZE=address,undefined test    the same under ASan+UBSan (own build dir)
#   make test-tsan            the concurrency suites under ThreadSanitizer
#   make fuzz                 libFuzzer targets, FUZZ_SECONDS each (clang)
#   make soak                 SOAK_SECONDS of saturating load (tests/soak.sh)
#   make docker-test          build docker/Dockerfile with podman and run the image (root)
#   make docker-test-multiarch   the same for amd64 and arm64 (qemu), and a manifest list
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
ifdef FUZZ
  # libFuzzer build of everything (make fuzz): clang, ASan + UBSan, coverage
  # instrumentation; the fuzz targets are linked with libFuzzer's main.
  BUILD     := build/fuzz
  CC        := clang
  CXX       := clang++
  OPT       := -O1 -g -fno-omit-frame-pointer
  FUZZ_SAN   = -fsanitize=address,undefined -fno-sanitize-recover=all
  CFLAGS    += -fsanitize=fuzzer-no-link $(FUZZ_SAN) -DEMB_FUZZ_BUILD
  CXXFLAGS  += -fsanitize=fuzzer-no-link $(FUZZ_SAN)
  LDFLAGS   += $(FUZZ_SAN)
else ifdef SANITIZE
  BUILD     := build/san-$(subst $(comma),-,$(SANITIZE))
  CFLAGS    += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
  CXXFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
  LDFLAGS   += -fsanitize=$(SANITIZE)
endif

# The Debian packages: kept in docker/apt-*.txt, the one list that
# scripts/install-deps (so .ci/run) and docker/Dockerfile all read.
DEB_BUILD := $(shell cat docker/apt-build.txt)
DEB_TEST  := $(shell cat docker/apt-test.txt)

# The kernels for the target's instruction set (engine/arch/<isa>/), plus
# the portable ones every build has.
TARGET_ARCH_NAME := $(shell $(CC) -dumpmachine | cut -d- -f1)
ENGINE_ARCH = $(if $(filter x86_64,$(TARGET_ARCH_NAME)),x86,$(if $(filter aarch64,$(TARGET_ARCH_NAME)),arm,))
ENGINE_SRCS = $(wildcard engine/*.c) $(wildcard engine/arch/generic/*.c) \
              $(if $(ENGINE_ARCH),$(wildcard engine/arch/$(ENGINE_ARCH)/*.c))
CONFIG_SRCS = $(wildcard config/*.c)
TOK_SRCS    = tokenizer/tokenizer.c tokenizer/tok_chunk.c tokenizer/tokenizer_hf.c tokenizer/tokenizer_spm.cc
UTIL_SRCS   = $(wildcard util/*.c)
PIPE_SRCS   = $(wildcard pipeline/*.c)
CLI_SRCS    = $(wildcard cli/*.c)
SERVER_SRCS = $(filter-out server/main.c,$(wildcard server/*.c))
TEST_SRCS   = $(filter-out tests/loadgen.c,$(wildcard tests/*.c))
FUZZ_TARGETS = api tokenize model

obj = $(patsubst %.cc,$(BUILD)/%.o,$(patsubst %.c,$(BUILD)/%.o,$(1)))
LIB_OBJS  = $(call obj,$(ENGINE_SRCS) $(CONFIG_SRCS) $(TOK_SRCS) $(UTIL_SRCS) $(PIPE_SRCS) \
                      $(CLI_SRCS) $(SERVER_SRCS)) $(BUILD)/gen/web_assets.o
MAIN_OBJ  = $(call obj,server/main.c)
TEST_OBJS = $(call obj,$(TEST_SRCS))

.PHONY: all test clean deps cross-aarch64 cross-aarch64-server test-aarch64 format format-check check-headers testmodel bench fuzz \
        soak test-tsan docker-test docker-test-multiarch
all: $(BUILD)/embedserve

$(BUILD)/embedserve: $(MAIN_OBJ) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test_all: $(TEST_OBJS) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcurl

# Fuzz targets without libFuzzer: replay tests/fuzz/regression/ in make test.
FUZZ_REPLAY = $(patsubst %,$(BUILD)/fuzz_replay_%,$(FUZZ_TARGETS))
$(BUILD)/fuzz_replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# (kept: otherwise make deletes them as intermediates and rebuilds each time)
.SECONDARY: $(patsubst %,$(BUILD)/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS)) $(BUILD)/tests/fuzz/replay.o

# The libFuzzer binaries (only in the FUZZ=1 build).
$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# The bounded HTTP load generator behind make soak (tests/loadgen.c).
$(BUILD)/loadgen: $(call obj,tests/loadgen.c tests/net.c util/clock.c)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

$(BUILD)/bench: $(call obj,tests/bench/bench.c) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench_gemm: $(call obj,tests/bench/bench_gemm.c) $(LIB_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The git commit baked into the binary (util/version.c): build_commit.h is
# rewritten only when the commit changes, so an unchanged tree does not
# relink. Outside a git checkout (a tarball, a Docker context) it is
# "unknown"; EMB_COMMIT=... overrides.
EMB_COMMIT ?= $(shell git describe --always --dirty --abbrev=12 --exclude '*' 2>/dev/null || echo unknown)
$(BUILD)/gen/build_commit.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define EMB_GIT_COMMIT "$(EMB_COMMIT)"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/util/version.o: $(BUILD)/gen/build_commit.h
$(BUILD)/util/version.o: CPPFLAGS += -I$(BUILD)/gen
.PHONY: FORCE
FORCE:

# The page at `/` (web/): its files become byte arrays in a generated C file
# (scripts/embed_assets.c, built for this machine with HOSTCC, so cross
# builds work), served by server/web.c. Adding a file to web/ adds it here.
HOSTCC   ?= cc
WEB_FILES = $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg))
$(BUILD)/gen/embed_assets: scripts/embed_assets.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -std=c11 -O1 -Wall -Wextra -o $@ $<
$(BUILD)/gen/web_assets.c: $(BUILD)/gen/embed_assets $(WEB_FILES) Makefile
	$(BUILD)/gen/embed_assets $@ $(WEB_FILES)
$(BUILD)/gen/web_assets.o: $(BUILD)/gen/web_assets.c server/web.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The engine's kernels rely on auto-vectorisation (see engine/ops.c).
$(BUILD)/engine/%.o: CFLAGS += -O3 -fno-trapping-math

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

ifeq ($(SANITIZE),thread)
# target_clones resolvers run during relocation, before the TSan runtime is
# up; instrumented, they crash at load. The kernels (engine/ops.c: no
# threads, no shared state) are built uninstrumented in the TSan build.
$(BUILD)/engine/ops.o: engine/ops.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(STD) $(WARN) -O3 -g -pthread -c -o $@ $<
endif

ifdef FUZZ
# clang 14 names target_clones ifuncs "ops_gelu.ifunc", which nothing links
# against; in the fuzz build the kernels come from gcc, uninstrumented (they
# parse nothing).
$(BUILD)/engine/ops.o: engine/ops.c
	@mkdir -p $(dir $@)
	gcc $(CPPFLAGS) $(STD) -O3 -g -pthread -c -o $@ $<
endif

# Generated test model (small random weights in the real layout) and the
# float64 NumPy reference's expected outputs. Shared by every build flavour.
TESTMODEL = build/testmodel
$(TESTMODEL)/model.safetensors: tests/gen_model.py tests/data/corpus.txt
	@mkdir -p $(TESTMODEL)
	$(PYTHON) tests/gen_model.py --out $(TESTMODEL)
# A second model of another shape, seed and name, for the multi-model suite
TESTMODEL2 = build/testmodel2
$(TESTMODEL2)/model.safetensors: tests/gen_model.py tests/data/corpus.txt
	@mkdir -p $(TESTMODEL2)
	$(PYTHON) tests/gen_model.py --out $(TESTMODEL2) --seed 99 --shape 64,4,2,160 \
	    --name test/second-v3
$(TESTMODEL)/expected.json: $(TESTMODEL)/model.safetensors tests/reference.py tests/data/engine_cases.json
	$(PYTHON) tests/reference.py --model $(TESTMODEL) --cases tests/data/engine_cases.json --out $@
testmodel: $(TESTMODEL)/expected.json
# The same cases on heads of 64 values, the real model's width (the engine
# suite: paths that take only that width, such as the fused AMX attention).
# Its seed keeps the dims_1 case's components (a 1-value embedding is the
# sign of one) at 14% of their vectors' norm or more, well clear of int8's
# error; seed 64 put one at 0.07%, where int8 may flip it.
TESTMODEL_D64 = build/testmodel-d64
$(TESTMODEL_D64)/model.safetensors: tests/gen_model.py tests/data/corpus.txt
	@mkdir -p $(TESTMODEL_D64)
	$(PYTHON) tests/gen_model.py --out $(TESTMODEL_D64) --seed 65 --shape 128,2,2,256 \
	    --name test/d64-v3
$(TESTMODEL_D64)/expected.json: $(TESTMODEL_D64)/model.safetensors tests/reference.py \
                                tests/data/engine_cases.json
	$(PYTHON) tests/reference.py --model $(TESTMODEL_D64) --cases tests/data/engine_cases.json \
	    --out $@
testmodel: $(TESTMODEL_D64)/expected.json

# jina-embeddings-v2 checkpoints of each layout (en: 6 heads, f16; code: 12
# heads, bf16; mlm: en under the "bert." prefix, 8 heads, f32) and the float64
# reference's embeddings for token ids it draws (no tokenizer involved).
TESTMODEL_V2 = build/testmodel-v2
V2_GEN_en   = --variant en --dtype f16 --heads 6
V2_GEN_code = --variant code --dtype bf16 --heads 12
V2_GEN_mlm  = --variant en --dtype f32 --hidden 64 --heads 8 --ffn 96 --mlm-prefix
TESTMODEL_V2_EXPECTED = $(patsubst %,$(TESTMODEL_V2)/%/expected.json,en code mlm)
$(TESTMODEL_V2)/%/model.safetensors: tests/gen_model_v2.py tests/gen_model.py
	@mkdir -p $(dir $@)
	$(PYTHON) tests/gen_model_v2.py --out $(dir $@) $(V2_GEN_$*)
$(TESTMODEL_V2)/%/expected.json: $(TESTMODEL_V2)/%/model.safetensors tests/reference_v2.py \
                                 tests/reference.py tests/data/engine_v2_cases.json
	$(PYTHON) tests/reference_v2.py --model $(dir $@) --cases tests/data/engine_v2_cases.json --out $@
.PRECIOUS: $(TESTMODEL_V2)/%/model.safetensors
testmodel: $(TESTMODEL_V2_EXPECTED)
# v2 models to serve, each with a tokenizer.json trained by Hugging Face
# tokenizers (tests/data/tokenizers/): en with WordPiece, code with
# byte-level BPE (stage_v2_serve.sh)
TESTMODEL_V2_SERVE = $(TESTMODEL_V2)/serve-en/model.safetensors \
                     $(TESTMODEL_V2)/serve-code/model.safetensors
$(TESTMODEL_V2)/serve-en/model.safetensors: tests/gen_model_v2.py tests/data/tokenizers/wordpiece.json
	$(PYTHON) tests/gen_model_v2.py --out $(dir $@) --variant en --dtype f16 --heads 6 \
	    --vocab 4000 --tokenizer-json tests/data/tokenizers/wordpiece.json
$(TESTMODEL_V2)/serve-code/model.safetensors: tests/gen_model_v2.py tests/data/tokenizers/bpe.json
	$(PYTHON) tests/gen_model_v2.py --out $(dir $@) --variant code --dtype bf16 --heads 12 \
	    --vocab 4000 --tokenizer-json tests/data/tokenizers/bpe.json
testmodel: $(TESTMODEL_V2_SERVE)

# Sanitizer settings for every process the tests start (servers included):
# leak checking on, with tests/lsan.supp for library statics.
SAN_ENV = ASAN_OPTIONS="detect_leaks=1 $$ASAN_OPTIONS" \
          LSAN_OPTIONS="suppressions=$(CURDIR)/tests/lsan.supp print_suppressions=0 $$LSAN_OPTIONS" \
          UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 $$UBSAN_OPTIONS"
ifdef SANITIZE
# Sanitized servers run several times slower: let SIGTERM drains (test_http's
# four 2048-input requests in flight) finish instead of hitting the 30 s default.
SAN_ENV += EMBEDSERVE_SHUTDOWN_TIMEOUT=$${EMBEDSERVE_SHUTDOWN_TIMEOUT:-600}
# The deploy lint inspects the release binary's shared libraries; a
# sanitizer build links libasan/libtsan by design, so it is skipped there.
TEST_SKIP += stage_deploy_lint
endif
# stage_docker (the image built and run) is make docker-test, its own CI step.
TEST_SKIP += stage_docker
test: $(BUILD)/embedserve $(BUILD)/test_all $(FUZZ_REPLAY) $(TESTMODEL)/expected.json \
      $(TESTMODEL_D64)/expected.json $(TESTMODEL2)/model.safetensors $(TESTMODEL_V2_EXPECTED) \
      $(TESTMODEL_V2_SERVE)
	$(SAN_ENV) SKIP_STAGES="$(TEST_SKIP) $$SKIP_STAGES" BUILD=$(BUILD) TESTMODEL=$(TESTMODEL) \
	    TESTMODEL_D64=$(TESTMODEL_D64) TESTMODEL2=$(TESTMODEL2) TESTMODEL_V2=$(TESTMODEL_V2) \
	    PYTHON=$(PYTHON) sh tests/run.sh

# make test-tsan: the concurrency suites under ThreadSanitizer: the HTTP
# server (MHD threads, batcher, engine thread) and hostile clients and
# disconnects, whose servers are TSan builds too, the tokenizer from many
# threads, and the engine's worker pool (test_engine runs 2 threads
# in-process). The servers run their forward passes on one thread
# (EMBEDSERVE_THREADS=1): TSan makes the pool's barriers ~3x slower, which
# pushed test_http's SIGTERM drain past its client timeout; the pool itself
# is covered by the engine suite. OpenBLAS is not instrumented, so it runs on
# the calling thread only. TSan reports make a process exit 66
# and are also searched for in the server logs.
TSAN_BUILD  = build/san-thread
TSAN_SUITES ?= tokenizer engine batcher http hostile conn
test-tsan: $(TESTMODEL)/expected.json $(TESTMODEL_D64)/expected.json $(TESTMODEL_V2_EXPECTED)
	$(MAKE) SANITIZE=thread $(TSAN_BUILD)/embedserve $(TSAN_BUILD)/test_all
	rm -f $(TSAN_BUILD)/*.log
	OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="second_deadlock_stack=1 $$TSAN_OPTIONS" \
	    EMBEDSERVE_SHUTDOWN_TIMEOUT=$${EMBEDSERVE_SHUTDOWN_TIMEOUT:-600} EMBEDSERVE_THREADS=1 \
	    BUILD=$(TSAN_BUILD) TESTMODEL=$(TESTMODEL) TESTMODEL_D64=$(TESTMODEL_D64) \
	    TESTMODEL_V2=$(TESTMODEL_V2) $(TSAN_BUILD)/test_all $(TSAN_SUITES)
	@if grep -l "ThreadSanitizer" $(TSAN_BUILD)/*.log; then \
	    echo "ThreadSanitizer reports in the server logs above"; exit 1; fi; echo "tsan: no reports"

# make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="api tokenize model"]: builds the
# libFuzzer targets into build/fuzz and runs each for FUZZ_SECONDS on a copy
# of tests/fuzz/corpus/<target>; crashers land in tests/fuzz/regression/<target>/.
FUZZ_SECONDS ?= 60
fuzz: $(TESTMODEL)/model.safetensors
	$(MAKE) FUZZ=1 $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
	FUZZ_SECONDS=$(FUZZ_SECONDS) TESTMODEL=$(TESTMODEL) sh tests/fuzz/run.sh $(FUZZ_TARGETS)

# make soak [SOAK_SECONDS=600]: the server on the generated model under
# saturating mixed load on loopback (tests/soak.sh checks errors, p99, RSS, fds).
SOAK_SECONDS ?= 600
soak: $(BUILD)/embedserve $(BUILD)/loadgen $(TESTMODEL)/model.safetensors
	BUILD=$(BUILD) TESTMODEL=$(TESTMODEL) SOAK_SECONDS=$(SOAK_SECONDS) sh tests/soak.sh

# make docker-test: docker/Dockerfile built with podman (no Docker daemon, no
# registry: the debian:bookworm-slim base is made with debootstrap from the apt
# mirror and cached in $(BUILD)/docker/) and the image run on the test model:
# /ready, an embedding against the host binary, the HEALTHCHECK, a clean stop;
# then every container and image is removed. Needs root (tests/stage_docker.sh).
# make docker-test-multiarch: the same, then the arm64 image too (the build
# stage cross-compiles, the runtime stage's apt-get runs under qemu, its arm64
# base made the same way), run under qemu, and a manifest list of the two.
docker-test docker-test-multiarch: $(BUILD)/embedserve $(TESTMODEL)/model.safetensors
	DOCKER_ARM64=$(if $(filter docker-test-multiarch,$@),1,0) BUILD=$(BUILD) TESTMODEL=$(TESTMODEL) \
	    PYTHON=$(PYTHON) sh tests/stage_docker.sh

# make bench [BENCH_MODEL=DIR] [BENCH_MODEL_V2=DIR] [BENCH_LLAMA=1]: full-size
# random-weight checkpoints in the real layouts are generated once into the
# cache (or the given directories are used): jina-embeddings-v3, and a
# jina-embeddings-v2-base-en-shaped one (12 layers, 768 wide, 12 heads, 3072 ff,
# vocab 30528) with the test WordPiece tokenizer.json (4000 tokens, ids below
# the vocab). BENCH_LLAMA=1 adds llama.cpp's jina-bert-v2 on the same v2
# weights and its jina-bert-v3 on the v3 weights, with and without a task
# LoRA (tests/bench/llama_v3.py): it fetches llama.cpp's source through npm
# and builds it once into the cache (minutes), see docs/benchmarks.md. The engine is measured at every
# kernel level the CPU can run, one table each: the CPU's own level in full,
# the lower ones in a reduced set (BENCH_FULL=1: in full; BENCH_QUICK=1,
# BENCH_LEVELS="LEVEL ...": see tests/bench/run.sh).
BENCH_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/embedserve/full-random
BENCH_MODEL ?= $(BENCH_CACHE)
BENCH_CACHE_V2 ?= $(BENCH_CACHE)-v2-base
BENCH_MODEL_V2 ?= $(BENCH_CACHE_V2)
BENCH_LLAMA ?= 0
bench: $(BUILD)/bench $(BUILD)/embedserve
	@if [ "$(BENCH_MODEL)" = "$(BENCH_CACHE)" ] && [ ! -f $(BENCH_CACHE)/model.safetensors ]; then \
	    mkdir -p $(BENCH_CACHE) && $(PYTHON) tests/gen_model.py --full --out $(BENCH_CACHE); fi
	@if [ "$(BENCH_MODEL_V2)" = "$(BENCH_CACHE_V2)" ] && [ ! -f $(BENCH_CACHE_V2)/model.safetensors ]; then \
	    $(PYTHON) tests/gen_model_v2.py --base --variant en --dtype f32 --out $(BENCH_CACHE_V2) \
	        --tokenizer-json tests/data/tokenizers/wordpiece.json; fi
	@if [ "$(BENCH_MODEL_V2)" = "$(BENCH_CACHE_V2)" ] && [ ! -f $(BENCH_CACHE_V2)/tokenizer.json ]; then \
	    cp tests/data/tokenizers/wordpiece.json $(BENCH_CACHE_V2)/tokenizer.json; fi
	BUILD=$(BUILD) PYTHON=$(PYTHON) BENCH_LLAMA=$(BENCH_LLAMA) sh tests/bench/run.sh $(BENCH_MODEL) $(BENCH_MODEL_V2)

# make cross-aarch64: a check that the tree compiles and links for aarch64
# with Debian's cross compiler (crossbuild-essential-arm64). The arm64
# libraries, and what they load, are unpacked into a sysroot under build/ by
# scripts/aarch64-sysroot, not installed over the host's amd64 ones.
XSYSROOT = build/aarch64-sysroot/root
XLIBDIR  = $(XSYSROOT)/usr/lib/aarch64-linux-gnu
XMAKE    = $(MAKE) BUILD=build/aarch64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
    PKG_CFLAGS="-I$(XSYSROOT)/usr/include -I$(XSYSROOT)/usr/include/cjson \
                -I$(XSYSROOT)/usr/include/aarch64-linux-gnu \
                -I$(XSYSROOT)/usr/include/aarch64-linux-gnu/openblas-pthread" \
    PKG_LIBS="-L$(XLIBDIR) -L$(XLIBDIR)/openblas-pthread -lmicrohttpd -lcjson -lopenblas \
              -Wl,-rpath-link,$(XLIBDIR) -Wl,--allow-shlib-undefined"
# make cross-aarch64-server: only the server binary (the Dockerfile's arm64
# build stage runs it on the build machine's platform).
cross-aarch64-server:
	scripts/aarch64-sysroot build/aarch64-sysroot >/dev/null
	$(XMAKE) build/aarch64/embedserve
cross-aarch64: cross-aarch64-server
	$(XMAKE) build/aarch64/test_all
	@file build/aarch64/embedserve | grep -q "ARM aarch64" && echo "cross-aarch64: build/aarch64/embedserve is an aarch64 executable"

# make test-aarch64: the kernel and engine suites of the aarch64 build, run
# under qemu-aarch64-static with the sysroot as the guest's root (no
# binfmt_misc needed), for two CPU models: `max` (NEON, DotProd, I8MM, BF16)
# and `cortex-a72` (ARMv8.0: NEON only), each at its own best level and at
# the portable level (EMBEDSERVE_TEST_CPU_FEATURES=generic), the three runs
# side by side (qemu runs a guest thread on one host thread). Threaded
# OpenBLAS spins under qemu at startup: one thread. EMBEDSERVE_TEST_EMULATED
# (emulation is ~50x slower) makes the engine suite leave out its cases over
# 2048 tokens (make test runs them on the host) and shuffle its
# reproducibility batches once, not three times; the rest runs in full.
XSUITES ?= ops gemm engine
XRUN = QEMU_LD_PREFIX=$(CURDIR)/$(XSYSROOT) LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/openblas-pthread \
       OPENBLAS_NUM_THREADS=1 EMBEDSERVE_TEST_EMULATED=1 BUILD=build/aarch64 TESTMODEL=$(TESTMODEL) \
       TESTMODEL_D64=$(TESTMODEL_D64) TESTMODEL_V2=$(TESTMODEL_V2)
test-aarch64: cross-aarch64 $(TESTMODEL)/expected.json $(TESTMODEL_D64)/expected.json \
              $(TESTMODEL_V2_EXPECTED)
	@rm -f build/aarch64/qemu-*.log; \
	for run in max:auto max:generic cortex-a72:auto; do \
	    cpu=$${run%%:*}; level=$${run#*:}; log=build/aarch64/qemu-$$cpu-$$level.log; \
	    ( $(XRUN) QEMU_CPU=$$cpu EMBEDSERVE_TEST_CPU_FEATURES=$$level \
	        qemu-aarch64-static build/aarch64/test_all $(XSUITES) >$$log 2>&1; echo "rc $$?" >>$$log ) & \
	done; wait; rc=0; \
	for log in build/aarch64/qemu-*.log; do \
	    echo "=== $$log"; cat $$log; tail -1 $$log | grep -qx "rc 0" || rc=1; done; exit $$rc

deps:
	scripts/install-deps --test

print-deb-%:
	@echo $(DEB_$*)

FMT_SRCS = $(sort $(ENGINE_SRCS) $(wildcard engine/arch/*/*.c)) $(CONFIG_SRCS) $(TOK_SRCS) $(UTIL_SRCS) $(PIPE_SRCS) $(CLI_SRCS) \
           $(wildcard server/*.c) $(TEST_SRCS) $(wildcard */*.h) scripts/embed_assets.c
format:
	clang-format -i $(FMT_SRCS)
format-check:
	clang-format --dry-run --Werror $(FMT_SRCS)

# Every header compiles on its own (includes what it uses).
HEADERS = $(wildcard */*.h)
check-headers:
	@for h in $(HEADERS); do \
	    echo "#include \"$$h\"" | $(CC) $(CPPFLAGS) $(STD) -fsyntax-only -x c - || exit 1; done; \
	echo headers ok

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/tests/bench/bench.d \
         $(wildcard $(BUILD)/tests/fuzz/*.d) $(BUILD)/tests/loadgen.d
