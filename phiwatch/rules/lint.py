"""`phiwatch rules lint`: what Sentinel will refuse, found before a deployment does.

Two layers, both reported at the rule file's line and column:
- the template constraints Sentinel's own CI enforces (schedule, threshold, query length,
  entity mappings, custom details, alert overrides, tactics and techniques, unique ids, a
  version bump when the query changed since git HEAD, NRT limits), checked here in Python;
- the KQL itself (syntax, unknown tables, columns and functions, wrong case, types, analyzer
  warnings, and the columns the mappings need in the result), by Kusto.Language
  (`kql_check`), all rules in one Node process.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml

from phiwatch.rules.entities import ENTITY_IDENTIFIERS
from phiwatch.rules.kql_check import KqlAnalysis, analyze
from phiwatch.rules.loader import HuntingFile, QueryFile, RuleFile, is_rule_file, load_query_files
from phiwatch.rules.mitre import TACTICS, TECHNIQUE_TACTICS
from phiwatch.rules.problems import Problem
from phiwatch.rules.tables import TableSchemas
from phiwatch.rules.template import format_duration
from phiwatch.rules.yaml_positions import Position

MIN_SCHEDULE = timedelta(minutes=5)
MAX_SCHEDULE = timedelta(days=14)
LONG_PERIOD = timedelta(days=2)  # from here on, Sentinel wants queryFrequency >= 1h
MAX_THRESHOLD = 10_000
MAX_QUERY = 10_000
MAX_ENTITY_MAPPINGS = 5
MAX_FIELD_MAPPINGS = 3
MAX_CUSTOM_DETAILS = 20
MAX_PLACEHOLDERS = 3
MAX_DISPLAY_NAME_FORMAT = 256
MAX_DESCRIPTION_FORMAT = 5_000
MAX_GROUPING_LOOKBACK = timedelta(days=7)
_COLUMN = re.compile(r"^[A-Za-z_]\w*$")
_DETAIL_KEY = re.compile(r"^[A-Za-z]\w*$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass
class LintReport:
    rules: list[QueryFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def lint(
    paths: Sequence[Path],
    *,
    schema: TableSchemas | None = None,
    check_kql: bool = True,
    check_git: bool = True,
) -> LintReport:
    """Lint the rule and hunting-query files at `paths`. Raises kql_check.ValidatorUnavailable
    when the KQL check is wanted and Node or Kusto.Language is missing."""
    report = LintReport()
    report.rules, report.problems = load_query_files(paths)
    for rule in report.rules:
        report.problems.extend(template_problems(rule))
    report.problems.extend(duplicate_id_problems(report.rules))
    if check_git:
        for rule in report.rules:
            problems, note = version_problems(rule)
            report.problems.extend(problems)
            if note:
                report.notes.append(note)
    if check_kql and report.rules:
        analyses = analyze({str(r.path): r.template.query for r in report.rules}, schema)
        for rule in report.rules:
            report.problems.extend(kql_problems(rule, analyses[str(rule.path)]))
    report.problems.sort(key=lambda p: (str(p.path), p.position, p.code))
    return report


def _schedule(rule: RuleFile, key: str, value: timedelta, problems: list[Problem]) -> None:
    if not MIN_SCHEDULE <= value <= MAX_SCHEDULE:
        problems.append(
            rule.problem(
                (key,),
                "schedule",
                f"{key} {format_duration(value)} is outside Sentinel's range 5m to 14d",
            )
        )


def template_problems(rule: QueryFile) -> list[Problem]:
    """Sentinel's template constraints that need no KQL analysis."""
    problems: list[Problem] = []
    if isinstance(rule, RuleFile):
        problems.extend(_schedule_problems(rule))
        problems.extend(_detail_problems(rule))
    else:
        problems.extend(_hunting_problems(rule))
    t = rule.template
    if len(t.query) > MAX_QUERY:
        problems.append(
            rule.problem(
                ("query",),
                "query-length",
                f"query is {len(t.query):,} characters; Sentinel takes at most {MAX_QUERY:,}",
            )
        )
    problems.extend(_entity_problems(rule))
    problems.extend(_tactic_problems(rule))
    text = rule.document.text
    for at, char in enumerate(text):
        if ord(char) > 127:
            line = text.count("\n", 0, at) + 1
            column = at - (text.rfind("\n", 0, at) + 1) + 1
            problems.append(
                Problem(
                    rule.path,
                    Position(line, column),
                    "encoding",
                    f"non-ASCII character {char!r}: Sentinel's rule repository takes ASCII only",
                )
            )
            break
    return problems


