# On a fresh clone: `make demo` runs the pipeline on the shipped samples, `make test` runs
# every test. Both create .venv and install the pinned dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint format install clean bench check-infra lint-rules test-rules chromium

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Azurite (local Azure Storage) for the blob-store tests and Kusto.Language for rules lint,
# pinned in package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The demo tenant's sanctioned FHIR exporter and public web assets container
# (samples/ground_truth.json, detection_params).
DEMO_PARAMS = --param 'fhir-bulk-export.export_allow=["8c7086b6-fc75-43b2-9437-99432c325393","c370744b-68e2-43ca-a411-bfd7cbb14663"]' \
	--param 'anonymous-phi-read.public_containers=["stphi01/public-assets"]'
# Its workforce roster and patient index (synthetic), and the EHR integrations allow-listed
# for patient privacy (samples/ground_truth.json, privacy).
DEMO_PRIVACY = --roster samples/roster.csv --patients samples/patients.csv.gz \
	--allow-application 386837f8-d705-4e00-ba00-7295664072fd \
	--allow-application 9872a949-75c2-4769-88fa-ba34488921a4

demo: $(STAMP)
	rm -rf out/demo
	$(BIN)/phiwatch replay samples/logs --out out/demo $(DEMO_PARAMS) $(DEMO_PRIVACY)
	$(BIN)/phiwatch archive verify out/demo/archive

test: $(STAMP) $(NODE_STAMP) chromium check-infra lint-rules test-rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

# Headless Chromium from Debian's packages for the HIPAA report's browser test
# (tests/test_report_hipaa_browser.py). Idempotent: installs only when `chromium` is missing
# (the CI runs as root with apt; elsewhere, install it once yourself or the test skips).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The KQL rules in kql/ and hunting queries in kql/hunting/ (kql/README.md): the schema file is
# current, every rule and query passes Sentinel's template constraints and Kusto.Language, and
# its cases.
lint-rules: $(STAMP) $(NODE_STAMP)
	$(BIN)/phiwatch rules schema --check
	$(BIN)/phiwatch rules lint

test-rules: $(STAMP)
	$(BIN)/phiwatch rules test

# Checkov (static IaC checks) on infra/, offline. Its own venv: checkov pins many packages that
# would clash with the app's. Fails on any failed check AND on any file it cannot parse (a
# skipped file would pass silently otherwise). Skips are inline `// checkov:skip=CKV_...: reason`
# comments in the Bicep resource they concern.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30
CHECKOV_JSON := $(CHECKOV_VENV)/results_json.json

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

check-infra: $(CHECKOV_STAMP)
	rm -f $(CHECKOV_JSON)
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --skip-download --compact \
		-o cli -o json --output-file-path console,$(CHECKOV_JSON)
	$(CHECKOV_VENV)/bin/python -c "$$CHECKOV_GATE" $(CHECKOV_JSON)

# checkov exits 0 when it cannot parse a file (the file is simply not checked): fail on
# parsing errors, on failed checks, and on a scan that checked nothing.
define CHECKOV_GATE
import json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
reports = data if isinstance(data, list) else [data]
problems = []
for report in reports:
    summary = report.get("summary", report)
    results = report.get("results", {})
    line = "check-infra: checkov {} passed={} failed={} skipped={} parsing_errors={}".format(
        report.get("check_type", "bicep"), summary.get("passed", 0), summary.get("failed", 0),
        summary.get("skipped", 0), summary.get("parsing_errors", 0))
    print(line)
    if summary.get("parsing_errors", 0):
        files = results.get("parsing_errors") or ["(see 'Error parsing file' above)"]
        problems.append("checkov could not parse: " + ", ".join(map(str, files)))
    if summary.get("failed", 0):
        problems.append("{} failed checks".format(summary["failed"]))
    if not summary.get("passed", 0) + summary.get("skipped", 0):
        problems.append("checkov checked nothing in infra/")
if problems:
    sys.exit("check-infra FAILED: " + "; ".join(problems))
endef
export CHECKOV_GATE

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
