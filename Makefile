# SAM 3 on Apache TVM. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUNDLES := bundles
OUT := out
CHECKPOINT ?=
PYTEST_ARGS ?=

BUILD := build
CLI := $(BUILD)/sam3
JOBS ?= $(shell nproc)

.PHONY: python-package all setup cpp fuzz-build tiny-bundle demo test fuzz test-sanitize verify-full verify-video-full bench inspect clean help

all: test

help:
	@echo "make demo         build the tiny bundle (or full with CHECKPOINT=path/sam3.pt) and segment a sample image"
	@echo "make test         set up and run the test suite"
	@echo "make verify-full  compile and verify the full-size model (random weights; long)"
	@echo "make verify-video-full  full-size tracker modules and a 5-frame tracking run vs the official tracker (long)"
	@echo "make bench        full-size benchmark, C++ runtime vs PyTorch (writes docs/performance.md; long)"
	@echo "make inspect      op inventory / hard spots of the exported components"
	@echo "make test-sanitize  ASan+UBSan build: ctest and the CLI end-to-end tests; TSan: the threads stress test"
	@echo "make fuzz         libFuzzer campaign: each harness 1M executions or 10 min (FUZZ_RUNS, FUZZ_SECONDS)"

# Python venv with exact pins (requirements.lock: every package, installed without
# resolution so nothing unpinned, and no Triton, sneaks in).
$(STAMP): compiler/requirements.lock compiler/pyproject.toml scripts/find-python.sh
	bash scripts/apt-deps.sh
	test -x $(PY) || "$$(bash scripts/find-python.sh)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==26.3"
	$(PY) -m pip install -q --no-deps -r compiler/requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e compiler
	touch $@

setup: $(STAMP)

# C++ runtime, CLI and GoogleTest suite (incremental; links the TVM runtime of the venv's wheel)
cpp: $(STAMP)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSAM3_WITH_TVM=ON -DSAM3_BUILD_TESTS=ON -DSAM3_PYTHON=$(abspath $(PY)) > $(BUILD).log
	cmake --build $(BUILD) -j $(JOBS)

# The Python package sam3_runtime (python/): nanobind + scikit-build-core, built into the
# venv from this tree (CMake build kept in build-python/, so a rebuild is incremental)
python-package: $(STAMP)
	$(PY) -m pip install -q --no-deps --no-build-isolation ./python

# libFuzzer harnesses (tests/fuzz/): clang, ASan + UBSan over the TVM-free core
FUZZ_BUILD := build-fuzz
FUZZ_TARGETS := image tokenizer manifest safetensors rle frame_folder video
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 600
fuzz-build: $(STAMP)
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAM3_FUZZ=ON \
	  -DSAM3_WITH_TVM=OFF -DSAM3_BUILD_TESTS=OFF > $(FUZZ_BUILD).log
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# The campaign: new inputs collect in out/fuzz/<target>/corpus, a crash stops that target
# and leaves out/fuzz/<target>/crash-* (keep it in tests/fuzz/corpus/<target> once fixed)
fuzz: fuzz-build
	@mkdir -p $(OUT)/fuzz; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz_$$t: $(FUZZ_RUNS) runs or $(FUZZ_SECONDS) s"; \
	  tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t tests/fuzz/corpus/$$t $(OUT)/fuzz/$$t \
	    $(FUZZ_SECONDS) $(FUZZ_RUNS) > $(OUT)/fuzz/$$t.log 2>&1 || { tail -40 $(OUT)/fuzz/$$t.log; exit 1; }; \
	  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" $(OUT)/fuzz/$$t.log; \
	done

# the tiny bundle, recompiled when missing or written by another compiler / schema
tiny-bundle: $(STAMP)
	@$(call BUNDLE_OK,$(BUNDLES)/tiny) || $(VENV)/bin/sam3-tvm compile --config tiny --out $(BUNDLES)/tiny

demo: cpp
ifeq ($(CHECKPOINT),)
	$(MAKE) tiny-bundle
	$(CLI) segment --bundle $(BUNDLES)/tiny --image assets/sample.png --text "a red square" --threshold 0.0 --out $(OUT)/demo/text --verbose
	$(CLI) segment --bundle $(BUNDLES)/tiny --image assets/sample.png --point 160,200 --out $(OUT)/demo/point --verbose
	@echo "random tiny weights: the masks are not meaningful; see $(OUT)/demo/*/overlay.png"
