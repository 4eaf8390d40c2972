# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run try-it test bench lint clean browser shell-tools

$(VENV)/bin/activate:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e '.[test]'
	@touch $@ $(VENV)/.installed-run

# Debian's Chromium for the Playwright browser tests (never `playwright install`: it downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's zsh and curl for the test that pastes the printed commands into bash and zsh.
shell-tools:
	@missing=; for tool in zsh curl; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] || { \
	  echo "Installing Debian's$$missing for the printed-commands test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; }

# What `make run` prints before it serves: curl lines for the demo (manage.py try_it, the one source of them;
# tests/e2e/test_printed_commands.py pastes them into bash and zsh).
try-it:
	@$(PY) manage.py try_it --hub http://$${CDPHUB_BIND:-127.0.0.1:8000}

# The admin login comes last, after pip's, migrate's and the try-it lines, where it is still on screen when
# the servers start logging.
run: $(VENV)/.installed-run
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py import_workspace cdphub/demo_workspace.json
	$(PY) manage.py collectstatic --noinput -v0
	@$(MAKE) -s --no-print-directory try-it
	@$(PY) manage.py ensure_admin --url http://$${CDPHUB_BIND:-127.0.0.1:8000}/admin/
	@echo
	@export CDPHUB_ALLOW_PRIVATE_URLS=$${CDPHUB_ALLOW_PRIVATE_URLS:-1}; \
	export CDPHUB_SANDBOX_URL=$${CDPHUB_SANDBOX_URL-http://127.0.0.1:9100}; \
	trap 'kill -TERM $$pids 2>/dev/null; wait' INT TERM; \
	$(PY) manage.py sandbox --port 9100 & pids="$$!"; \
	$(PY) manage.py worker & pids="$$pids $$!"; \
	$(VENV)/bin/gunicorn -c cdphub/gunicorn_conf.py & pids="$$pids $$!"; \
	wait -n; kill -TERM $$pids 2>/dev/null; wait

# The suite twice: on the embedded defaults (SQLite + the database broker), then on PostgreSQL + Redis,
# which tests/services.sh installs and starts on loopback when they are not already running. The second run
# leaves out the page-by-page browser tests (their views are view-tested on PostgreSQL too) but walks the
# marketer's whole path, the tests that cannot reach a database (`dbless`, marked by tests/conftest.py:
# vendors against mocked HTTP, the V8 runtime, mappings) and the end-to-end tests whose subject is not the
# database (`one_database`: vendor fakes, SDKs, pasted commands, functions in V8, the input fuzzing and
# schemathesis), to keep the suite under ten minutes on two cores. The fault tests (tests/e2e/test_faults.py:
# killed workers and web processes, a database and a broker restart, the receiver down), the crawls and the NUL
# checks run on both.
test: $(VENV)/.installed-test browser shell-tools
	$(VENV)/bin/ruff check .
	@echo "== suite on SQLite with the database broker =="
	$(VENV)/bin/pytest
	@echo "== suite on PostgreSQL with the Redis broker (browser tests: the walkthrough only; see above) =="
	bash tests/services.sh $(VENV)/bin/pytest -m "(not browser or walkthrough) and not dbless and not one_database"

# Ingest, delivery, SFMC and Marketo against the sandbox, the admin pages and the management API at 1M events,
# functions, Event Delivery over 7 and 14 days at 10M deliveries, ingest while the purge deletes 1M rows, the long
# fault run, and ingest + delivery on PostgreSQL + Redis with 1 and 2 workers (these two start PostgreSQL and Redis
# through tests/services.sh) (bench/README.md); all always run, and the exit status is the worst of them
# (0 measured, 1 the hub misbehaved, 2 a benchmark could not run).
bench: $(VENV)/.installed-test
	@worst=0; \
	for bench in ingest deliver vendors admin api functions rollups purge faults scale; do \
	  $(PY) bench/$$bench.py; code=$$?; [ $$code -gt $$worst ] && worst=$$code; \
	done; \
	exit $$worst

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var
