"""Compare a query's result with a case's expected rows, and say exactly which row differs.

Each expected row is compared on the columns it writes (write `Col: null` to expect a null).
Rows match regardless of order unless the case says `ordered: true`. Times compare as UTC
instants (`2026-01-15T12:00:00Z` in YAML equals the engine's datetime), dynamic values as
parsed JSON, numbers by value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from phiwatch.rules.engine import QueryResult
from phiwatch.rules.template import parse_duration


def _expected_value(value: Any, kind: str) -> Any:
    """An expected value in the engine's representation for a column of Kusto type `kind`."""
    if value is None:
        return None
    if kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value.strip())
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if kind == "timespan" and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            hours, minutes, seconds = value.split(":")
            return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))
    if kind == "dynamic" and isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            _equal(e, a) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            _equal(expected[k], actual[k]) for k in expected
        )
    return expected == actual


def show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return str(value)
    return json.dumps(value, default=str)


def show_row(row: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {show(v)}" for k, v in row.items()) + "}"


def compare(
    result: QueryResult,
    expected_rows: Sequence[Mapping[str, Any]],
    *,
    ordered: bool = False,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """Every difference, one readable line each; empty when the result is as expected."""
    problems: list[str] = []
    if columns is not None and list(columns) != result.columns:
        problems.append(
            f"result columns are [{', '.join(result.columns)}], expected [{', '.join(columns)}]"
        )
    kinds = dict(zip(result.columns, result.types, strict=True))
    compared = list(dict.fromkeys(k for row in expected_rows for k in row))
    unknown = [c for c in compared if c not in kinds]
    if unknown:
        problems.append(
            f"expected column(s) {', '.join(unknown)} not in the result "
            f"(columns: {', '.join(result.columns)})"
        )
        return problems
    # Each expected row is compared on the columns it writes (`Col: null` expects a null).
    want = [{c: _expected_value(v, kinds[c]) for c, v in row.items()} for row in expected_rows]
    records = result.records()
    got = records

    def differences(e: Mapping[str, Any], a: Mapping[str, Any]) -> list[str]:
        return [
            f"{c}: expected {show(e[c])}, got {show(a[c])}" for c in e if not _equal(e[c], a[c])
        ]

    if ordered:
        for i in range(max(len(want), len(got))):
            if i >= len(got):
                problems.append(f"missing row {i + 1}: {show_row(want[i])}")
            elif i >= len(want):
                problems.append(f"unexpected row {i + 1}: {show_row(records[i])}")
            elif diff := differences(want[i], got[i]):
                problems.append(f"row {i + 1} differs: {'; '.join(diff)}")
        return problems

    missing = list(range(len(want)))
    unexpected = list(range(len(got)))
    for i in list(missing):
        for j in unexpected:
            if not differences(want[i], got[j]):
                missing.remove(i)
                unexpected.remove(j)
                break
    # Pair what is left by likeness, so a near miss reads as a column diff.
    for i in list(missing):
        if not unexpected:
            break
        j = min(unexpected, key=lambda j: len(differences(want[i], got[j])))
        if len(differences(want[i], got[j])) < len(want[i]):
            problems.append(
                f"expected row {i + 1} {show_row(want[i])} differs from result row {j + 1}: "
                + "; ".join(differences(want[i], got[j]))
            )
            missing.remove(i)
            unexpected.remove(j)
    problems.extend(f"missing row {i + 1}: {show_row(want[i])}" for i in missing)
    problems.extend(f"unexpected result row {j + 1}: {show_row(records[j])}" for j in unexpected)
    return problems
