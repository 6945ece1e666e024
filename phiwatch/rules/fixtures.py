"""A rule's test cases: `kql/tests/<rule>/<case>.yaml`, one case per file.

    description: one actor opens 51 distinct patients in 10 minutes
    now: 2026-01-15T12:00:00Z        # now() and ago() in the query use this instant
    tables:                          # rows per table; columns not given are null
      PhiAccessEvents_CL:
        - {TimeGenerated: 2026-01-15T11:50:00Z, ActorUserId: alice, PatientRef: p1}
    expected:
      rows:                          # every result row; only the columns written are compared
        - {ActorUserId: alice, Patients: 51}
      ordered: false                 # true: row order matters too
      columns: [ActorUserId, Patients]   # optional: the exact result columns, in order

A case whose expected rows are empty is a negative case (the rule must stay quiet), any other
is a positive one. Times are UTC (write `Z`; a time without a zone is read as UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phiwatch.rules.loader import RULE_SUFFIXES, RuleLoadError
from phiwatch.rules.problems import Problem, validation_problems
from phiwatch.rules.yaml_positions import Position, YamlDocument, YamlFileError, load_yaml


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedResult(_Case):
    rows: list[dict[str, Any]] = []
    ordered: bool = False
    columns: list[str] | None = None


class RuleCase(_Case):
    description: str = Field(min_length=1)
    now: datetime
    tables: dict[str, list[dict[str, Any]]] = {}
    # The rule's `let` parameters for this case (a rule whose default leaves it off, such
    # as an empty list of accounts, is tested with them set): name -> value.
    parameters: dict[str, Any] = {}
    expected: ExpectedResult

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def positive(self) -> bool:
        return bool(self.expected.rows)


@dataclass(frozen=True)
class CaseFile:
    path: Path
    document: YamlDocument
    case: RuleCase

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def positive(self) -> bool:
        return self.case.positive


def case_paths(cases_dir: Path) -> list[Path]:
    if not cases_dir.is_dir():
        return []
    return sorted(p for p in cases_dir.iterdir() if p.is_file() and p.suffix in RULE_SUFFIXES)


def load_case(path: Path) -> CaseFile:
    """Load one case file. Raises RuleLoadError with located problems."""
    try:
        document = load_yaml(path)
    except YamlFileError as exc:
        raise RuleLoadError([Problem(exc.path, exc.position, "yaml", exc.message)]) from None
    if not isinstance(document.data, dict):
        raise RuleLoadError([Problem(path, Position(1, 1), "format", "not a YAML mapping")])
    try:
        case = RuleCase.model_validate(document.data)
    except ValidationError as exc:
        raise RuleLoadError(validation_problems(document, exc)) from None
    return CaseFile(path, document, case)
