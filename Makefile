# Everything a fresh machine needs: `make run` (set up, index, serve) and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

# llama-cpp-python compiles llama.cpp from source. llama.cpp's default is a native build for the
# CPU it compiles on; on an Intel Xeon with AMX that enables AMX kernels which segfault
# (llama.cpp issue #20824), and a native build from one machine may not run on another. So build
# for any x86-64 CPU with AVX2 (Intel or AMD), with AMX and AVX-512 off.
LLAMA_VERSION    := $(shell sed -n 's/^llama-cpp-python==\([^ ;]*\).*/\1/p' requirements.lock)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
                    -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
                    -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# pip caches built wheels by version, not by build flags, so a wheel built natively elsewhere could
# be reused silently. Ours live in a folder named after the version and a hash of the flags.
LLAMA_TAG        := $(LLAMA_VERSION)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
WHEEL_CACHE      ?= $(HOME)/.cache/rag-papers/llama-cpp-python/$(LLAMA_TAG)

.PHONY: install run index test test-fast stress lint bench bench-scale chromium clean lock llama-wheel

$(STAMP): pyproject.toml requirements.lock Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel. A bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(MAKE) --no-print-directory llama-wheel
	# Our portable wheel only, never one from pip's cache or an index.
	$(BIN)/pip install --quiet --force-reinstall --no-deps --no-index --find-links $(WHEEL_CACHE) \
		llama-cpp-python==$(LLAMA_VERSION)
	# Every package at the version the tests passed with (requirements.lock, `make lock`).
	$(BIN)/pip install --quiet --constraint requirements.lock --find-links $(WHEEL_CACHE) -e '.[dev]'
	touch $@

# Compiles llama.cpp (about 10 minutes on 2 cores) once per version and flag set.
llama-wheel: $(WHEEL_CACHE)/.complete

$(WHEEL_CACHE)/.complete:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "Compiling llama-cpp-python $(LLAMA_VERSION) for any x86-64 CPU with AVX2 (about 10 min on 2 cores)..."
	rm -rf $(WHEEL_CACHE).tmp && mkdir -p $(WHEEL_CACHE).tmp
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
		--wheel-dir $(WHEEL_CACHE).tmp llama-cpp-python==$(LLAMA_VERSION)
	rm -rf $(WHEEL_CACHE) && mv $(WHEEL_CACHE).tmp $(WHEEL_CACHE)
	touch $@

# Re-pin every dependency (transitive included) to the newest that fits pyproject.toml, with
# pip-tools. torch stays out: it is installed first, from the CPU wheel, by version.
lock: $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	echo "torch==2.13.0" | $(BIN)/pip-compile --quiet --upgrade --extra dev --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		--unsafe-package torch --output-file requirements.lock pyproject.toml -

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(STAMP)

# Browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

index: install
	$(BIN)/rag index

run: install index
	$(BIN)/python app.py

test: install chromium
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# The reliability tests at full size (tests/stress/): figures in tests/stress/results/; then
# `$(BIN)/python -m tests.stress.table --write` puts them in RELIABILITY.md.
stress: install
	$(BIN)/python -m tests.stress

lint: install
	$(BIN)/ruff check rag tests app.py bench
	$(BIN)/mypy

# Everything: about two hours on 2 cores (the scale runs are most of it).
bench: install
	$(BIN)/python bench/run.py
	$(MAKE) --no-print-directory bench-scale

# Libraries of 1k to 250k chunks, embedded store, then a `chroma run` server (bench/scale.py).
bench-scale: install
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/scale.py --server --sizes 33000 250000 --real-up-to 0

clean:
	rm -rf .rag .pytest_cache
