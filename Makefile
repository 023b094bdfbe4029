# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run serve test lint format install migrate clean bench bench-refresh bench-hkp bench-scale bench-outage bench-connections

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	@if [ -n "$$WITH_LDAP" ]; then $(BIN)/pip install -q -r requirements-ldap.txt; fi
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable

# Serves http://127.0.0.1:$(PORT) (default 8000) on the embedded default
# (SQLite, tasks in-process, mail as files in var/mail/) unless DATABASE_URL,
# EMAIL_URL, REDIS_URL, SITE_URL or PORT say otherwise.
run: migrate
	$(BIN)/python manage.py runkeyserver

# The production stack on this machine: nginx (deploy/nginx) in front of
# gunicorn, on PostgreSQL (DATABASE_URL, default the local server's database
# "keyserver"). Needs Debian's nginx-light and libnginx-mod-http-lua.
serve: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/keyserver
serve: $(STAMP)
	$(BIN)/python tools/ensure_database.py
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Style, types, the layers (import-linter contracts in pyproject.toml) and the
# size limits (no product module above 400 lines, no function above complexity 15).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/python tools/check_limits.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-refresh: $(STAMP)
	$(BIN)/python bench/refresh_tick.py

# HKP lookups side by side with SKS (needs Debian's sks, wrk, nginx-light and
# libnginx-mod-http-lua): the table goes to var/bench/vs-sks.md.
bench-hkp: $(STAMP)
	$(BIN)/python bench/vs_sks.py

# Lookup latency at 10,000 and 1,000,000 synthetic keys, with the query plans.
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# CONN_MAX_AGE=0 against persistent connections: requests/s and CPU per
# lookup of gunicorn and of PostgreSQL (docs/operations.md).
bench-connections: $(STAMP)
	$(BIN)/python bench/connections.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# PostgreSQL, Redis and the worker restarted under load on a stack of its own:
# failed requests, recovery time, mails lost (see docs/operations.md).
bench-outage: $(STAMP)
	$(BIN)/python bench/outage.py
