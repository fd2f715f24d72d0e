# hsconas build. `make` builds build/libhsconas.a and build/hsconas; `make test` installs what is missing
# (scripts/deps.sh), builds and runs the whole suite; `make asan-test` runs it under ASan+UBSan;
# `make bench` runs the benchmarks; `make install PREFIX=...`; `make test-gpu` (GPU machines) builds and runs
# tests/gpu/ against a device.
#   CUDA=auto|0|1   GPU backend: auto = when nvcc, cudnn.h and nccl.h are found; 1 = required
#   BUILD=dir       build directory (default build)
#   ARCH=...        -march value (default native; use e.g. x86-64-v3 for binaries shared across nodes)
#   WERROR=0        do not turn warnings into errors
#   V=1             show the full command lines

BUILD   ?= build
PREFIX  ?= /usr/local
CUDA    ?= auto
ARCH    ?= native
WERROR  ?= 1
SANITIZE ?=
PYTHON  ?= /usr/bin/python3

CC      := mpicc
PKGS    := hdf5-openmpi yaml-0.1 openblas zlib libturbojpeg
# pkg-config is asked only when building, so that `make help` and `make clean` work without it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhdf5_hl

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
OPT     := -O3 -march=$(ARCH) -fno-math-errno -fopenmp
ifneq ($(SANITIZE),)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fopenmp
endif
CFLAGS  += -std=c11 -D_DEFAULT_SOURCE $(OPT) $(WARN) -Iinclude -MMD -MP $(PKG_CFLAGS)
LDFLAGS += $(OPT)
LDLIBS  += $(PKG_LIBS) -lm

# ---- CUDA detection (only this file and src/backend/ know about CUDA) ----
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null))
ifeq ($(CUDA_HOME),)
CUDA_HOME := /usr/local/cuda
endif
NVCC    ?= $(CUDA_HOME)/bin/nvcc
CUDA_FOUND := $(shell test -x $(NVCC) -a -f $(CUDA_HOME)/include/cudnn.h -a -f $(CUDA_HOME)/include/nccl.h && echo 1)
ifeq ($(CUDA),1)
ifneq ($(CUDA_FOUND),1)
$(error CUDA=1 but the CUDA toolkit is incomplete under '$(CUDA_HOME)': need bin/nvcc, include/cudnn.h and include/nccl.h. Install the CUDA toolkit with cuDNN and NCCL, or set CUDA_HOME)
endif
WITH_CUDA := 1
else ifeq ($(CUDA),auto)
WITH_CUDA := $(CUDA_FOUND)
else ifneq ($(CUDA),0)
$(error CUDA must be auto, 0 or 1 (got '$(CUDA)'))
endif

