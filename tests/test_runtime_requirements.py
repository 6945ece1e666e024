"""The Function App starts from requirements.txt alone (what Azure installs for it).

A venv holding only requirements.txt (no dev tools, not the project installed) imports
`function_app` from the source tree and indexes its functions, as the Python worker does.
Building the venv reaches the package registry through pip; it is cached under the user's
cache directory, keyed by the hash of requirements.txt, so it is built once per pin set.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"

# Development-only packages: importing function_app must never import them (they are not
# in Azure). duckdb-kql runs rules locally (`rules test`, backtest) and is imported on use.
DEV_ONLY = ("duckdb", "duckdb_kql", "antlr4", "hypothesis", "pytest", "mypy", "ruff")

# Run inside the requirements-only venv: import the app, index it, report what it imported.
PROBE = """
import json, sys
import function_app
names = sorted(fn.get_function_name() for fn in function_app.app.get_functions())
print(json.dumps({"functions": names, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phiwatch" / "requirements-venv"


def requirements_venv(requirements: Path) -> Path:
    """A venv with exactly `requirements` installed; reused while the file is unchanged."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    home = cache_root() / f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"
    python = home / "bin" / "python"
    done = home / ".installed"
    if done.exists():
        return python
    venv.EnvBuilder(clear=True, with_pip=True).create(home)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + ["-r", str(requirements)],
        check=True,
        timeout=1200,
    )
    done.touch()
    return python


def probe(python: Path) -> dict:
    # Only the source tree on the path (as in Azure), none of the dev venv's packages, and
    # no PHIWATCH_ settings: indexing must not need any.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHIWATCH_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [str(python), "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"function_app does not import from requirements.txt:\n{done.stderr}"
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.requirements_venv
@pytest.mark.timeout(1800)
def test_function_app_imports_and_indexes_from_requirements_txt_alone():
    python = requirements_venv(REQUIREMENTS)
    found = probe(python)
    assert found["functions"] == sorted(
        ["normalize", "detect", "deliver_outbox", "run_rules", "health"]
    )
    dev = sorted(set(found["modules"]) & set(DEV_ONLY))
    assert not dev, f"function_app imports development-only packages {dev}"


def test_requirements_venv_holds_no_dev_requirements():
    # The venv is keyed by requirements.txt only, and requirements.txt must not pull in the
    # dev file (the reverse is how requirements-dev.txt is built).
    lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    assert not any(line.strip().startswith("-r") for line in lines)
    pins = [line.split("==")[0].lower() for line in lines if "==" in line]
    for dev in ("duckdb", "duckdb-kql", "hypothesis", "pytest", "mypy", "ruff"):
        assert dev not in pins, f"{dev} is a development tool, not a runtime requirement"
