# The README's two commands: `make train` and `make test`. Both create .venv if it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: train test clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

train: $(VENV)/.installed
	$(PY) bagan_train.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q --timeout=900 tests

clean-venv:
	rm -rf $(VENV)
