# muxnet — one Makefile for the library, the tests, the benchmarks and the task binaries.
#
#   make            build build/libmuxnet.a (and the CUDA backend when nvcc is found)
#   make test       install missing Debian packages (as root), build and run the Catch2 suite
#   make test-cuda  the same, running only the [cuda] tests (without a usable GPU each is reported as
#                   SKIPPED with the reason, and the run exits 0)
#   make bench      build and run the op benchmarks (tasks/bench_*.cpp)
#   make deps       install the Debian packages muxnet needs (apt-get as root, else print the command)
#   make run        build and run the default task (arrives with the retrieval task)
#   make plots      PNG plots of runs/*.jsonl under runs/plots/ (needs gnuplot; says so and exits 0 without)
#   make loc        lines of code per folder
#   make clean
#
# Knobs: DEBUG=1 (-O0 -g -fsanitize=address,undefined, objects in build/debug), CUDA=auto|0|1,
#        CUDA_ARCH=90, MARCH=native. No -ffast-math: the CPU kernels are the numerical reference.
#        -fno-math-errno changes no result (sqrt etc. just stop setting errno, which nothing reads)
#        and lets gcc vectorise loops that call sqrt.

DEBUG     ?= 0
CUDA      ?= auto
CUDA_ARCH ?= 90
MARCH     ?= native
NPROC     := $(shell nproc 2>/dev/null || echo 2)

DEB_PKGS := libopenblas-openmp-dev catch2 nlohmann-json3-dev libcli11-dev zlib1g-dev

# ---------------------------------------------------------------- detection
MULTIARCH    := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
OPENBLAS_INC := /usr/include/$(MULTIARCH)/openblas-openmp
OPENBLAS_LIB := /usr/lib/$(MULTIARCH)/openblas-openmp
HAVE_OPENBLAS := $(wildcard $(OPENBLAS_INC)/cblas.h)
HAVE_CATCH2   := $(wildcard /usr/include/catch2/catch.hpp)
HAVE_JSON     := $(wildcard /usr/include/nlohmann/json.hpp)
HAVE_CLI11    := $(wildcard /usr/include/CLI/CLI.hpp)
HAVE_ZLIB     := $(wildcard /usr/include/zlib.h)
HAVE_OPENMP   := $(shell echo 'int main(){}' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo yes)
NVCC          := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

ifeq ($(CUDA),auto)
  USE_CUDA := $(if $(NVCC),1,0)
else
  USE_CUDA := $(CUDA)
endif
ifeq ($(USE_CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found (install the CUDA Toolkit or use CUDA=0))
  endif
endif

ifeq ($(MAKELEVEL),0)
  ifneq ($(filter-out clean loc deps,$(or $(MAKECMDGOALS),all)),)
    $(info muxnet build configuration:)
    $(info $(if $(HAVE_OPENBLAS),  ✓ OpenBLAS (OpenMP build) in $(OPENBLAS_LIB),  ✗ OpenBLAS (OpenMP build) not found: make deps))
    $(info $(if $(HAVE_OPENMP),  ✓ OpenMP,  ✗ OpenMP not found))
    $(info $(if $(HAVE_CATCH2),  ✓ Catch2 v2,  ✗ Catch2 v2 not found (needed by make test): make deps))
    $(info $(if $(HAVE_JSON),  ✓ nlohmann-json,  ✗ nlohmann-json not found: make deps))
    $(info $(if $(HAVE_CLI11),  ✓ CLI11,  ✗ CLI11 not found: make deps))
    $(info $(if $(HAVE_ZLIB),  ✓ zlib (IDX .gz readers),  ✗ zlib not found: make deps))
    $(info $(if $(filter 1,$(USE_CUDA)),  ✓ nvcc $(NVCC): building the CUDA backend for sm_$(CUDA_ARCH),  ✗ CUDA backend off (nvcc not found or CUDA=0): CPU-only build))
  endif
endif

# ---------------------------------------------------------------- flags
ifeq ($(DEBUG),1)
  BUILD    := build/debug
  OPTFLAGS := -O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer
  LDDEBUG  := -fsanitize=address,undefined
else
  BUILD    := build
  # NOTE: -mno-avx512f works around a g++ 12.2 wrong-code bug: with AVX-512 enabled it builds the
  # constant std::vector<int64_t>{1, 1, 0, 0} with `vpbroadcastq %rdx, %ymm0`, i.e. {1, 1, 1, 1}
  # (seen in tests/test_grad_nn.cpp; -mno-avx512vl is not enough; -march=x86-64-v3 and
  # -fno-tree-slp-vectorize both avoid it). AVX2 and FMA stay on, and OpenBLAS keeps its own AVX-512.
  AVX512   = -mno-avx512f
  OPTFLAGS = -O3 -march=$(MARCH) $(AVX512)
  LDDEBUG  :=
endif

# OpenBLAS is not linked: tensor/cpu/blas.cpp dlopen()s it after choosing a kernel for this CPU (see
# blas.h for why), from the path the Makefile found.
CXXFLAGS_ALL = -std=c++17 $(OPTFLAGS) -fno-math-errno -fopenmp -Wall -Wextra -Wno-unused-parameter -I. -I$(OPENBLAS_INC) \
                -DMUXNET_OPENBLAS_SO='"$(OPENBLAS_LIB)/libopenblas.so.0"' -DMUXNET_SOURCE_DIR='"$(CURDIR)"' -MMD -MP
LDLIBS_ALL   := -fopenmp -ldl -lm -lpthread -lz $(LDDEBUG)

ifeq ($(USE_CUDA),1)
  CUDA_HOME  := $(patsubst %/bin/nvcc,%,$(NVCC))
  CXXFLAGS_ALL += -DMUXNET_WITH_CUDA -I$(CUDA_HOME)/include
  NVCCFLAGS  := -std=c++17 -O3 -I. -DMUXNET_WITH_CUDA \
                -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) \
                -gencode arch=compute_$(CUDA_ARCH),code=compute_$(CUDA_ARCH) \
                -Xcompiler -fopenmp -MMD -MP
  LDLIBS_ALL += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas
