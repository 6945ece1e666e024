"""`phiwatch rules backtest`: what a rule would have fired on, replayed over the archive.

The archive's `events/` objects hold AccessEvent wire rows; they are loaded into DuckDB as the
PhiAccessEvents_CL rows Sentinel stores (after the DCR transform, `log_analytics_row`), and
`alerts/` as PhiAlerts_CL. The rule then runs once per step (default: its queryFrequency) with
`now()` pinned at each step end, so `ago(queryPeriod)` windows are the ones Sentinel would have
queried. Step ends are aligned to multiples of the step since the Unix epoch (Sentinel aligns
to the rule's creation time, which a backtest does not know).

Cost: (until - since) / step runs, each scanning every loaded row (DuckDB has no time
partitioning here): 90 days at 30m is 4,320 runs. `--step` trades resolution for time; a step
longer than queryPeriod leaves gaps and is refused.

A result row seen by several overlapping runs counts once (on the day of its first run); a row
whose values change between runs (a growing burst) is a new result, as it would be a new
alert in Sentinel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.store import LocalStore
from phiwatch.model import AccessEvent, Alert
from phiwatch.rules.engine import KqlEngine
from phiwatch.rules.tables import log_analytics_row
from phiwatch.rules.template import RuleTemplate

# Archive kind → (table, model of its lines).
ARCHIVED_TABLES: dict[str, tuple[str, type[BaseModel]]] = {
    "events": ("PhiAccessEvents_CL", AccessEvent),
    "alerts": ("PhiAlerts_CL", Alert),
}
_HOUR_FOLDER = re.compile(r"^[a-z]+/(\d{4})/(\d{2})/(\d{2})/(\d{2})/")


class BacktestError(Exception):
    """The backtest cannot answer: nothing in range, a table the archive lacks, a bad range."""


@dataclass
class DayResult:
    day: str
    runs: int = 0
    fired_runs: int = 0
    results: int = 0
    entities: set[tuple[str, ...]] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "runs": self.runs,
            "firedRuns": self.fired_runs,
            "results": self.results,
            "distinctEntities": len(self.entities),
        }


@dataclass
class Backtest:
    rule: str
    since: datetime
    until: datetime
    step: timedelta
    rows_loaded: dict[str, int]
    days: list[DayResult]
    results: list[dict[str, Any]]  # each unique result row once, with FirstFiredAt

    @property
    def runs(self) -> int:
        return sum(d.runs for d in self.days)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "step": int(self.step.total_seconds()),
            "runs": self.runs,
            "rowsLoaded": self.rows_loaded,
            "days": [d.as_dict() for d in self.days],
            "results": self.results,
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def referenced_tables(query: str, known: list[str]) -> list[str]:
    """Schema tables the query names (word match: cheap, and a false positive only loads a
    table that is not needed)."""
    return [t for t in known if re.search(rf"(?<![\w.]){re.escape(t)}(?!\w)", query)]


def _hour_of(name: str) -> datetime | None:
    match = _HOUR_FOLDER.match(name)
    if not match:
        return None  # "undated" objects: filtered by TimeGenerated only
    year, month, day, hour = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, tzinfo=UTC)


def archive_rows(
    archive: Path, kind: str, start: datetime | None, end: datetime | None
) -> Iterator[dict[str, Any]]:
    """Table rows of one archive kind with start < TimeGenerated <= end: objects are skipped by
    their hour folder first (no need to decompress 90 days for one), then rows by time."""
    _, model = ARCHIVED_TABLES[kind]
    store = LocalStore(archive)
    for name in sorted(store.list(f"{kind}/")):
        hour = _hour_of(name)
        if hour is not None and (
            (start is not None and hour + timedelta(hours=1) <= start)
            or (end is not None and hour > end)
        ):
            continue
        for line in decode_lines(store.get(name)):
            _, row = log_analytics_row(model.model_validate_json(line))
            when = datetime.fromisoformat(row["TimeGenerated"])
            if (start is None or when > start) and (end is None or when <= end):
                yield row


def _align_up(value: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - value) // step)  # ceiling division
    return epoch + steps * step


def _entity_key(rule: RuleTemplate, row: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = []
    for mapping in rule.entity_mappings:
        values = tuple(str(row.get(f.column_name) or "") for f in mapping.field_mappings)
        if any(values):
            keys.append((mapping.entity_type, *values))
    return keys


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def _window(engine: KqlEngine, tables: list[str], start: datetime, end: datetime) -> None:
    """Show the query only rows with start < TimeGenerated <= end, as Sentinel does: it limits
    a scheduled query to its queryPeriod, and rows after the run did not exist yet (without
    this, `where TimeGenerated > ago(1h)` would also match every later row)."""
    bounds = [start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None)]
    for table in tables:
        engine.con.execute(f'DELETE FROM "{table}"')  # noqa: S608 - names from the schema
        engine.con.execute(
            f'INSERT INTO "{table}" SELECT * FROM "_all_{table}" '  # noqa: S608
            "WHERE TimeGenerated > ? AND TimeGenerated <= ?",
            bounds,
        )


def backtest(
    rule: RuleTemplate,
    archive: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    step: timedelta | None = None,
) -> Backtest:
    step = step or rule.frequency
    if step > rule.lookback:
        raise BacktestError(
            f"step {step} is longer than the rule's queryPeriod {rule.lookback}: runs would "
            "not see every row"
        )
    if since and until and since >= until:
        raise BacktestError("--since must be before --until")
    engine = KqlEngine()
    try:
        return _run(rule, engine, archive, since, until, step)
    finally:
        engine.close()


def _run(
    rule: RuleTemplate,
    engine: KqlEngine,
    archive: Path,
    since: datetime | None,
    until: datetime | None,
    step: timedelta,
) -> Backtest:
    tables = referenced_tables(rule.query, list(engine.schema))
    held = {table: kind for kind, (table, _) in ARCHIVED_TABLES.items()}
    missing = [t for t in tables if t not in held]
    if missing:
        raise BacktestError(
            f"the rule reads {', '.join(missing)}, which the archive does not hold "
            f"(it holds {', '.join(held)})"
        )
    # Rows up to one queryPeriod before `since` feed the first runs' windows.
    load_from = since - rule.lookback if since else None
    loaded: dict[str, int] = {}
    first: datetime | None = None
    last: datetime | None = None
    for table in tables:
        rows = list(archive_rows(archive, held[table], load_from, until))
        loaded[table] = engine.load_rows(table, rows)
        for row in rows:
            when = datetime.fromisoformat(row["TimeGenerated"])
            first = when if first is None or when < first else first
            last = when if last is None or when > last else last
    if first is None or last is None:
        span = f"between {since or 'the start'} and {until or 'the end'}"
        raise BacktestError(f"the archive {archive} holds no {', '.join(tables)} rows {span}")
    start = since or first
    end = until or last + step  # the run after the last row still sees it
    days: dict[str, DayResult] = {}
    seen: set[str] = set()
    results: list[dict[str, Any]] = []
    for table in tables:
        # Keep every row aside; each run sees only its own window (below).
        engine.con.execute(f'CREATE TABLE "_all_{table}" AS SELECT * FROM "{table}"')  # noqa: S608
    now = _align_up(start + timedelta(microseconds=1), step)
    while now <= _align_up(end, step):
        _window(engine, tables, now - rule.lookback, now)
        result = engine.run(rule.query, now)
        day = days.setdefault(now.date().isoformat(), DayResult(now.date().isoformat()))
        day.runs += 1
        if rule.matches_trigger(len(result)):
            day.fired_runs += 1
            for record in result.records():
                safe = {k: _json_safe(v) for k, v in record.items()}
                key = json.dumps(safe, sort_keys=True, default=str)
                if key in seen:
                    continue
                seen.add(key)
                day.results += 1
                day.entities.update(_entity_key(rule, record))
                results.append({"FirstFiredAt": _iso(now), **safe})
        now += step
    return Backtest(
        rule.name, start, end, step, loaded, sorted(days.values(), key=lambda d: d.day), results
    )


def parse_time(text: str) -> datetime:
    """`2026-11-03` (midnight UTC) or an ISO 8601 time; without an offset, UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BacktestError(f"{text!r} is not a date or ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def render_table(report: Backtest) -> str:
    lines = [
        f"{report.rule}: {report.runs} run(s) every {report.step} from {_iso(report.since)} "
        f"to {_iso(report.until)}; rows loaded: "
        + ", ".join(f"{t} {n}" for t, n in report.rows_loaded.items()),
        f"{'day':<12}{'runs':>6}{'fired':>7}{'results':>9}{'entities':>10}",
    ]
    for day in report.days:
        if day.fired_runs or day.results:
            lines.append(
                f"{day.day:<12}{day.runs:>6}{day.fired_runs:>7}{day.results:>9}"
                f"{len(day.entities):>10}"
            )
    quiet = sum(1 for d in report.days if not d.fired_runs and not d.results)
    lines.append(
        f"{len(report.results)} distinct result(s); {quiet} day(s) without results not shown"
    )
    return "\n".join(lines) + "\n"


def backtest_cli(
    path: Path,
    archive: Path,
    since: str | None,
    until: str | None,
    step_minutes: int | None,
    as_json: bool,
) -> None:
    """`phiwatch rules backtest`: exit 1 when the backtest cannot answer, with the reason."""
    import typer  # noqa: PLC0415 - CLI-only imports
    from rich.console import Console  # noqa: PLC0415
    from rich.markup import escape  # noqa: PLC0415

    from phiwatch.rules.engine import EngineUnavailable, QueryFailed, UnsupportedConstruct  # noqa: PLC0415
    from phiwatch.rules.loader import RuleLoadError, load_rule  # noqa: PLC0415

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        if not (archive / "events").is_dir() and not (archive / "alerts").is_dir():
            raise BacktestError(f"{archive} is not a phiwatch archive (no events/ or alerts/)")
        report = backtest(
            load_rule(path).template,
            archive,
            parse_time(since) if since else None,
            parse_time(until) if until else None,
            timedelta(minutes=step_minutes) if step_minutes else None,
        )
    except RuleLoadError as exc:
        for problem in exc.problems:
            err.print(f"[red]{escape(problem.render())}[/]")
        raise typer.Exit(1) from None
    except (BacktestError, QueryFailed, EngineUnavailable) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except UnsupportedConstruct as exc:
        err.print(f"[bold red]error:[/] duckdb-kql cannot run this rule: {escape(exc.message)}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        typer.echo(render_table(report), nl=False)