# ---- sources ----
LIB_SRC := $(wildcard src/core/*.c src/space/*.c src/nn/*.c src/data/*.c src/latency/*.c \
             src/search/*.c src/dist/*.c src/io/*.c src/backend/*.c src/backend/cpu/*.c)
CU_SRC  :=
ifeq ($(WITH_CUDA),1)
LIB_SRC += $(wildcard src/backend/cuda/*.c)
CU_SRC  := $(wildcard kernels/*.cu)
CFLAGS  += -DHSC_HAVE_CUDA -isystem $(CUDA_HOME)/include -Ikernels
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lnccl -lcudart -lstdc++
NVFLAGS ?= -O3 -std=c++17 -Iinclude -Ikernels \
           -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
           -gencode arch=compute_90,code=compute_90 -Xcompiler -Wall,-Wextra$(if $(filter 1,$(WERROR)),$(comma)-Werror)
endif
comma := ,
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
MPI_TEST_SRC := $(wildcard tests/mpi/test_*.c)
GPU_TEST_SRC := $(wildcard tests/gpu/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
MPI_TESTS := $(MPI_TEST_SRC:tests/mpi/%.c=$(BUILD)/tests/mpi/%)
GPU_TESTS := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
BENCHES := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB     := $(BUILD)/libhsconas.a
BIN     := $(BUILD)/hsconas
REFDIR  := build/ref
REFS    := $(patsubst tests/ref/%_ref.py,$(REFDIR)/%.h5,$(wildcard tests/ref/*_ref.py))

# Test objects are kept (make would delete the harness object as an intermediate).
.SECONDARY:

.PHONY: FORCE all deps deps-test test format-check test-build asan-test bench run install clean format help \
        test-gpu test-gpu-build
all: $(LIB) $(BIN)

help:
	@sed -n '/^#/!q; s/^# \{0,1\}//p' Makefile

deps:
	@scripts/deps.sh

# The tests also need slurmctld, slurmd, slurm-client and munge (tests/slurm/ starts a local cluster).
deps-test:
	@scripts/deps.sh --slurm

# V=1 shows the full command lines.
Q := $(if $(filter 1,$(V)),,@)

# Objects are rebuilt when the flags change (CUDA=0 after CUDA=1, another ARCH, ...).
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(CFLAGS) $(NVFLAGS) $(LDLIBS)' | cmp -s - $@ || echo '$(CFLAGS) $(NVFLAGS) $(LDLIBS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR    $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(BUILD)/obj/tests/harness.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -Itests $< $(BUILD)/obj/tests/harness.o $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(BUILD)/obj/tests/harness.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -Itests $< $(BUILD)/obj/tests/harness.o $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(BUILD)/obj/tests/harness.o $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -Itests $< $(BUILD)/obj/tests/harness.o $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -Ibench $< $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

# PyTorch references are regenerated from the installed torch on every test run's first build, so they
# never go stale: they depend on the script that makes them.
$(REFDIR)/%.h5: tests/ref/%_ref.py
	@mkdir -p $(@D)
	$(PYTHON) $< $@.tmp && mv $@.tmp $@

# The supernet-step reference starts from the C engine's own exported weights and inputs. (Leak checking is
# off for the export: under the sanitizer build it would report Open MPI's own allocations, which
# tests/run.sh suppresses for the tests proper.)
$(REFDIR)/step.h5: tests/ref/step_ref.py tests/ref/spos.py $(BUILD)/tests/test_supernet_torch
	@mkdir -p $(@D)
	ASAN_OPTIONS=detect_leaks=0 $(BUILD)/tests/test_supernet_torch --export $(REFDIR)/step_in.h5
	$(PYTHON) $< $(REFDIR)/step_in.h5 $@.tmp && mv $@.tmp $@

test-build: $(LIB) $(BIN) $(TESTS) $(MPI_TESTS)

NPROC := $(shell nproc 2>/dev/null || echo 2)
test: deps-test
	$(MAKE) -j$(NPROC) test-build $(REFS)
	tests/run.sh $(BUILD) $(REFDIR)

# GPU tests: every operator GPU vs CPU, a supernet step, a short training run, NCCL with two GPUs. Only for
# machines with a device (without one they fail with "no CUDA device: ..."); the normal `make test` stays
# CPU-only. tests/gpu/run.sh runs the same binaries where the build's libraries are not installed.
test-gpu-build: $(GPU_TESTS) $(BUILD)/bench/train $(BIN)

test-gpu:
ifneq ($(WITH_CUDA),1)
	@echo "make test-gpu: this build has no CUDA backend (CUDA=$(CUDA), toolkit under '$(CUDA_HOME)': need nvcc, cudnn.h, nccl.h)"; exit 1
endif
	$(MAKE) -j$(NPROC) test-gpu-build
	tests/gpu/run_tests.sh $(BUILD)

asan-test: deps-test
	$(MAKE) -j$(NPROC) BUILD=build-asan SANITIZE=address,undefined CUDA=0 test-build $(REFS)
	HSC_SANITIZED=1 tests/run.sh build-asan $(REFDIR)

bench: deps
	$(MAKE) -j$(NPROC) $(BENCHES) $(BIN)
	bench/run.sh $(BUILD)
	bench/train.sh $(BUILD)
	bench/latency.sh $(BUILD) $(BUILD)/bench/latency
	bench/dispatch.sh $(BUILD)

run: deps all
	@scripts/run.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/hsconas \
	           $(DESTDIR)$(PREFIX)/share/hsconas/configs
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/hsconas
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libhsconas.a
	install -m 644 include/hsconas/*.h $(DESTDIR)$(PREFIX)/include/hsconas/
	$(if $(wildcard configs/*.yaml),install -m 644 configs/*.yaml $(DESTDIR)$(PREFIX)/share/hsconas/configs/)
	install -d $(DESTDIR)$(PREFIX)/share/hsconas/jobs
	install -m 755 jobs/*.sbatch jobs/pipeline.sh $(DESTDIR)$(PREFIX)/share/hsconas/jobs/
	install -m 644 jobs/lib.sh $(DESTDIR)$(PREFIX)/share/hsconas/jobs/

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cu' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "clang-format: all files formatted"

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
