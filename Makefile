# cloob-server - top-level build.
#
#   make deps        install the Debian packages (root; see tools/install-deps.sh)
#   make             build everything into build/
#   make test        build, export the tiny test models, run every test (ends with pytest's summary)
#   make run         serve the real model (exported from Hugging Face if needed; demo model offline)
#   make bench       load benchmark (wrk) against a server it starts itself
#   make asan        unit tests under AddressSanitizer + UBSan (build-asan/)
#   make fuzz        build the libFuzzer targets and run each for FUZZ_SECONDS
#   make help        this list
#
# Another libtorch (the official CUDA build, or the one inside a pip-installed torch):
#   make TORCH_DIR=/path/to/libtorch            (has include/ and lib/)
#   make TORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
# The C++ ABI of that libtorch is detected from its headers' build; override with TORCH_CXX11_ABI=0|1.

PYTHON    ?= /usr/bin/python3
BUILD     ?= build
PREFIX    ?= /usr/local
DESTDIR   ?=
CC        ?= cc
CXX       ?= c++
SHARED    ?= ../shared

WARN      := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter
ifeq ($(CI),true)
WARN      += -Werror
endif
OPT       ?= -O2 -g
CFLAGS_BASE   := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -MMD -MP -pthread -Iserver -Ishim $(shell pkg-config --cflags libcjson)
CXXFLAGS_BASE := -std=c++17 $(OPT) $(WARN) -MMD -MP -pthread -Ishim

# ---- libtorch -----------------------------------------------------------------------------
TORCH_DIR ?=
ifeq ($(TORCH_DIR),)
TORCH_INC := -isystem /usr/include/torch/csrc/api/include
TORCH_LIB := -ltorch -ltorch_cpu -lc10
TORCH_CXX11_ABI ?= 1
else
TORCH_INC := -isystem $(TORCH_DIR)/include -isystem $(TORCH_DIR)/include/torch/csrc/api/include
# --no-as-needed: libtorch_cuda registers the CUDA backend from static initialisers only, so
# --as-needed would silently drop it and "cuda" would be unavailable at run time.
TORCH_LIB := -L$(TORCH_DIR)/lib -Wl,-rpath,$(TORCH_DIR)/lib -Wl,--no-as-needed \
             $(foreach l,torch torch_cpu torch_cuda c10 c10_cuda,$(if $(wildcard $(TORCH_DIR)/lib/lib$(l).so),-l$(l))) \
             -Wl,--as-needed
TORCH_CXX11_ABI ?= $(shell $(PYTHON) tools/torch_abi.py $(TORCH_DIR) 2>/dev/null || echo 1)
endif
TORCH_FLAGS := $(TORCH_INC) -D_GLIBCXX_USE_CXX11_ABI=$(TORCH_CXX11_ABI)

LIBS_C  := $(shell pkg-config --libs libmicrohttpd libcjson libjpeg) -lm -ldl
# SentencePiece is NOT linked into the programs (its bundled protobuf clashes with libtorch's):
# the shim dlopen()s build/libcloob_spm.so, see shim/plugin/spm_plugin.h.
SPM_PLUGIN := $(BUILD)/libcloob_spm.so