else
	$(VENV)/bin/sam3-tvm compile --config full --checkpoint "$(CHECKPOINT)" --out $(BUNDLES)/full-checkpoint
	$(CLI) segment --bundle $(BUNDLES)/full-checkpoint --image assets/sample.png --text "a red square" --out $(OUT)/demo/text --verbose
	$(CLI) segment --bundle $(BUNDLES)/full-checkpoint --image assets/sample.png --point 160,200 --out $(OUT)/demo/point --verbose
endif

test: cpp fuzz-build python-package
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	ctest --test-dir $(FUZZ_BUILD) --output-on-failure -j $(JOBS)
	SAM3_CLI=$(abspath $(CLI)) $(PY) -m pytest tests/python $(PYTEST_ARGS)

# Sanitizers: the library, CLI and C++ tests built with ASan + UBSan, then ctest and the
# end-to-end tests that drive the C++ binaries on the tiny bundle; then a TSan build of
# the CLI and the threads stress test. Every report is a failure (reports are written
# to out/sanitize/ too, so one cannot hide behind an expected non-zero exit). The TVM
# runtime and the bundle libraries are prebuilt, so they are not instrumented
# (tests/sanitize/tsan.supp says what that costs TSan).
# install_find_package is left out: an uninstrumented consumer cannot load an ASan libsam3.
SAN_DIR := $(abspath $(OUT))/sanitize
SAN_PYTESTS := test_cli_cpp.py test_cli_parity.py test_video.py test_limits.py test_outputs_disk.py \
  test_threads.py test_concept_steps.py test_concept_tracking.py test_serve.py
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:exitcode=86:log_path=$(SAN_DIR)/asan \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87:log_path=$(SAN_DIR)/ubsan \
  TSAN_OPTIONS=halt_on_error=1:history_size=4:exitcode=88:suppressions=$(abspath tests/sanitize/tsan.supp):log_path=$(SAN_DIR)/tsan \
  SAM3_TEST_TINY_BUNDLE=$(abspath $(BUNDLES))/tiny SAM3_VM_ALLOCATOR=naive