def _hunting_problems(query: HuntingFile) -> list[Problem]:
    """A declared parameter must be a `let` line of the query: it is how the README tells an
    analyst to use the query, and how the cases set it."""
    problems: list[Problem] = []
    for i, name in enumerate(query.template.phiwatch.parameters):
        if not re.search(rf"^\s*let\s+{re.escape(name)}\s*=", query.template.query, re.MULTILINE):
            problems.append(
                query.problem(
                    ("phiwatch", "parameters", i),
                    "parameter",
                    f"parameter {name!r} has no `let {name} = ...;` line in the query",
                )
            )
    return problems


def _schedule_problems(rule: RuleFile) -> list[Problem]:
    t = rule.template
    problems: list[Problem] = []
    if t.query_frequency is not None and t.query_period is not None:
        _schedule(rule, "queryFrequency", t.query_frequency, problems)
        _schedule(rule, "queryPeriod", t.query_period, problems)
        if t.query_period < t.query_frequency:
            problems.append(
                rule.problem(
                    ("queryPeriod",),
                    "schedule",
                    f"queryPeriod {format_duration(t.query_period)} is shorter than "
                    f"queryFrequency {format_duration(t.query_frequency)}: rows between runs "
                    "would never be looked at",
                )
            )
        if t.query_period >= LONG_PERIOD and t.query_frequency < timedelta(hours=1):
            problems.append(
                rule.problem(
                    ("queryFrequency",),
                    "schedule",
                    "with a queryPeriod of 2 days or more Sentinel needs queryFrequency >= 1h",
                )
            )
    if t.trigger_threshold is not None and not 0 <= t.trigger_threshold <= MAX_THRESHOLD:
        problems.append(
            rule.problem(
                ("triggerThreshold",),
                "trigger",
                f"triggerThreshold {t.trigger_threshold} is outside 0 to {MAX_THRESHOLD}",
            )
        )
    return problems


def _entity_problems(rule: QueryFile) -> list[Problem]:
    t = rule.template
    problems: list[Problem] = []
    if len(t.entity_mappings) > MAX_ENTITY_MAPPINGS:
        problems.append(
            rule.problem(
                ("entityMappings",),
                "entity-mapping",
                f"{len(t.entity_mappings)} entity mappings; Sentinel takes at most "
                f"{MAX_ENTITY_MAPPINGS}",
            )
        )
    for i, mapping in enumerate(t.entity_mappings):
        at = ("entityMappings", i)
        identifiers = ENTITY_IDENTIFIERS.get(mapping.entity_type)
        if identifiers is None:
            problems.append(
                rule.problem(
                    (*at, "entityType"),
                    "entity-mapping",
                    f"unknown entity type {mapping.entity_type!r} (known: "
                    f"{', '.join(sorted(ENTITY_IDENTIFIERS))})",
                )
            )
        if len(mapping.field_mappings) > MAX_FIELD_MAPPINGS:
            problems.append(
                rule.problem(
                    (*at, "fieldMappings"),
                    "entity-mapping",
                    f"{len(mapping.field_mappings)} field mappings for {mapping.entity_type}; "
                    f"Sentinel takes at most {MAX_FIELD_MAPPINGS}",
                )
            )
        seen: set[str] = set()
        for j, fm in enumerate(mapping.field_mappings):
            where = (*at, "fieldMappings", j)
            if identifiers is not None and fm.identifier not in identifiers:
                problems.append(
                    rule.problem(
                        (*where, "identifier"),
                        "entity-mapping",
                        f"{fm.identifier!r} is not an identifier of {mapping.entity_type} "
                        f"(valid: {', '.join(sorted(identifiers))})",
                    )
                )
            if fm.identifier in seen:
                problems.append(
                    rule.problem(
                        (*where, "identifier"),
                        "entity-mapping",
                        f"identifier {fm.identifier} is mapped twice in this entity",
                    )
                )
            seen.add(fm.identifier)
            if not _COLUMN.match(fm.column_name):
                problems.append(
                    rule.problem(
                        (*where, "columnName"),
                        "entity-mapping",
                        f"{fm.column_name!r} is not a column name",
                    )
                )
    return problems


