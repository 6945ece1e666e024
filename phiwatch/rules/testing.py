"""`phiwatch rules test`: run each rule's query on its cases with the local engine.

A case passes only when the query ran and its result is the expected one. A query the engine
cannot execute is UNSUPPORTED (a failure), unless the rule declares it in
`phiwatch.unsupportedLocally`, and then its cases are "not executed" with that reason:
neither is ever a pass. Every rule needs `minimum` positive and `minimum` negative cases.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from phiwatch.rules.compare import compare
from phiwatch.rules.engine import (
    KqlEngine,
    PreparedQuery,
    QueryFailed,
    RowError,
    UnsupportedConstruct,
)
from phiwatch.rules.fixtures import CaseFile, case_paths, load_case
from phiwatch.rules.loader import QueryFile, RuleLoadError, load_query_files
from phiwatch.rules.problems import Problem, display_path
from phiwatch.rules.tables import TableSchemas
from phiwatch.rules.yaml_positions import Position


class Outcome(StrEnum):
    passed = "PASS"
    failed = "FAIL"
    error = "ERROR"  # the case or the query is broken
    unsupported = "UNSUPPORTED"  # the engine cannot run the query and the rule does not say so
    not_executed = "NOT EXECUTED"  # declared unsupported by the rule


GOOD = {Outcome.passed, Outcome.not_executed}


@dataclass
class CaseReport:
    path: Path
    name: str
    positive: bool | None  # None when the case file does not load
    outcome: Outcome
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RuleReport:
    path: Path
    rule: QueryFile | None
    cases: list[CaseReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the rule or its case set

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.outcome in GOOD for c in self.cases)


@dataclass
class SuiteReport:
    rules: list[RuleReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rules)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.rules for c in r.cases if c.outcome is outcome)


def run_case(
    engine: KqlEngine,
    rule: QueryFile,
    loaded: CaseFile,
    prepared: PreparedQuery | UnsupportedConstruct | QueryFailed | None = None,
) -> CaseReport:
    """One case on a cleared engine; `prepared` is the rule's query translated once for all
    its cases (or why it could not be)."""
    case = loaded.case
    report = CaseReport(loaded.path, loaded.name, case.positive, Outcome.error)
    started = time.perf_counter()
    engine.clear()
    try:
        for table, rows in case.tables.items():
            engine.load_rows(table, rows)
        if case.parameters:
            prepared = engine.prepare(with_parameters(rule.template.query, case.parameters))
        elif prepared is None:
            prepared = engine.prepare(rule.template.query)
        if isinstance(prepared, UnsupportedConstruct | QueryFailed):
            raise prepared
        result = prepared.run(case.now)
    except RowError as exc:
        key = ("tables", exc.table) if exc.index < 0 else ("tables", exc.table, exc.index)
        if exc.column:
            key = (*key, exc.column)
        where = loaded.document.keys.get(key, loaded.document.position(key))
        report.messages.append(f"{_at(loaded.path, where)}: {exc.message}")
        return report
    except UnsupportedConstruct as exc:
        declared = rule.template.unsupported_locally
        if declared:
            report.outcome = Outcome.not_executed
            report.messages.append(f"not executed: {declared}")
        else:
            report.outcome = Outcome.unsupported
            report.messages.append(
                f"{exc.message}: the local engine cannot run this query. Rewrite it, or "
                "declare phiwatch.unsupportedLocally with the reason (then its cases are "
                "reported as not executed, never as passed)"
            )
        return report
    except QueryFailed as exc:
        report.messages.append(f"{_at(rule.path, rule.position(('query',)))}: query failed: {exc}")
        return report
    except UnknownParameter as exc:
        at = _at(loaded.path, loaded.document.position(("parameters",)))
        report.messages.append(f"{at}: {exc}")
        return report
    finally:
        report.seconds = time.perf_counter() - started
    differences = compare(
        result, case.expected.rows, ordered=case.expected.ordered, columns=case.expected.columns
    )
    expected_at = _at(loaded.path, loaded.document.position(("expected",)))
    report.messages.extend(f"{expected_at}: {d}" for d in differences)
    report.outcome = Outcome.failed if differences else Outcome.passed
    if rule.template.unsupported_locally:
        report.messages.append(
            "the local engine ran this rule: phiwatch.unsupportedLocally is out of date, remove it"
        )
    return report


class UnknownParameter(ValueError):
    """A case sets a parameter the query has no `let` line for."""


def with_parameters(query: str, parameters: Mapping[str, Any]) -> str:
    """The query with each named `let <name> = ...;` line's value replaced: a list becomes
    `dynamic([...])`, a string a string literal, a number itself."""
    for name, value in parameters.items():
        pattern = re.compile(rf"(^\s*let\s+{re.escape(name)}\s*=\s*)[^;]*;", re.MULTILINE)
        is_dynamic = isinstance(value, list | dict)
        literal = f"dynamic({json.dumps(value)})" if is_dynamic else json.dumps(value)
        replacement = literal.replace("\\", "\\\\")
        query, found = pattern.subn(rf"\g<1>{replacement};", query, count=1)
        if not found:
            raise UnknownParameter(f"parameter '{name}' has no `let {name} = ...;` in the query")
    return query


def _at(path: Path, position: Position) -> str:
    return f"{display_path(path)}:{position.line}:{position.column}"


def run_rule_tests(
    paths: Sequence[Path], *, minimum: int = 1, schema: TableSchemas | None = None
) -> SuiteReport:
    """Run every case of the rules (and hunting queries) at `paths`."""
    report = SuiteReport()
    rules, problems = load_query_files(paths)
    by_path = {rule.path: rule for rule in rules}
    for path in paths:
        rule = by_path.get(path)
        rule_report = RuleReport(path, rule)
        report.rules.append(rule_report)
        if rule is None:
            rule_report.problems.extend(p for p in problems if p.path == path)
            continue
        with KqlEngine(schema) as engine:
            prepared: PreparedQuery | UnsupportedConstruct | QueryFailed
            try:
                prepared = engine.prepare(rule.template.query)
            except (UnsupportedConstruct, QueryFailed) as exc:
                prepared = exc
            positives = negatives = 0
            for case_path in case_paths(rule.cases_dir):
                try:
                    loaded = load_case(case_path)
                except RuleLoadError as exc:
                    rule_report.cases.append(
                        CaseReport(
                            case_path,
                            case_path.stem,
                            None,
                            Outcome.error,
                            [p.render() for p in exc.problems],
                        )
                    )
                    continue
                positives += loaded.positive
                negatives += not loaded.positive
                rule_report.cases.append(run_case(engine, rule, loaded, prepared))
        for kind, have in (("positive", positives), ("negative", negatives)):
            if have < minimum:
                rule_report.problems.append(
                    rule.problem(
                        ("query",),
                        "minimum-tests",
                        f"{have} {kind} case(s) in {display_path(rule.cases_dir)}/, at least "
                        f"{minimum} needed ({kind} = expected rows "
                        f"{'not empty' if kind == 'positive' else 'empty'})",
                    )
                )
    return report
