"""Run KQL locally: the schema's tables in an in-memory DuckDB, queries through duckdb-kql
with `now()` / `ago()` pinned.

`rules test` runs fixtures through it; the backtest and the Log Analytics / ADX stand-ins
reuse it. duckdb-kql is a development dependency (requirements-dev.txt), not a runtime one:
the Function App runs rules in Log Analytics or ADX, so it is imported only when an engine
is created, with a clear error when missing.

duckdb-kql raises `KqlUnsupportedError` for a construct it does not translate rather than
guessing; that surfaces here as `UnsupportedConstruct`, which callers must never count as
a pass. DuckDB resolves column names case-insensitively where Kusto does not: lint
(Kusto.Language) is the authority on names, this engine on results.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from pydantic import BaseModel

from phiwatch.rules.tables import TableSchemas, load_schema, log_analytics_row

# Log Analytics / Kusto type → DuckDB column type (datetimes are naive UTC TIMESTAMPs, which
# is how duckdb-kql expects them).
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "datetime": "TIMESTAMP",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "decimal": "DOUBLE",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "dynamic": "JSON",
    "guid": "VARCHAR",
    "timespan": "INTERVAL",
}
_INSTALL = "pip install -r requirements-dev.txt (it pins duckdb-kql[duckdb])"


class EngineUnavailable(RuntimeError):
    """duckdb-kql (with duckdb) is not installed."""


class RowError(ValueError):
    """A row that does not fit the table: unknown table or column, or a bad value."""

    def __init__(self, table: str, index: int, column: str | None, message: str) -> None:
        super().__init__(message)
        self.table = table
        self.index = index  # position of the row in what was loaded
        self.column = column
        self.message = message


class UnsupportedConstruct(Exception):
    """The query uses KQL that duckdb-kql does not execute (it never guesses)."""

    def __init__(self, construct: str, message: str) -> None:
        super().__init__(message)
        self.construct = construct
        self.message = message


class QueryFailed(Exception):
    """The query could not run: a syntax error, an unknown name, a DuckDB error."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]  # Kusto type names (string, long, datetime, dynamic, ...)
    rows: list[tuple[Any, ...]]  # datetimes UTC-aware, dynamic values parsed from JSON

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def require_duckdb_kql() -> ModuleType:
    try:
        import duckdb_kql  # noqa: PLC0415 - a development dependency, imported on use
        import duckdb_kql.engine  # noqa: PLC0415 - fails here when duckdb is missing
    except ImportError as exc:
        raise EngineUnavailable(
            f"running KQL locally needs duckdb-kql with duckdb ({exc}): {_INSTALL}"
        ) from None
    return duckdb_kql


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> str:
    """A table or column name from the schema, quoted for DuckDB SQL."""
    if not _IDENT.match(name):
        raise ValueError(f"not a Log Analytics identifier: {name!r}")
    return f'"{name}"'


