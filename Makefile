# The one entry point for people, the README and CI.
#   make install   .venv with Python 3.11 and the project installed editable, with dev tools
#   make services  Kafka and MinIO installed into WEHUB_CACHE_DIR (first run only)
#   make test      install + services + the whole test suite
#   make lint      ruff and mypy
#   make bench     the benchmarks
#   make up        the whole pipeline on this machine (`wehub up`)

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Per-test limit, so one hung test fails alone instead of stalling the whole run.
PYTEST_TIMEOUT_S ?= 900

.PHONY: install services test lint bench up clean

install: $(VENV)/.installed

# Reinstalled only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

services: install
	$(BIN)/wehub services install

test: install services
	$(BIN)/python -m pytest --timeout=$(PYTEST_TIMEOUT_S) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install services
	$(BIN)/python -m bench

up: install services
	$(BIN)/wehub up

clean:
	rm -rf $(VENV)