# SAM3_VM_ALLOCATOR=naive: tensors are malloc'ed and freed, not recycled through TVM's
# uninstrumented pool (runtime/src/component.cpp says why that matters to both sanitizers)
test-sanitize: tiny-bundle
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAM3_WITH_TVM=ON -DSAM3_BUILD_TESTS=ON \
	  -DSAM3_PYTHON=$(abspath $(PY)) -DSAM3_SANITIZE=address,undefined > build-asan.log
	cmake --build build-asan -j $(JOBS)
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAM3_WITH_TVM=ON -DSAM3_BUILD_TESTS=ON \
	  -DSAM3_PYTHON=$(abspath $(PY)) -DSAM3_SANITIZE=thread > build-tsan.log
	cmake --build build-tsan -j $(JOBS) --target sam3_cli stress_threads
	rm -rf $(SAN_DIR) $(SAN_DIR).failed && mkdir -p $(SAN_DIR)
	# each step runs even when one before it failed, and the reports are printed at the end
	# (a binary stopped by a sanitizer prints nothing but its exit code: the report is a file)
	$(SAN_ENV) ctest --test-dir build-asan --output-on-failure -j $(JOBS) -E install_find_package || touch $(SAN_DIR).failed
	$(SAN_ENV) SAM3_CLI=$(abspath build-asan/sam3) $(PY) -m pytest $(addprefix tests/python/,$(SAN_PYTESTS)) $(PYTEST_ARGS) || touch $(SAN_DIR).failed
	# TVM's worker pool is prebuilt and its synchronisation invisible to TSan: kernels run on
	# the calling threads (TVM_NUM_THREADS=1), so every thread TSan sees is one of ours.
	# SAM3_CONCURRENT_RUNS=4: as many runs at once as the stress test has threads, whatever
	# the number of cores (2 here; CI's machine ran more at once and showed a report)
	$(SAN_ENV) TVM_NUM_THREADS=1 SAM3_CONCURRENT_RUNS=4 SAM3_CLI=$(abspath build-tsan/sam3) $(PY) -m pytest tests/python/test_threads.py $(PYTEST_ARGS) || touch $(SAN_DIR).failed
	@if [ -n "$$(ls -A $(SAN_DIR))" ]; then echo "sanitizer reports in $(SAN_DIR):"; head -120 $(SAN_DIR)/*; exit 1; fi
	@if [ -e $(SAN_DIR).failed ]; then echo "make test-sanitize: a step failed (above)"; exit 1; fi
	@echo "sanitizers: no reports"

inspect: $(STAMP)
	$(VENV)/bin/sam3-tvm inspect --config tiny

# Whether bundle $(1) was written by this compiler (missing, or another schema or TVM:
# the targets below recompile it)
BUNDLE_OK = $(PY) -c "from sam3_tvm.bundle.writer import load_manifest; load_manifest('$(1)')" 2>/dev/null

# Full-size compile + parity (random weights). Peak memory via GNU time.
verify-full: $(STAMP)
	mkdir -p $(OUT)/verify-full
	/usr/bin/time -v -o $(OUT)/verify-full/compile.time $(VENV)/bin/sam3-tvm compile --config full --out $(BUNDLES)/full
	/usr/bin/time -v -o $(OUT)/verify-full/verify.time $(VENV)/bin/sam3-tvm verify --bundle $(BUNDLES)/full --json $(OUT)/verify-full/parity.json
	@grep -E "Elapsed|Maximum resident" $(OUT)/verify-full/*.time

# Full-size video tracker: its modules against the official ones, then 5 frames of the
# synthetic clip tracked by `sam3 track` and by the official tracker (two objects).
verify-video-full: cpp
	mkdir -p $(OUT)/verify-video-full
	$(call BUNDLE_OK,$(BUNDLES)/full) || /usr/bin/time -v -o $(OUT)/verify-video-full/compile.time $(VENV)/bin/sam3-tvm compile --config full --out $(BUNDLES)/full
	/usr/bin/time -v -o $(OUT)/verify-video-full/modules.time $(VENV)/bin/sam3-tvm verify --bundle $(BUNDLES)/full \
		--components interactive_decoder,memory_encoder,memory_attention,mask_downsample --json $(OUT)/verify-video-full/modules.json
	/usr/bin/time -v -o $(OUT)/verify-video-full/track.time $(VENV)/bin/sam3-tvm verify-video --bundle $(BUNDLES)/full \
		--frames 5 --exe $(CLI) --json $(OUT)/verify-video-full/track.json
	@grep -E "Elapsed|Maximum resident" $(OUT)/verify-video-full/*.time

# Full-size benchmark: compiled bundle through the C++ runtime vs PyTorch eager, interleaved.
BENCH_RUNS ?= 3
# On CPUs with AVX512_BF16 the --precision bf16 build runs as a third side (--alt-bundle),
# and PyTorch under its bf16 autocast as a fourth (the bf16 bundle's comparator).
HAS_BF16 := $(shell grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null && echo yes)
BENCH_ALT := $(if $(HAS_BF16),--alt-bundle $(BUNDLES)/full-bf16,)
bench: cpp
	$(call BUNDLE_OK,$(BUNDLES)/full) || $(VENV)/bin/sam3-tvm compile --config full --out $(BUNDLES)/full
	$(if $(HAS_BF16),$(call BUNDLE_OK,$(BUNDLES)/full-bf16) || $(VENV)/bin/sam3-tvm compile --config full --precision bf16 --out $(BUNDLES)/full-bf16)
	$(VENV)/bin/sam3-tvm bench --bundle $(BUNDLES)/full $(BENCH_ALT) --runs $(BENCH_RUNS) --exe $(BUILD)/sam3-bench \
		--json docs/bench/cpu-full.json --plot docs/bench/cpu-full.png --markdown docs/performance.md
	$(VENV)/bin/sam3-tvm bench-video --bundle $(BUNDLES)/full --frames 3 --exe $(CLI) \
		--json docs/bench/video-full.json --markdown docs/performance.md

clean:
	rm -rf $(BUNDLES) $(OUT) $(BUILD) $(BUILD).log $(FUZZ_BUILD) $(FUZZ_BUILD).log build-asan build-asan.log build-tsan build-tsan.log build-python