endif

# ---------------------------------------------------------------- sources
LIB_SRCS   := $(wildcard tensor/*.cpp tensor/cpu/*.cpp autograd/*.cpp autograd/functions/*.cpp nn/*.cpp mux/*.cpp)
CUDA_SRCS  := $(if $(filter 1,$(USE_CUDA)),$(wildcard cuda/*.cu))
TEST_SRCS  := $(wildcard tests/*.cpp)
BENCH_SRCS := $(wildcard tasks/bench_*.cpp)
TASK_SRCS  := $(filter-out tasks/bench_%.cpp,$(wildcard tasks/*.cpp))
COMMON_SRCS := $(wildcard tasks/common/*.cpp)

LIB_OBJS   := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o) $(CUDA_SRCS:%.cu=$(BUILD)/obj/%.cu.o)
TEST_OBJS  := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o)
BENCH_BINS := $(patsubst tasks/%.cpp,$(BUILD)/%,$(BENCH_SRCS))
TASK_BINS  := $(patsubst tasks/%.cpp,$(BUILD)/%,$(TASK_SRCS))
COMMON_OBJS := $(COMMON_SRCS:%.cpp=$(BUILD)/obj/%.o)
LIB        := $(BUILD)/libmuxnet.a
TEST_BIN   := $(BUILD)/muxnet_tests

.PHONY: all lib tasks test test-run bench bench-run deps run run-task loc clean
.DEFAULT_GOAL := all

all: $(LIB) $(TASK_BINS)
lib: $(LIB)
tasks: $(TASK_BINS)

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# The loop kernels below keep AVX-512 where the machine has it: their vectorised math runs ~1.5x
# faster with it (gelu 0.54 vs 0.83 ns/element on one core), every kernel in them is checked against a
# naive reference by the tests, and the SLP vectoriser, which builds the constant vectors that g++ 12.2
# miscompiles, is off for them.
AVX512_KERNELS := tensor/cpu/elementwise.cpp tensor/cpu/softmax.cpp tensor/cpu/layernorm.cpp
ifneq ($(DEBUG),1)
$(AVX512_KERNELS:%.cpp=$(BUILD)/obj/%.o): AVX512 = -fno-tree-slp-vectorize -mprefer-vector-width=512
endif

# Objects depend on the build configuration: changing CUDA, MARCH or the flags rebuilds them. The stamp
# is rewritten only when the configuration text changes.
CONFIG_STAMP := $(BUILD)/config.stamp
CONFIG_TEXT  := $(CXX) $(CXXFLAGS_ALL) | $(AVX512_KERNELS) | $(NVCC) $(NVCCFLAGS) | cuda=$(USE_CUDA)
ifneq ($(filter-out clean loc deps run,$(or $(MAKECMDGOALS),all)),)
  $(shell mkdir -p $(BUILD))
  ifneq ($(file <$(CONFIG_STAMP)),$(CONFIG_TEXT))
    $(file >$(CONFIG_STAMP),$(CONFIG_TEXT))
  endif
endif

$(LIB_OBJS) $(TEST_OBJS) $(COMMON_OBJS) $(BENCH_BINS) $(TASK_BINS): $(CONFIG_STAMP)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(TEST_BIN): $(TEST_OBJS) $(COMMON_OBJS) $(LIB)
	$(CXX) $(CXXFLAGS_ALL) $(TEST_OBJS) $(COMMON_OBJS) $(LIB) $(LDLIBS_ALL) -o $@

$(BUILD)/bench_%: tasks/bench_%.cpp $(LIB)
	$(CXX) $(CXXFLAGS_ALL) $< $(LIB) $(LDLIBS_ALL) -o $@

# Task binaries: one file each in tasks/, sharing tasks/common/.
$(BUILD)/%: tasks/%.cpp $(COMMON_OBJS) $(LIB)
	$(CXX) $(CXXFLAGS_ALL) $< $(COMMON_OBJS) $(LIB) $(LDLIBS_ALL) -o $@

# `make test` = deps, then a sub-make (which sees freshly installed packages) builds and runs the suite.
test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) test-run

test-run: $(TEST_BIN)
	@echo "running $(TEST_BIN)"
	@start=$$(date +%s); $(TEST_BIN) $(TEST_ARGS); rc=$$?; \
	  echo "tests took $$(( $$(date +%s) - start )) s"; exit $$rc

# `make test-cuda` = deps, then build the suite and run only the tests tagged [cuda] (TEST_ARGS are
# added to the filter: TEST_ARGS=-s, or a tag to narrow it down).
.PHONY: test-cuda test-cuda-run
test-cuda: deps
	@$(MAKE) --no-print-directory -j$(NPROC) test-cuda-run

test-cuda-run: $(TEST_BIN)
	@echo "running $(TEST_BIN) \"[cuda]\""
	@start=$$(date +%s); $(TEST_BIN) "[cuda]" $(TEST_ARGS); rc=$$?; \
	  echo "tests took $$(( $$(date +%s) - start )) s"; exit $$rc

bench: deps
	@$(MAKE) --no-print-directory -j$(NPROC) bench-run

bench-run: $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done

# `make run` = deps, then build and run the default task: the synthetic retrieval warm-up at N = 5.
RUN_ARGS ?=
run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) run-task

run-task: $(BUILD)/retrieval
	$(BUILD)/retrieval $(RUN_ARGS)

# Installs the Debian packages that are missing: with apt-get when run as root, else prints the command.
deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "deps: not a Debian system; install OpenBLAS (OpenMP build), Catch2 v2, nlohmann-json, CLI11 and zlib yourself"; \
	  exit 0; fi; \
	missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present ($(DEB_PKGS))"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $$missing || { apt-get update -q && apt-get install -y -q $$missing; }; \
	else \
	  echo "deps: missing$$missing. Install them with:"; \
	  echo "  sudo apt-get install -y$$missing"; exit 1; \
	fi

# `make plots` = runs/*.jsonl -> runs/plots/*.png with gnuplot (tasks/plots/plots.sh); build/jsonl2dat
# extracts the columns (a plain C++ tool on nlohmann-json, no library).
.PHONY: plots
plots:
	@if ! command -v gnuplot >/dev/null 2>&1; then \
	  echo "plots: gnuplot not found (apt-get install -y gnuplot-nox); no plots made"; exit 0; fi; \
	$(MAKE) --no-print-directory $(BUILD)/jsonl2dat && tasks/plots/plots.sh

$(BUILD)/jsonl2dat: tasks/plots/jsonl2dat.cpp
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -Wall -Wextra $< -o $@

loc:
	@for d in tensor autograd nn mux cuda tasks tests; do \
	  printf "%-10s %6s lines\n" $$d $$(find $$d -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs cat 2>/dev/null | wc -l); done

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
