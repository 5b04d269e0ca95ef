# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Both create .venv and install exactly requirements/lock.txt (hash-checked, torch 2.13.0 CPU
# build included), then the project itself (editable, no dependency resolution).
# `make lock` re-resolves the lock on purpose (new dependency); `make lock-upgrade` moves every pin.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PIP_VERSION := 26.3

.PHONY: demo test lint install lock lock-upgrade clean

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==$(PIP_VERSION)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/autoglm demo

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

lock:
	bash scripts/lock.sh

lock-upgrade:
	LOCK_UPGRADE=1 bash scripts/lock.sh

clean:
	rm -rf $(VENV) .autoglm .pytest_cache .mypy_cache .ruff_cache
