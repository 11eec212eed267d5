# eChat Gateway — developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration e2e bench fuzz services browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gatewayd demo

# Everything CI runs: lint, types, unit, integration (PostgreSQL, Mosquitto, simulator) and browser tests.
test: $(STAMP) services browser
	$(BIN)/ruff check smpp routing gatewayd panel plugins simulator tests bench
	$(BIN)/mypy
	mkdir -p var artifacts
	$(BIN)/pytest --cov --cov-report=term --cov-report=json:var/coverage.json tests
	$(BIN)/python tools/check_coverage.py var/coverage.json smpp=95

lint: $(STAMP)
	$(BIN)/ruff check smpp routing gatewayd panel plugins simulator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP) services
	$(BIN)/pytest tests/integration

e2e: $(STAMP) browser
	$(BIN)/pytest tests/e2e

# Start PostgreSQL and Mosquitto when they are not already running (idempotent).
services:
	bash tools/services.sh

# Debian's chromium for the Playwright browser tests (`playwright install` cannot download here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_codec.py --iterations 1000000

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