def _utc_naive(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    raise ValueError(f"{value!r} is not a time")


class KqlEngine:
    """An in-memory DuckDB holding every table of the schema (empty until loaded)."""

    def __init__(self, schema: TableSchemas | None = None) -> None:
        self._kql = require_duckdb_kql()
        self.schema = schema or load_schema()
        self.con = self._kql.connect()
        for table, columns in self.schema.tables.items():
            ddl = ", ".join(
                f"{_ident(name)} {DUCKDB_TYPES[kind]}" for name, kind in columns.items()
            )
            self.con.execute(f"CREATE TABLE {_ident(table)} ({ddl})")

    def __enter__(self) -> KqlEngine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def clear(self) -> None:
        """Empty every table (reuse one engine for many fixture cases)."""
        for table in self.schema:
            self.con.execute(f"DELETE FROM {_ident(table)}")  # noqa: S608 - checked name

    def load_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append rows (dicts in the table's shape; missing columns are null). Raises RowError
        for an unknown table or column or a time that does not parse."""
        if table not in self.schema:
            raise RowError(table, -1, None, f"unknown table {table} (known: {sorted(self.schema)})")
        columns = self.schema.columns(table)
        lines: list[str] = []
        for index, row in enumerate(rows):
            clean: dict[str, Any] = {}
            for name, given in row.items():
                value = given
                kind = columns.get(name)
                if kind is None:
                    raise RowError(
                        table,
                        index,
                        name,
                        f"{table} has no column {name} (columns are case-"
                        f"sensitive; known: {', '.join(columns)})",
                    )
                if value is not None and kind == "datetime":
                    try:
                        value = _utc_naive(value)
                    except ValueError as exc:
                        raise RowError(table, index, name, f"{name}: {exc}") from None
                clean[name] = value
            lines.append(json.dumps(clean, default=str))
        if lines:
            self._insert_ndjson(table, "\n".join(lines) + "\n")
        return len(lines)

    def load_records(self, records: Iterable[BaseModel]) -> dict[str, int]:
        """Append phiwatch models (AccessEvent, Alert, BatchHealth) as the rows Log Analytics
        stores for them (after the DCR transform). Returns rows loaded per table."""
        by_table: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            table, row = log_analytics_row(record)
            by_table.setdefault(table, []).append(row)
        return {table: self.load_rows(table, rows) for table, rows in by_table.items()}

    def load_ndjson(self, table: str, paths: Sequence[Path]) -> int:
        """Append newline-delimited JSON files (optionally .gz) already in the table's shape;
        keys that are not columns are ignored. The fast path for large inputs."""
        before = self._count(table)
        for path in paths:
            self._insert_file(table, Path(path))
        return self._count(table) - before

    def _count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {_ident(table)}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def _insert_ndjson(self, table: str, text: str) -> None:
        with tempfile.TemporaryDirectory(prefix="phiwatch-kql-") as tmp:
            path = Path(tmp) / f"{table}.jsonl"
            path.write_text(text, encoding="utf-8")
            self._insert_file(table, path)

    def _insert_file(self, table: str, path: Path) -> None:
        columns = self.schema.columns(table)
        spec = ", ".join(f"'{name}': '{DUCKDB_TYPES[kind]}'" for name, kind in columns.items())
        source = str(path).replace("'", "''")
        # Names are checked identifiers from the schema file; the path is quoted.
        self.con.execute(
            f"INSERT INTO {_ident(table)} BY NAME SELECT * FROM read_json("  # noqa: S608
            f"'{source}', format='newline_delimited', columns={{{spec}}})"
        )

    def run(
        self, query: str, now: datetime, *, functions: Sequence[str] | None = None
    ) -> QueryResult:
        """Execute `query` with now() and ago() pinned to `now` (naive means UTC)."""
        return self.prepare(query, functions=functions).run(now)

    def prepare(self, query: str, *, functions: Sequence[str] | None = None) -> PreparedQuery:
        """Translate `query` once, to run it at many instants (a simulated schedule, a
        backtest day by day): translation costs far more than execution on small tables.
        Translated against the tables as they are now; their rows may change afterwards."""
        kql = self._kql
        try:
            translated = kql.to_sql(
                query,
                schema=kql.engine.schema(self.con),
                allow_write=False,
                query_now=_EPOCH,  # any instant: it renders as a bound slot, set per run
                functions=functions,
            )
        except kql.KqlUnsupportedError as exc:
            raise UnsupportedConstruct(exc.construct, str(exc)) from None
        except kql.KqlError as exc:
            raise QueryFailed(str(exc)) from None
        if translated.unbound:
            raise QueryFailed(f"query parameters without a value: {', '.join(translated.unbound)}")
        return PreparedQuery(self, str(translated), dict(translated.parameters))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PreparedQuery:
    engine: KqlEngine
    sql: str
    parameters: dict[str, Any]

    def run(self, now: datetime) -> QueryResult:
        from duckdb_kql.translate import CLOCK_SLOT  # noqa: PLC0415 - layer 0, no duckdb

        params = dict(self.parameters)
        if CLOCK_SLOT in params:  # only when the query reads the clock
            params[CLOCK_SLOT] = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
        con = self.engine.con
        try:
            con.execute("SET TimeZone='UTC'")
            relation = con.sql(self.sql, params=params) if params else con.sql(self.sql)
            columns = list(relation.columns)
            duck_types = [str(t) for t in relation.types]
            raw = relation.fetchall()
        except Exception as exc:  # duckdb's own errors (binder, conversion) have no common base
            if type(exc).__module__.startswith(("duckdb", "_duckdb")):
                raise QueryFailed(f"{type(exc).__name__}: {exc}") from None
            raise
        types = [_kusto_type(t) for t in duck_types]
        rows = [tuple(_value(v, t) for v, t in zip(row, duck_types, strict=True)) for row in raw]
        return QueryResult(columns, types, rows)


def _kusto_type(duck_type: str) -> str:
    from duckdb_kql.types import kusto_type  # noqa: PLC0415 - layer 0, no duckdb import

    return kusto_type(duck_type)


def _value(value: Any, duck_type: str) -> Any:
    if value is None:
        return None
    if duck_type == "JSON" and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value
