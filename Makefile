# The commands the README shows. Each works from a clean clone; see README.md.
#   make run    serve the app on $PORT (embedded Postgres when DATABASE_URL is unset)
#   make test   the whole suite (pytest and pgTAP) on real Postgres and Redis
#   make db     stand-in (unless Supabase), migrations and seed to $DATABASE_URL
#   make lint   ruff and sqlfluff
#   make bench  the benchmark (bench/)
#   make load   the load scenarios (bench/load/), checked against the stored baseline
#   make clean  stop the embedded Postgres, delete local data and caches

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
VELRO := $(BIN)/velro
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_CONCURRENCY ?= 2
# pytest processes in `make test` (pytest-xdist); every run's databases carry its pid
TEST_PROCESSES ?= auto
SQL_DIRS := supabase sql

.PHONY: run test db lint bench load load-generator clean distclean

# The virtualenv, reinstalled when pyproject.toml changes. `local` is the embedded Postgres,
# a dev tool that production installs do not need.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[local,bench]'
	touch $@ $(VENV)/.installed

# The pinned Supabase CLI (package.json), for the migration tests.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# With no DATABASE_URL, `velro db url` starts the embedded Postgres and prints its URL.
# The app defaults to production and refuses to start without its secrets: this is local
# development, so it says so (APP_ENV=development allows the well-known local JWT secret).
# Web workers and the job worker count into one Prometheus directory, emptied at each start.
run: $(VENV)/.installed
	url="$${DATABASE_URL:-$$($(VELRO) db url)}"; \
	DATABASE_URL="$$url" $(VELRO) db apply --seed; \
	metrics="$${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/.metrics}"; \
	rm -rf "$$metrics" && mkdir -p "$$metrics"; \
	PROMETHEUS_MULTIPROC_DIR="$$metrics" \
	APP_ENV="$${APP_ENV:-development}" HOST=$(HOST) DATABASE_URL="$$url" \
		PUBLIC_URL="$${PUBLIC_URL:-http://localhost:$(PORT)}" \
		WEB_CONCURRENCY=$(WEB_CONCURRENCY) PATH="$(CURDIR)/$(BIN):$$PATH" \
		exec $(BIN)/honcho start --procfile Procfile --port $(PORT)

test: $(VENV)/.installed-dev node_modules/.package-lock.json
	.ci/ensure-pgtap
	.ci/ensure-chromium
	.ci/ensure-plpgsql-check
	$(PY) -m pytest -n $(TEST_PROCESSES)

db: $(VENV)/.installed
	$(VELRO) db apply --seed

# All three run; the target fails if any of them found something.
lint: $(VENV)/.installed-dev
	status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/sqlfluff lint --processes 0 $(SQL_DIRS) || status=1; \
	exit $$status

# First, before minutes of loading: the HTTP scenarios' load generator (installed as root).
load-generator:
	.ci/ensure-wrk

bench: load-generator $(VENV)/.installed-bench
	$(PY) -m bench

# LOAD_ARGS adds options, e.g. LOAD_ARGS="--scenario journey"
LOAD_ARGS ?=
load: $(VENV)/.installed-bench
	$(PY) -m bench.load --compare bench/load/baseline.json $(LOAD_ARGS)

clean:
	if [ -x $(VELRO) ]; then $(VELRO) db stop; fi
	rm -rf .pgdata .metrics .pytest_cache .ruff_cache velro_backend.egg-info test-artifacts
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
		-name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
