"""One problem in a rule or fixture file, located at a file, line and column."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from phiwatch.rules.yaml_positions import PathKey, Position, YamlDocument

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    path: Path
    position: Position
    code: str  # ours are kebab-case (`query-frequency`), Kusto.Language's are KSnnn
    message: str
    severity: Severity = "error"

    def render(self) -> str:
        return (
            f"{display_path(self.path)}:{self.position.line}:{self.position.column}: "
            f"{self.severity} [{self.code}] {self.message}"
        )


def display_path(path: Path) -> str:
    """Relative to the working directory when under it (what an editor or CI log links)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def validation_problems(
    document: YamlDocument, error: ValidationError, *, root_key: str | None = None
) -> list[Problem]:
    """pydantic's errors at the YAML lines they concern (model-level errors at `root_key`)."""
    problems = []
    for item in error.errors():
        loc: PathKey = tuple(item["loc"])
        where = (
            document.position(loc) if loc else document.position((root_key,) if root_key else ())
        )
        field = ".".join(str(part) for part in loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo, or a field the format does not have)"
            where = document.keys.get(loc, where)
        problems.append(
            Problem(document.path, where, "format", f"{field}: {message}" if field else message)
        )
    return problems


def first_line(value: Any) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else ""
