# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both bootstrap .venv once and reuse it while pyproject.toml is unchanged.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pmkit-installed
PORT ?= 5006
ADDRESS ?= 127.0.0.1
# A users file (pmkit users add FILE LOGIN) turns logins on; needed off loopback.
USERS ?=

.PHONY: run test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pmkit needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pmkit serve --port $(PORT) --address $(ADDRESS) $(if $(USERS),--users $(USERS))

test: lint
	$(PY) -m pytest --nbval --nbval-sanitize-with notebooks/sanitize.cfg $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pmkit widgets tests benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
