"""Find and load rule files: `kql/<rule>.yaml`, one Sentinel analytic-rule template each, and
hunting queries: `kql/hunting/<query>.yaml` (`phiwatch.rules.hunting`).

A rule's test cases live in `kql/tests/<rule>/*.yaml` (see `phiwatch.rules.fixtures`), a hunting
query's in `kql/hunting/tests/<query>/`; `kql/schema/` holds the table schema. None is a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from phiwatch.rules.hunting import HuntingQuery
from phiwatch.rules.problems import Problem, validation_problems
from phiwatch.rules.template import RuleTemplate
from phiwatch.rules.yaml_positions import (
    PathKey,
    Position,
    ScalarSource,
    YamlDocument,
    YamlFileError,
    load_yaml,
)

# The repository's kql/ (next to the phiwatch package in a checkout or an editable install).
KQL_DIR = Path(__file__).resolve().parents[2] / "kql"
# Hunting queries sit in their own folder: a file there is read as a hunting query, never as
# an analytic rule (so export and the scheduled runner, which read kql/ alone, never see one).
HUNTING_DIR_NAME = "hunting"
HUNTING_DIR = KQL_DIR / HUNTING_DIR_NAME
TESTS_DIR_NAME = "tests"
RULE_SUFFIXES = (".yaml", ".yml")
_M = TypeVar("_M", bound=BaseModel)
_F = TypeVar("_F")


class RuleLoadError(Exception):
    """A file that is not a usable rule or case; `problems` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.render() for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class _QueryFile:
    """What lint and the offline tests need from any file holding a query."""

    path: Path
    document: YamlDocument

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def cases_dir(self) -> Path:
        return self.path.parent / TESTS_DIR_NAME / self.path.stem

    @property
    def query_source(self) -> ScalarSource:
        return self.document.scalars[("query",)]

    def query_position(self, offset: int) -> Position:
        """File position of character `offset` of the query (a Kusto diagnostic's start)."""
        return self.query_source.position(offset)

    def position(self, key: PathKey) -> Position:
        return self.document.position(key)

    def problem(self, key: PathKey, code: str, message: str, severity: str = "error") -> Problem:
        return Problem(self.path, self.position(key), code, message, severity)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RuleFile(_QueryFile):
    template: RuleTemplate


@dataclass(frozen=True)
class HuntingFile(_QueryFile):
    template: HuntingQuery


QueryFile = RuleFile | HuntingFile


def is_hunting_path(path: Path) -> bool:
    return Path(path).parent.name == HUNTING_DIR_NAME


def _document(path: Path) -> YamlDocument:
    try:
        document = load_yaml(path)
    except YamlFileError as exc:
        raise RuleLoadError([Problem(exc.path, exc.position, "yaml", exc.message)]) from None
    except OSError as exc:
        raise RuleLoadError([Problem(path, Position(1, 1), "file", str(exc))]) from None
    if not isinstance(document.data, dict):
        raise RuleLoadError([Problem(path, Position(1, 1), "format", "not a YAML mapping")])
    return document


def _validated(document: YamlDocument, model: type[_M], root_key: str) -> _M:
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        raise RuleLoadError(validation_problems(document, exc, root_key=root_key)) from None


def load_rule(path: Path) -> RuleFile:
    """Load and validate one rule file. Raises RuleLoadError with located problems."""
    path = Path(path)
    document = _document(path)
    return RuleFile(path, document, _validated(document, RuleTemplate, "kind"))


def load_hunting(path: Path) -> HuntingFile:
    """Load and validate one hunting-query file. Raises RuleLoadError with located problems."""
    path = Path(path)
    document = _document(path)
    return HuntingFile(path, document, _validated(document, HuntingQuery, "id"))


def load_query_file(path: Path) -> QueryFile:
    """A hunting query when the file sits in a `hunting/` folder, else an analytic rule."""
    return load_hunting(path) if is_hunting_path(path) else load_rule(path)


def is_rule_file(path: Path) -> bool:
    return path.is_file() and path.suffix in RULE_SUFFIXES


def discover(targets: Sequence[Path | str] = (), root: Path = KQL_DIR) -> list[Path]:
    """Rule files named by `targets` (files, directories, or rule names in `root`); every
    rule in `root` when none are given. Directories are not searched recursively: rules sit
    at the top of their directory, fixtures and the schema below it."""
    found: list[Path] = []
    for target in targets or [root]:
        path = Path(target)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if is_rule_file(p)))
        elif path.is_file():
            found.append(path)
        elif not path.suffix and (root / f"{path.name}.yaml").is_file():
            found.append(root / f"{path.name}.yaml")
        else:
            raise FileNotFoundError(f"no rule file or directory {target}")
    return list(dict.fromkeys(p.resolve() for p in found))


def discover_queries(targets: Sequence[Path | str] = (), root: Path = KQL_DIR) -> list[Path]:
    """As `discover`, with hunting queries: every rule and every hunting query when no target is
    given, and a bare name is looked up among the hunting queries too."""
    hunting = root / HUNTING_DIR_NAME
    if not targets:
        return discover([], root) + (discover([hunting], root) if hunting.is_dir() else [])
    resolved: list[Path | str] = []
    for target in targets:
        path = Path(target)
        named = not path.exists() and not path.suffix
        if named and not (root / f"{path.name}.yaml").is_file():
            candidate = hunting / f"{path.name}.yaml"
            resolved.append(candidate if candidate.is_file() else target)
        else:
            resolved.append(target)
    return discover(resolved, root)


def _load_each(paths: Iterable[Path], load: Callable[[Path], _F]) -> tuple[list[_F], list[Problem]]:
    # A bad file does not stop the rest: its problems are returned beside what loaded.
    loaded: list[_F] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            loaded.append(load(path))
        except RuleLoadError as exc:
            problems.extend(exc.problems)
    return loaded, problems


def load_query_files(paths: Iterable[Path]) -> tuple[list[QueryFile], list[Problem]]:
    """Every loadable rule or hunting query, and the problems of those that are not."""
    return _load_each(paths, load_query_file)


def load_rules(paths: Iterable[Path]) -> tuple[list[RuleFile], list[Problem]]:
    """Every loadable rule, and the problems of those that are not."""
    return _load_each(paths, load_rule)
