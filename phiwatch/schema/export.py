"""What `phiwatch schema` prints: Log Analytics tables, DCR streams and the Bicep input.

Pure functions over `phiwatch.schema` (the single source of truth): they return plain dicts
and strings, so the CLI only prints and the tests can generate from altered models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from phiwatch.schema.tables import (
    SYSTEM_COLUMNS,
    TABLES,
    TableSpec,
    stream_columns,
    table_columns,
    transform_kql,
)

# The DCR's name for its one Log Analytics destination (infra/sentinel/dcr.bicep uses it too).
DCR_DESTINATION = "phiwatchWorkspace"
BICEP_JSON = "infra/generated/log-analytics-schema.json"
GENERATED_BY = "phiwatch schema --format bicep-json --out " + BICEP_JSON


def output_stream(spec: TableSpec) -> str:
    """The DCR output stream of a custom table: `Custom-<Table>_CL`."""
    return f"Custom-{spec.table}"


def table_document(spec: TableSpec) -> dict[str, Any]:
    """Everything infra needs to know about one table and the stream that feeds it."""
    return {
        "table": spec.table,
        "description": spec.description,
        "columns": table_columns(spec),
        "stream": spec.stream,
        "streamColumns": stream_columns(spec),
        "transformKql": transform_kql(spec),
        "outputStream": output_stream(spec),
    }


def bicep_document(tables: Sequence[TableSpec] = TABLES) -> dict[str, Any]:
    """The file infra/sentinel/*.bicep load with loadJsonContent()."""
    return {
        "generatedBy": GENERATED_BY,
        "tables": [table_document(spec) for spec in tables],
    }


def dcr_document(tables: Sequence[TableSpec] = TABLES) -> dict[str, Any]:
    """The DCR `streamDeclarations` and `dataFlows` (what dcr.bicep builds with loops)."""
    return {
        "streamDeclarations": {spec.stream: {"columns": stream_columns(spec)} for spec in tables},
        "dataFlows": [
            {
                "streams": [spec.stream],
                "destinations": [DCR_DESTINATION],
                "transformKql": transform_kql(spec),
                "outputStream": output_stream(spec),
            }
            for spec in tables
        ],
    }


def full_document(tables: Sequence[TableSpec] = TABLES) -> dict[str, Any]:
    """Tables (with the system columns Log Analytics adds) and the DCR, in one document."""
    system = [{"name": name, "type": kind} for name, kind in SYSTEM_COLUMNS]
    return {
        "tables": [
            {
                **table_document(spec),
                "systemColumns": system,
                "renames": [{"from": old, "to": new} for old, new in spec.renames],
                "timeFrom": spec.time_from,
            }
            for spec in tables
        ],
        "dcr": dcr_document(tables),
    }


def render_json(document: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_bicep_json(tables: Sequence[TableSpec] = TABLES) -> str:
    return render_json(bicep_document(tables))


def describe_drift(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Human-readable differences between two bicep documents ([] when equal)."""
    problems: list[str] = []
    old = {t.get("table"): t for t in committed.get("tables", [])}
    new = {t.get("table"): t for t in fresh.get("tables", [])}
    for name in sorted(set(old) - set(new), key=str):
        problems.append(f"table {name} is committed but no longer generated")
    for name in sorted(set(new) - set(old), key=str):
        problems.append(f"table {name} is generated but not committed")
    for name in sorted(set(old) & set(new), key=str):
        before, after = old[name], new[name]
        for key in ("columns", "streamColumns"):
            problems += _column_drift(f"{name}.{key}", before.get(key, []), after.get(key, []))
        for key in sorted(set(before) | set(after)):
            if key in ("columns", "streamColumns"):
                continue
            if before.get(key) != after.get(key):
                problems.append(f"{name}.{key}: {before.get(key)!r} -> {after.get(key)!r}")
    if not problems and committed != fresh:
        problems.append("documents differ outside the tables (e.g. generatedBy)")
    return problems


def _column_drift(
    where: str, before: Iterable[dict[str, str]], after: Iterable[dict[str, str]]
) -> list[str]:
    old = {c["name"]: c["type"] for c in before}
    new = {c["name"]: c["type"] for c in after}
    problems = [f"{where}: column {n} added ({new[n]})" for n in new if n not in old]
    problems += [f"{where}: column {n} removed" for n in old if n not in new]
    problems += [
        f"{where}: column {n} changed type {old[n]} -> {new[n]}"
        for n in new
        if n in old and old[n] != new[n]
    ]
    if not problems and list(old) != list(new):
        problems.append(f"{where}: column order changed")
    return problems
