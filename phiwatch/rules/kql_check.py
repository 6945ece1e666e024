"""KQL syntax and semantics with Microsoft's Kusto.Language, run under Node.

`kql_validate.js` (shipped next to this module) declares the schema file's tables and
analyses every query in one Node process; this module runs it and returns what it found per
query: diagnostics (offsets into the query), the result columns, the tables read and the
join/union/lookup operators used.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phiwatch.config import env_node_modules
from phiwatch.rules.tables import TableSchemas, load_schema

SCRIPT = Path(__file__).with_name("kql_validate.js")
LIBRARY = Path("@kusto") / "language-service-next" / "Kusto.Language.Bridge.min.js"
_REPO = Path(__file__).resolve().parents[2]


class ValidatorUnavailable(RuntimeError):
    """Node or the Kusto.Language package is missing, or the validator crashed."""


@dataclass(frozen=True)
class KqlDiagnostic:
    severity: str  # Error, Warning, Suggestion, Information (Kusto.Language's names)
    code: str  # KSnnn
    start: int  # offset into the query
    length: int
    message: str
    analyzer: bool  # from the analyzer (lint rules) rather than the parser/binder

    @property
    def is_error(self) -> bool:
        return self.severity == "Error"


@dataclass(frozen=True)
class KqlAnalysis:
    diagnostics: list[KqlDiagnostic]
    result_columns: list[tuple[str, str]]  # (name, Kusto type) of the query's result
    tables: list[str]  # tables the query reads
    operators: list[str]  # of join, union, lookup: those the query uses

    @property
    def errors(self) -> list[KqlDiagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[KqlDiagnostic]:
        return [d for d in self.diagnostics if d.severity == "Warning"]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.result_columns]


def find_node_modules() -> Path | None:
    """`PHIWATCH_NODE_MODULES`, else the first node_modules holding Kusto.Language in the
    repository or the working directory and their parents."""
    explicit = env_node_modules()
    if explicit:
        return Path(explicit)
    for start in (_REPO, Path.cwd()):
        for directory in (start, *start.parents):
            if (directory / "node_modules" / LIBRARY).is_file():
                return directory / "node_modules"
    return None


def analyze(
    queries: Mapping[str, str],
    schema: TableSchemas | None = None,
    *,
    node: str = "node",
    timeout: float = 300,
) -> dict[str, KqlAnalysis]:
    """Analyse every query in one Node process. Raises ValidatorUnavailable."""
    if not queries:
        return {}
    executable = shutil.which(node)
    if executable is None:
        raise ValidatorUnavailable(
            f"`{node}` is not on PATH: KQL validation needs Node.js 20+ and, in the "
            "repository, `npm ci` (it installs @kusto/language-service-next)"
        )
    modules = find_node_modules()
    if modules is None or not (modules / LIBRARY).is_file():
        raise ValidatorUnavailable(
            "@kusto/language-service-next is not installed: run `npm ci` in the repository "
            "(or point PHIWATCH_NODE_MODULES at a node_modules that has it)"
        )
    payload = {
        "modules": str(modules),
        "schema": (schema or load_schema()).for_kusto(),
        "queries": dict(queries),
    }
    try:
        done = subprocess.run(  # noqa: S603 - our own script, input on stdin
            [executable, str(SCRIPT)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ValidatorUnavailable(f"the KQL validator took longer than {timeout:.0f}s") from None
    if done.returncode != 0:
        raise ValidatorUnavailable(f"the KQL validator failed: {done.stderr.strip()[-2000:]}")
    raw = json.loads(done.stdout)
    return {
        key: KqlAnalysis(
            diagnostics=[KqlDiagnostic(**d) for d in entry["diagnostics"]],
            result_columns=[(name, kind) for name, kind in entry["resultColumns"]],
            tables=list(entry["tables"]),
            operators=list(entry["operators"]),
        )
        for key, entry in raw.items()
    }