def _detail_problems(rule: RuleFile) -> list[Problem]:
    t = rule.template
    problems: list[Problem] = []
    if len(t.custom_details) > MAX_CUSTOM_DETAILS:
        problems.append(
            rule.problem(
                ("customDetails",),
                "custom-details",
                f"{len(t.custom_details)} custom details; Sentinel takes at most "
                f"{MAX_CUSTOM_DETAILS}",
            )
        )
    for key, column in t.custom_details.items():
        if not _DETAIL_KEY.match(key) or len(key) > 20:
            problems.append(
                rule.problem(
                    ("customDetails", key),
                    "custom-details",
                    f"custom detail key {key!r}: letters, digits and _ only, starting with "
                    "a letter, at most 20 characters",
                )
            )
        if not _COLUMN.match(column):
            problems.append(
                rule.problem(
                    ("customDetails", key), "custom-details", f"{column!r} is not a column name"
                )
            )
    override = t.alert_details_override
    if override is not None:
        for key, text, limit in (
            (
                "alertDisplayNameFormat",
                override.alert_display_name_format,
                MAX_DISPLAY_NAME_FORMAT,
            ),
            ("alertDescriptionFormat", override.alert_description_format, MAX_DESCRIPTION_FORMAT),
        ):
            if text is None:
                continue
            where = ("alertDetailsOverride", key)
            if len(text) > limit:
                problems.append(
                    rule.problem(where, "alert-details", f"{key} is longer than {limit}")
                )
            if len(_PLACEHOLDER.findall(text)) > MAX_PLACEHOLDERS:
                problems.append(
                    rule.problem(
                        where,
                        "alert-details",
                        f"{key} uses more than {MAX_PLACEHOLDERS} {{{{column}}}} placeholders",
                    )
                )
    incident = t.incident_configuration
    if incident is not None:
        grouping = incident.grouping_configuration
        where = ("incidentConfiguration", "groupingConfiguration")
        mapped = {m.entity_type for m in t.entity_mappings}
        for entity in grouping.group_by_entities:
            if entity not in mapped:
                problems.append(
                    rule.problem(
                        (*where, "groupByEntities"),
                        "incident-grouping",
                        f"groups by {entity}, which the rule does not map",
                    )
                )
        for detail in grouping.group_by_custom_details:
            if detail not in t.custom_details:
                problems.append(
                    rule.problem(
                        (*where, "groupByCustomDetails"),
                        "incident-grouping",
                        f"groups by custom detail {detail}, which the rule does not define",
                    )
                )
        if not MIN_SCHEDULE <= grouping.lookback_duration <= MAX_GROUPING_LOOKBACK:
            problems.append(
                rule.problem(
                    (*where, "lookbackDuration"),
                    "incident-grouping",
                    "lookbackDuration must be 5m to 7d",
                )
            )
    return problems


def _tactic_problems(rule: QueryFile) -> list[Problem]:
    t = rule.template
    problems: list[Problem] = []
    for i, tactic in enumerate(t.tactics):
        if tactic not in TACTICS:
            problems.append(
                rule.problem(("tactics", i), "tactics", f"{tactic!r} is not a Sentinel tactic")
            )
    if len(set(t.tactics)) != len(t.tactics):
        problems.append(rule.problem(("tactics",), "tactics", "a tactic is listed twice"))
    for i, technique in enumerate(t.relevant_techniques):
        parent = technique.split(".")[0]
        known = TECHNIQUE_TACTICS.get(parent)
        if known is None:
            problems.append(
                rule.problem(
                    ("relevantTechniques", i),
                    "techniques",
                    f"{technique}: not in phiwatch/rules/mitre.py; add it with its tactics",
                )
            )
        elif not known & set(t.tactics):
            problems.append(
                rule.problem(
                    ("relevantTechniques", i),
                    "techniques",
                    f"{technique} belongs to {', '.join(sorted(known))}, none of which is in "
                    "the rule's tactics",
                )
            )
    return problems


