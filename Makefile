# On a fresh clone: `make demo` runs the pipeline on the shipped samples, `make test` runs
# every test. Both create .venv and install the pinned dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint format install clean bench check-infra

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Azurite (local Azure Storage) for the blob-store tests, pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: $(STAMP)
	rm -rf out/demo
	$(BIN)/phiwatch replay samples/logs --out out/demo
	$(BIN)/phiwatch archive verify out/demo/archive

test: $(STAMP) $(NODE_STAMP) check-infra
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# Checkov (static IaC checks) on infra/, offline. Its own venv: checkov pins many packages that
# would clash with the app's. Fails on any failed check AND on any file it cannot parse (a
# skipped file would pass silently otherwise). Skips are inline `#checkov:skip=` comments.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

check-infra: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --skip-download --compact \
		--quiet --hard-fail-on-parsing-errors

# Benchmarks on one core (bench/README: measures and targets); writes bench/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) out .pytest_cache .ruff_cache *.egg-info
