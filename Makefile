# Quick start: `make demo` or `make test` from a fresh clone; each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-test demo test test-slow lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[export]"

setup-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

demo: setup
	$(BIN)/tinyasc demo

test: setup-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: setup-test
	$(BIN)/python -m pytest -q -m slow

lint: setup-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
