# Stanch — two commands: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test lint typecheck pytest bench chaos sysdeps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

# System packages the provider tests need (OpenLDAP's slapd). Installed only when missing.
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

chaos: install
	STANCH_CHAOS_SIZE=full $(BIN)/pytest -q tests/resilience

clean:
	rm -rf $(VENV) .stanch .pytest_cache .mypy_cache .ruff_cache
