"""The one table schema KQL rules are checked and run against: `kql/schema/tables.json`.

Generated (`phiwatch rules schema --write`) from the phiwatch models as Log Analytics holds
them after the DCR transform (`phiwatch.schema.table_columns`), plus the columns Log
Analytics adds to every table, plus the built-in tables a rule may read
(`phiwatch.rules.builtin_tables`). The Kusto.Language validator declares these tables and
the DuckDB engine creates them, so lint and test agree on what exists. A test fails when the
committed file drifts from a fresh generation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from phiwatch.rules.builtin_tables import BUILTIN_TABLES, STANDARD_COLUMNS
from phiwatch.rules.loader import KQL_DIR
from phiwatch.schema.tables import TABLES, TableSpec, spec_for, table_columns

SCHEMA_FILE = KQL_DIR / "schema" / "tables.json"
GENERATED_BY = "phiwatch rules schema --write"

# Log Analytics type names, as the schema file writes them, to Kusto's own spelling.
KUSTO_TYPES = {"boolean": "bool"}


def custom_table_columns(spec: TableSpec) -> dict[str, str]:
    """A phiwatch table's columns in Log Analytics: the model's after the DCR transform,
    then the standard columns Log Analytics adds."""
    columns = {c["name"]: c["type"] for c in table_columns(spec)}
    for name, kind in STANDARD_COLUMNS:
        columns.setdefault(name, kind)
    return columns


def schema_document() -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for spec in TABLES:
        tables[spec.table] = {
            "source": f"phiwatch.model.{spec.model.__name__} after the DCR transform",
            "columns": custom_table_columns(spec),
        }
    for name, builtin in BUILTIN_TABLES.items():
        columns = dict(builtin)
        for column, kind in STANDARD_COLUMNS:
            columns.setdefault(column, kind)
        tables[name] = {"source": "built-in (phiwatch/rules/builtin_tables.py)", "columns": columns}
    return {"generatedBy": GENERATED_BY, "tables": tables}


def render_schema() -> str:
    return json.dumps(schema_document(), indent=2) + "\n"


def schema_drift(committed: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """What changed, table by table and column by column (empty when equal)."""
    problems: list[str] = []
    old, new = committed.get("tables", {}), fresh.get("tables", {})
    for table in sorted(set(old) | set(new)):
        if table not in old:
            problems.append(f"table {table} added")
            continue
        if table not in new:
            problems.append(f"table {table} removed")
            continue
        before, after = old[table].get("columns", {}), new[table].get("columns", {})
        found = len(problems)
        for column in after:
            if column not in before:
                problems.append(f"{table}: column {column} added ({after[column]})")
            elif before[column] != after[column]:
                problems.append(f"{table}.{column}: type {before[column]} -> {after[column]}")
        problems.extend(f"{table}: column {c} removed" for c in before if c not in after)
        if len(problems) == found and list(before) != list(after):
            problems.append(f"{table}: column order changed")
    if not problems and dict(committed) != dict(fresh):
        problems.append("content differs")
    return problems


@dataclass(frozen=True)
class TableSchemas:
    """Table name → {column: Log Analytics type}, in column order."""

    tables: Mapping[str, Mapping[str, str]]

    def __contains__(self, table: object) -> bool:
        return table in self.tables

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def columns(self, table: str) -> Mapping[str, str]:
        return self.tables[table]

    def for_kusto(self) -> dict[str, dict[str, str]]:
        """The schema with Kusto's type names (what the Node validator declares)."""
        return {
            table: {name: KUSTO_TYPES.get(kind, kind) for name, kind in columns.items()}
            for table, columns in self.tables.items()
        }


def load_schema(path: Path | None = None) -> TableSchemas:
    """The committed schema file (default `kql/schema/tables.json`). Outside a checkout,
    where that file does not exist, the same schema generated from the models."""
    if path is None and not SCHEMA_FILE.is_file():
        document = schema_document()
    else:
        document = json.loads((path or SCHEMA_FILE).read_text(encoding="utf-8"))
    return TableSchemas({t: dict(entry["columns"]) for t, entry in document["tables"].items()})


def log_analytics_row(model: BaseModel) -> tuple[str, dict[str, Any]]:
    """A phiwatch record as the row Log Analytics stores: (table, row) after the DCR
    transform (constant columns added back, TimeGenerated set, reserved names renamed).
    Nulls are left out, as the sink sends them."""
    spec = spec_for(model)
    row = {k: v for k, v in model.to_wire().items() if v is not None}  # type: ignore[attr-defined]
    for name, value in spec.constants:
        row[name] = value
    if spec.time_from and spec.time_from in row:
        row["TimeGenerated"] = row[spec.time_from]
    for old, new in spec.renames:
        if old in row:
            row[new] = row.pop(old)
    return spec.table, row