# ---- sources ------------------------------------------------------------------------------
# Every server/*.c except the two programs' mains goes into libcloobcore.a.
MAIN_SRCS  := server/main.c server/embed_main.c
CORE_SRCS  := $(filter-out $(MAIN_SRCS),$(wildcard server/*.c))
CORE_OBJS  := $(CORE_SRCS:%.c=$(BUILD)/%.o)
# The shim: model.cc needs libtorch (and its ABI); tokenizer.cc only SentencePiece (default ABI);
# the two never exchange C++ types, so a libtorch built with the old ABI still links.
SHIM_TORCH_SRCS := $(wildcard shim/model*.cc)
SHIM_OTHER_SRCS := $(filter-out $(SHIM_TORCH_SRCS),$(wildcard shim/*.cc))
SHIM_OBJS  := $(SHIM_TORCH_SRCS:%.cc=$(BUILD)/%.o) $(SHIM_OTHER_SRCS:%.cc=$(BUILD)/%.o)

# tests/unit/test_*.c: C modules only (no libtorch), so they also run under ASan.
# tests/shim/test_*.c: against real libtorch and SentencePiece.
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
SHIM_TESTS := $(patsubst tests/shim/%.c,$(BUILD)/tests/shim/%,$(wildcard tests/shim/test_*.c))
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)

BINS := $(BUILD)/cloob-server $(BUILD)/cloob-embed $(SPM_PLUGIN)
BENCH_BINS := $(BUILD)/bench_model

.SECONDARY:
.PHONY: all deps test test-build asan-server test-fast unit run bench asan fuzz fuzz-build models install clean help format lint gpu-check
all: $(BINS) $(BENCH_BINS) $(UNIT_TESTS) $(SHIM_TESTS)

help:
	@sed -n '3,13p' Makefile | sed 's/^# //'

deps:
	tools/install-deps.sh

$(BUILD)/server/%.o: server/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

$(BUILD)/shim/model%.o: shim/model%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_BASE) $(TORCH_FLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/shim/%.o: shim/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_BASE) -DCLOOB_SPM_PLUGIN_DEFAULT='"$(abspath $(SPM_PLUGIN))"' $(CXXFLAGS) -c $< -o $@

# openapi.yaml is compiled into the server (.incbin, path relative to the repo root).
$(BUILD)/server/openapi_embed.o: openapi.yaml

$(SPM_PLUGIN): shim/plugin/spm_plugin.cc shim/plugin/spm_plugin.h
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_BASE) -fPIC -shared -fvisibility=hidden $(CXXFLAGS) $(LDFLAGS) -o $@ $< -lsentencepiece

$(BUILD)/libcloobcore.a: $(CORE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libcloobshim.a: $(SHIM_OBJS)
	@rm -f $@
	ar rcs $@ $^

LINK_ALL = $(CXX) $(LDFLAGS) -pthread -o $@ $(filter %.o %.a,$^) $(TORCH_LIB) $(LIBS_C)

$(BUILD)/cloob-server: $(BUILD)/server/main.o $(BUILD)/libcloobcore.a $(BUILD)/libcloobshim.a
	$(LINK_ALL)

$(BUILD)/cloob-embed: $(BUILD)/server/embed_main.o $(BUILD)/libcloobcore.a $(BUILD)/libcloobshim.a
	$(LINK_ALL)

$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

$(BUILD)/bench_model: $(BUILD)/bench/bench_model.o $(BUILD)/libcloobshim.a
	$(LINK_ALL)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests/unit $(CFLAGS) -c $< -o $@

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(BUILD)/libcloobcore.a
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(LIBS_C)

$(BUILD)/tests/shim/%: $(BUILD)/tests/shim/%.o $(BUILD)/libcloobcore.a $(BUILD)/libcloobshim.a | $(SPM_PLUGIN)
	$(LINK_ALL)

# ---- test models (tiny random weights, real tokenizer) -------------------------------------
MODELS := $(BUILD)/models
$(MODELS)/tiny/model.pt: tools/export_model.py tools/cloob_model.py
	$(PYTHON) tools/export_model.py --random tiny --seed 1 --tokenizer $(SHARED)/model/google_sp.model --out $(MODELS)/tiny
models: $(MODELS)/tiny/model.pt

# ---- tests --------------------------------------------------------------------------------
# Everything runs through pytest so that the output ends with one summary line; the C unit and
# shim test binaries are collected by tests/test_c_programs.py.
# The build runs in parallel inside the recipe (not via a global -j), so `make deps test` still
# installs the packages before anything compiles.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test-build: all models asan-build fuzz-build
test:
	$(MAKE) --no-print-directory -j$(JOBS) test-build
	CLOOB_BUILD=$(BUILD) CLOOB_SHARED=$(SHARED) $(PYTHON) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

unit: $(UNIT_TESTS)
	@for t in $(UNIT_TESTS); do echo "== $$t"; $$t || exit 1; done

# ---- sanitizers and fuzzing (C code only: libtorch is not built with ASan) -----------------
ASAN_BUILD := build-asan
SAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_UNIT  := $(patsubst tests/unit/%.c,$(ASAN_BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
asan-build:
	$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) OPT="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" $(ASAN_UNIT)
asan: asan-build
	@for t in $(ASAN_UNIT); do echo "== $$t"; CLOOB_SHARED=$(SHARED) $$t || exit 1; done

# The whole server under ASan+UBSan (libtorch itself is not instrumented), for the e2e tests:
#   make asan-server && CLOOB_SERVER_BIN=build-asan-srv/cloob-server python3 -m pytest tests/test_server*.py
asan-server:
	$(MAKE) --no-print-directory BUILD=build-asan-srv OPT="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" \
	  build-asan-srv/cloob-server build-asan-srv/libcloob_spm.so

FUZZ_SECONDS ?= 30
FUZZ_BUILD   := build-fuzz
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
# A fuzz target #includes the .c files it exercises (so it can reach static functions too).
$(FUZZ_BUILD)/%: tests/fuzz/%.c $(CORE_SRCS) $(wildcard server/*.h)
	@mkdir -p $(FUZZ_BUILD)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Iserver -Ishim $(shell pkg-config --cflags libcjson) \
	  -fsanitize=fuzzer,address,undefined -o $@ $< $(LIBS_C)
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(FUZZ_BUILD)/corpus-$$n tests/fuzz/corpus/$$n || exit 1; done

# ---- serving and benchmarks ---------------------------------------------------------------
run: $(BINS)
	tools/run.sh

bench: all
	$(PYTHON) bench/bench.py

gpu-check:
	tools/gpu-check.sh

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/cloob-server
	install -d $(DESTDIR)$(PREFIX)/lib/cloob-server
	install -m 0755 $(BUILD)/cloob-server $(BUILD)/cloob-embed $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(SPM_PLUGIN) $(DESTDIR)$(PREFIX)/lib/cloob-server/
	install -m 0644 openapi.yaml config/cloob-server.conf $(DESTDIR)$(PREFIX)/share/cloob-server/
	install -m 0755 tools/export_model.py tools/cloob_model.py $(DESTDIR)$(PREFIX)/share/cloob-server/

format:
	clang-format -i server/*.c server/*.h shim/*.cc shim/*.h tests/unit/*.c tests/shim/*.c

lint:
	tools/lint.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-asan-srv build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
