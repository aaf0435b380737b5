# Quickstart targets. Django 6 needs Python 3.12+; PYTHON overrides the interpreter we look for.
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3 \
	$$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -r); do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

DEV_STAMP := $(VENV)/.requirements-dev-stamp

.PHONY: run test lint serve bench fuzz venv dev-venv migrate

# venv: the runtime list (make run, make serve); dev-venv adds the test and lint tools.
venv: $(STAMP)

dev-venv: $(DEV_STAMP)

# The client package (bt, bugtracker-mcp) goes in editable: its code changes need no reinstall,
# its pinned dependencies (client/pyproject.toml) do.
$(STAMP): requirements.txt client/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (Django 6); set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ./client
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(DEV_STAMP)

migrate: venv
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput

run: migrate
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production serving: gunicorn.conf.py reads HOST, PORT, WEB_CONCURRENCY, GUNICORN_THREADS.
# The key is checked first, in one line, before anything touches the database.
serve: venv
	$(if $(SECRET_KEY)$(filter 1 true True on yes,$(DEBUG)),,$(error make serve needs SECRET_KEY (DEBUG is off), e.g. SECRET_KEY=$$(openssl rand -hex 32) make serve))
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) $(BIN)/gunicorn --config gunicorn.conf.py

# Every benchmark in benchmarks/ at a size that fits in ten minutes, one table (PostgreSQL).
bench: dev-venv
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

# schemathesis against a live gunicorn (DEBUG off) on DATABASE_URL (default: a fresh SQLite
# file), as an agent and as an admin; FUZZ_MAX_EXAMPLES, FUZZ_SEED, FUZZ_ARGS tune it.
fuzz: dev-venv
	$(BIN)/python scripts/fuzz.py $(FUZZ_ARGS)

test: dev-venv
	SECRET_KEY=$${SECRET_KEY:-test-secret-key} $(BIN)/python manage.py collectstatic --noinput -v0
	SECRET_KEY=$${SECRET_KEY:-test-secret-key} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
