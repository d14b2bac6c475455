# Stanch — two commands: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
# What the lock resolves: the project's dependencies with every extra, and the build backend.
LOCK_INPUTS := pyproject.toml requirements/build.in
LOCK_ARGS := --extra dev --extra bench --generate-hashes --universal --python-version 3.11 \
	--quiet -o $(LOCK)

.PHONY: install up test lint typecheck pytest bench chaos fuzz openapi sysdeps clean lock upgrade

# Installs exactly the lock (every file checked against its hash), then the project itself
# without touching the lock's pins, and removes anything the lock does not list.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/lockcheck.py --prune
	@touch $(STAMP)

install: $(STAMP)

# Re-resolve after changing pyproject.toml: pins already in the lock are kept where they
# still fit. `make upgrade` moves every pin to the newest release, on purpose.
lock: install
	$(BIN)/uv pip compile $(LOCK_INPUTS) $(LOCK_ARGS)

upgrade: install
	$(BIN)/uv pip compile $(LOCK_INPUTS) $(LOCK_ARGS) --upgrade

# System packages the tests need (PostgreSQL's server binaries, OpenLDAP's slapd), from
# Debian's archive. Installed only when missing; no system service is left running.
sysdeps:
	@bash scripts/sysdeps.sh

up: install
	$(BIN)/stanch up

lint: install
	$(BIN)/ruff check stanch workflows activities tests bench

typecheck: install
	$(BIN)/mypy

pytest: install sysdeps
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.console_bench

chaos: install
	STANCH_CHAOS_SIZE=full $(BIN)/pytest -q tests/resilience

# schemathesis with thousands of cases per operation (make test runs a dozen): every check,
# every phase, operator token and anonymous. FUZZ_EXAMPLES / FUZZ_SEED to change the run.
FUZZ_EXAMPLES ?= 2000
FUZZ_SEED ?= 22
fuzz: install
	STANCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) STANCH_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest -q -s tests/contract/test_schemathesis.py

# Regenerate docs/openapi.json from the app (a test fails when it is stale).
openapi: install
	$(BIN)/python -m stanch.api.contract

clean:
	rm -rf $(VENV) .stanch .pytest_cache .mypy_cache .ruff_cache
