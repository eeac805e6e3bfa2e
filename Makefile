# irisflow developer commands. `make help` lists them.
# Every target installs what it needs first, and installs it only once: stamps in .make/ are
# re-made only when pyproject.toml or the Kafka pom changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make
PYTEST_ARGS ?=

# Debian packages: the broker needs Java and Maven; the browser and metrics tests need these too.
APT_PACKAGES := openjdk-17-jre-headless maven chromium
APT_COMMANDS := java mvn chromium
# Prometheus: the observability tests run promtool and a real Prometheus server.
APT_PACKAGES += prometheus
APT_COMMANDS += promtool
# PostgreSQL: the audit tests run on a throwaway server (initdb + pg_ctl, tests/postgres.py).
# Debian keeps initdb in /usr/lib/postgresql/<version>/bin, off PATH; pg_ctlcluster comes with it.
APT_PACKAGES += postgresql
APT_COMMANDS += pg_ctlcluster

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration lint format bench clean mutation

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: $(STAMPS)/venv $(STAMPS)/kafka ## venv with irisflow and dev tools, Kafka jars in the cache

run: install ## run the whole system locally (broker, first model, worker, gateway); Ctrl-C stops
	$(BIN)/irisflow up

test: install ## run the whole test suite (unit, functional, integration, e2e on a real broker), with line coverage of every process it starts
	$(BIN)/pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

test-unit: install ## only the fast tests (no broker)
	$(BIN)/pytest tests/unit tests/functional $(PYTEST_ARGS)

mutation: install ## mutation testing (mutmut) of the decision modules against the fast tests: score per module, survivors (docs/testing.md)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_report.py

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## remove the venv, stamps and local state (the Kafka jar cache is kept)
	rm -rf $(VENV) $(STAMPS) .irisflow .pytest_cache .mypy_cache .ruff_cache

# Re-check the Debian packages when this file (their list) changes.
$(STAMPS)/system: Makefile

$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml | $(STAMPS)/system
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

$(STAMPS)/kafka: irisflow/local/broker/pom.xml $(STAMPS)/venv
	$(BIN)/irisflow kafka install
	@touch $@