def duplicate_id_problems(rules: Sequence[QueryFile]) -> list[Problem]:
    """Rule ids must be unique among the rules linted and the other rule files beside them
    (an id is the rule's resource name in Sentinel: a duplicate overwrites a rule)."""
    owners: dict[str, list[Path]] = {}
    for rule in rules:
        owners.setdefault(str(rule.template.id).lower(), []).append(rule.path)
    linted = {rule.path for rule in rules}
    for directory in {rule.path.parent for rule in rules}:
        for other in sorted(directory.iterdir()):
            if other.resolve() in linted or not is_rule_file(other):
                continue
            try:
                data = yaml.safe_load(other.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and "id" in data:
                owners.setdefault(str(data["id"]).lower(), []).append(other.resolve())
    problems = []
    for rule in rules:
        others = [p for p in owners[str(rule.template.id).lower()] if p != rule.path]
        if others:
            problems.append(
                rule.problem(
                    ("id",),
                    "duplicate-id",
                    f"id {rule.template.id} is also used by {', '.join(p.name for p in others)}",
                )
            )
    return problems


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(  # noqa: S603 - fixed git arguments, no shell
            ["git", "-C", str(directory), *args],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def version_problems(rule: QueryFile) -> tuple[list[Problem], str | None]:
    """A query that differs from git HEAD's needs a higher `version` (Sentinel updates a
    deployed rule from its template only when the version grows). Outside a git work tree,
    or for a file HEAD does not have, there is nothing to compare: (no problems, a note)."""
    top = _git(rule.path.parent, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return [], f"{rule.path.name}: not in a git work tree, version bump not checked"
    root = Path(top.stdout.strip()).resolve()
    relative = rule.path.resolve().relative_to(root).as_posix()
    shown = _git(root, "show", f"HEAD:{relative}")
    if shown is None or shown.returncode != 0:
        return [], None  # a new rule: any version will do
    try:
        before = yaml.safe_load(shown.stdout)
        old_query, old_version = before["query"], str(before["version"])
        old = tuple(int(part) for part in old_version.split("."))
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return [], f"{rule.path.name}: HEAD's version is unreadable, version bump not checked"
    template = rule.template
    if old_query != template.query and template.version_tuple <= old:
        return [
            rule.problem(
                ("version",),
                "version",
                f"the query changed since HEAD but version is still {template.version} "
                f"(HEAD: {old_version}); bump it so Sentinel updates deployed copies",
            )
        ], None
    return [], None


def kql_problems(rule: QueryFile, analysis: KqlAnalysis) -> list[Problem]:
    """Kusto.Language's diagnostics at their place in the file, then what the template needs
    from the query's result (mapped columns) and NRT's limits."""
    problems = [
        Problem(
            rule.path,
            rule.query_position(d.start),
            d.code,
            d.message,
            "error" if d.is_error else "warning",
        )
        for d in analysis.diagnostics
        if d.is_error or d.severity == "Warning"
    ]
    if analysis.errors:
        return problems  # the result columns of a broken query mean little
    columns = set(analysis.column_names)
    t = rule.template

    def need(key: tuple[str | int, ...], column: str, what: str) -> None:
        if column not in columns:
            problems.append(
                rule.problem(
                    key,
                    "result-column",
                    f"{what} {column!r} is not a column of the query's result "
                    f"({', '.join(analysis.column_names)})",
                )
            )

    for i, mapping in enumerate(t.entity_mappings):
        for j, fm in enumerate(mapping.field_mappings):
            need(
                ("entityMappings", i, "fieldMappings", j, "columnName"),
                fm.column_name,
                f"{mapping.entity_type}.{fm.identifier} maps",
            )
    if isinstance(rule, HuntingFile):
        return problems  # no alert, no custom details, no NRT: nothing more reads the result
    t = rule.template
    for key, column in t.custom_details.items():
        need(("customDetails", key), column, f"custom detail {key} reads")
    override = t.alert_details_override
    if override is not None:
        for key, template in (
            ("alertDisplayNameFormat", override.alert_display_name_format),
            ("alertDescriptionFormat", override.alert_description_format),
        ):
            for column in _PLACEHOLDER.findall(template or ""):
                need(("alertDetailsOverride", key), column, f"{key} placeholder")
        for key, named in (
            ("alertSeverityColumnName", override.alert_severity_column_name),
            ("alertTacticsColumnName", override.alert_tactics_column_name),
        ):
            if named:
                need(("alertDetailsOverride", key), named, key)
        for k, prop in enumerate(override.alert_dynamic_properties):
            need(("alertDetailsOverride", "alertDynamicProperties", k), prop.value, "property")
    if t.is_nrt:
        if set(analysis.operators) & {"join", "union"}:
            problems.append(
                rule.problem(
                    ("query",),
                    "nrt",
                    "NRT rules cannot use join or union "
                    f"(this query uses {', '.join(analysis.operators)})",
                )
            )
        if len(analysis.tables) > 1:
            problems.append(
                rule.problem(
                    ("query",),
                    "nrt",
                    f"NRT rules query one table; this one reads {', '.join(analysis.tables)}",
                )
            )
    return problems
