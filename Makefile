# The README's commands: `make setup`, `make try`, `make train` and `make test` (and `make gpu-check` on a
# machine with a GPU). Each creates .venv if it is missing; GPU=1 installs TensorFlow's CUDA build
# (requirements-gpu.txt) instead of the CPU one.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
GPU ?=
REQUIREMENTS := $(if $(GPU),requirements-gpu.txt,requirements.txt)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup try train test test-fast gpu-check clean-venv

$(VENV)/.installed: requirements.txt requirements-gpu.txt requirements-common.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

setup: $(VENV)/.installed
	@echo "ready: run 'source .venv/bin/activate' once per shell, then the README's python commands work as written"

try: $(VENV)/.installed
	$(PY) bagan_train.py --epochs 3 --ae-epochs 3 $(ARGS)

train: $(VENV)/.installed
	$(PY) bagan_train.py $(ARGS)

# `make test` runs a pytest-xdist worker per core (at most 4), a test file per worker at a time, so
# that a file's fixtures are made once, the longest files first (LONGEST_FIRST in tests/conftest.py);
# TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
test: $(VENV)/.installed
	$(PY) -m pytest -q --timeout=900 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# The quick loop while changing code: the pure numerics, the data loaders, the configuration and the
# networks (no training run, no judge); `make test` stays what CI runs.
FAST_TESTS := tests/test_layout.py tests/test_trust.py tests/test_compare.py tests/test_datasets.py tests/test_networks.py tests/test_augment_ema.py tests/test_setup.py
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q --timeout=300 -m "not slow" $(FAST_TESTS)

gpu-check: $(VENV)/.installed
	$(PY) benchmarks/gpu_check.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
