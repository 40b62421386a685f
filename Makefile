# impactwatch: `make demo` sets up and runs the demo; `make test` sets up and runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
AIRFLOW_VERSION ?= 3.3.2
VENV := .venv
AF_VENV := .venv-airflow
STAMPS := .stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: real Prometheus/Alertmanager for tests, PostgreSQL for a throwaway cluster
# where none runs, venv support for the interpreter.
APT_PACKAGES := prometheus prometheus-alertmanager postgresql python3-venv
QUIET_PIP := grep -v -e '^WARNING: Location' -e 'is ignored: it is neither' || true

.PHONY: help setup demo test lint format clean

help:
	@echo "make demo   set up, then run the whole stack on loopback and a five-minute scripted incident"
	@echo "make test   set up, then run lint and the whole test suite"

$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@missing=""; \
	for bin in prometheus promtool amtool prometheus-alertmanager; do command -v $$bin >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing=1; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml $(STAMPS)/apt
	@echo "setting up $(VENV) (impactwatch + dev tools)"
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | $(QUIET_PIP)
	@$(VENV)/bin/python -c 'import impactwatch.collector.state.store'
	@touch $@

# Airflow lives in its own venv, as in production: the collector never imports it, and the
# plugin is installed into Airflow's environment without impactwatch's dependencies.
$(STAMPS)/airflow: pyproject.toml $(STAMPS)/apt
	@echo "setting up $(AF_VENV) (apache-airflow $(AIRFLOW_VERSION))"
	@[ -x $(AF_VENV)/bin/python ] || $(PYTHON) -m venv $(AF_VENV)
	@$(AF_VENV)/bin/pip install -q --disable-pip-version-check "apache-airflow==$(AIRFLOW_VERSION)" psycopg2-binary asyncpg 2>&1 | $(QUIET_PIP)
	@$(AF_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | $(QUIET_PIP)
	@$(AF_VENV)/bin/airflow version >/dev/null
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/airflow

demo: setup
	$(VENV)/bin/impactwatch demo $(DEMO_ARGS)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMPS)/venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(STAMPS) .demo .pytest_cache
