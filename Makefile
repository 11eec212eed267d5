# eChat Gateway — developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format typecheck unit integration e2e chaos bench soak fuzz services browser promtool clean lock messages

# Every dependency at the version and hash in the lock file (pip-tools: a plain requirements file that
# pip itself installs with --require-hashes, no other tool needed on a fresh machine); then the project.
$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Recompute both lock files after changing the dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -o requirements/runtime.lock pyproject.toml
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -o requirements/dev.lock pyproject.toml

# The translation catalogues (docs/I18N.md): extract each domain's English texts into its .pot, then merge
# them into every language's .po (new texts empty, changed ones fuzzy); a .pot whose texts did not change
# is left alone. A new language: see docs/I18N.md.
I18N_DOMAINS := panel:panel plugins/auth:auth plugins/home:home plugins/desk:desk plugins/accounts:accounts \
	plugins/clients:clients plugins/conversations:conversations plugins/services:services plugins/audit:audit \
	plugins/monitor:monitor plugins/gallery:gallery plugins/reports:reports plugins/campaigns:campaigns \
	plugins/apikeys:apikeys plugins/webhooks:webhooks gatewayd:gatewayd simulator:simulator
messages: $(STAMP)
	@set -e; for pair in $(I18N_DOMAINS); do dir=$${pair%%:*}; domain=$${pair##*:}; \
		pot=$$dir/locale/$$domain.pot; mkdir -p $$dir/locale; \
		$(BIN)/pybabel -q extract -F babel.cfg --add-comments=TRANSLATORS: --sort-by-file \
			-k translate:2 -k translate_plural:2,3 -k NP_:1c,2 --project="eChat Gateway" \
			--copyright-holder="eChat Gateway" -o $$pot.new $$dir; \
		if [ -f $$pot ] && [ "$$(grep -v '^"POT-Creation-Date' $$pot)" = "$$(grep -v '^"POT-Creation-Date' $$pot.new)" ]; \
		then rm $$pot.new; \
		else mv $$pot.new $$pot; $(BIN)/pybabel -q update --previous -i $$pot -d $$dir/locale -D $$domain; fi; \
	done

demo: $(STAMP)
	$(BIN)/gatewayd demo

# Everything CI runs: lint, types, unit, integration (PostgreSQL, Mosquitto, simulator) and browser tests.
test: $(STAMP) services browser promtool
	$(BIN)/ruff check settingsfile translations smpp routing gatewayd panel plugins simulator echat tests bench
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	mkdir -p var artifacts
	$(BIN)/pytest --cov --cov-report=term --cov-report=json:var/coverage.json tests
	$(BIN)/python tools/check_coverage.py var/coverage.json smpp=95

lint: $(STAMP)
	$(BIN)/ruff check settingsfile translations smpp routing gatewayd panel plugins simulator echat tests bench
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix settingsfile translations smpp routing gatewayd panel plugins simulator echat tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) promtool
	$(BIN)/pytest tests/unit

integration: $(STAMP) services
	$(BIN)/pytest tests/integration

e2e: $(STAMP) browser
	$(BIN)/pytest tests/e2e

# The chaos test for five minutes (the short one runs in `make test`): private PostgreSQL and Mosquitto,
# the simulator, three daemons, two panels, faults at random; prints its seed and the ledger's table.
# CHAOS_SEED=N replays a run's faults; CHAOS_DURATION=S changes the seconds of traffic.
chaos: $(STAMP)
	CHAOS_DURATION=$${CHAOS_DURATION:-300} $(BIN)/pytest tests/chaos -q -s

# Start PostgreSQL and Mosquitto when they are not already running (idempotent).
services:
	bash tools/services.sh

# Debian's chromium for the Playwright browser tests (`playwright install` cannot download here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Debian's prometheus package for promtool, which checks and unit-tests dashboards/alerts.yml
# (tests/unit/test_alert_rules.py). The package's own Prometheus server is not wanted: stopped and disabled
# where systemd started it.
promtool:
	@command -v promtool >/dev/null || (apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
		&& (systemctl disable --now prometheus >/dev/null 2>&1 || true))

# Every benchmark; bench/_*.py are their helpers, not benchmarks, and the hour-long soak runs on its own.
bench: $(STAMP)
	for script in bench/[!_]*.py; do [ $$script = bench/soak.py ] || $(BIN)/python $$script || exit 1; done

# An hour of MO, MT and receipt traffic through two daemons and a panel with 50 desk streams: the memory
# of every process each minute (bench/soak.py).
soak: $(STAMP) services
	$(BIN)/python bench/soak.py

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_codec.py --iterations 1000000

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
