"""Hunting queries (kql/hunting/): the format, lint and offline cases as for analytic rules.

Each shipped query lints clean and passes its cases; a broken copy (a column typo, a wrong
filter, a missing parameter, an analytic-rule key) fails lint or its cases, at the file's
line; analytic-rule tooling (export, the scheduled runner's discovery) never picks one up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.rules.hunting import HuntingQuery
from phiwatch.rules.lint import lint
from phiwatch.rules.loader import (
    HUNTING_DIR,
    HuntingFile,
    RuleLoadError,
    discover,
    discover_queries,
    load_query_file,
)
from phiwatch.rules.testing import Outcome, run_rule_tests
from tests.rules_helpers import edit

runner = CliRunner()
PATIENT = "phiwatch-patient-access"
ACTOR = "phiwatch-actor-activity"
COVERAGE = "phiwatch-coverage"
SHIPPED = (PATIENT, ACTOR, COVERAGE)


def copy_hunting(tmp_path: Path, stem: str, *, cases: bool = True) -> Path:
    """kql/hunting/<stem>.yaml (and its cases) copied into tmp_path/hunting/."""
    folder = tmp_path / "hunting"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.yaml"
    shutil.copy(HUNTING_DIR / f"{stem}.yaml", target)
    if cases:
        shutil.copytree(HUNTING_DIR / "tests" / stem, folder / "tests" / stem)
    return target


def test_the_shipped_hunting_queries_load_as_hunting_queries():
    paths = discover_queries()
    hunting = [p for p in paths if p.parent == HUNTING_DIR.resolve()]
    assert {p.stem for p in hunting} == set(SHIPPED)
    for path in hunting:
        loaded = load_query_file(path)
        assert isinstance(loaded, HuntingFile) and isinstance(loaded.template, HuntingQuery)
    # Export and the scheduled runner read kql/ alone: a hunting query is never an alert rule.
    assert not set(hunting) & set(discover())


def test_every_shipped_hunting_query_lints_clean_and_passes_its_cases():
    paths = [HUNTING_DIR / f"{stem}.yaml" for stem in SHIPPED]
    report = lint(paths)
    assert report.problems == [], [p.render() for p in report.problems]
    tested = run_rule_tests(paths)
    assert tested.ok, [(c.name, c.messages) for r in tested.rules for c in r.cases]
    for rule in tested.rules:
        assert {c.outcome for c in rule.cases} == {Outcome.passed}, rule.path.name
        assert any(c.positive for c in rule.cases) and any(not c.positive for c in rule.cases)


def test_the_cli_lints_and_tests_hunting_queries_by_default_and_by_name():
    linted = runner.invoke(app, ["rules", "lint"])
    assert linted.exit_code == 0, linted.output
    tested = runner.invoke(app, ["rules", "test", PATIENT, COVERAGE])
    assert tested.exit_code == 0, tested.output
    assert "PASS         fires-every-access-to-the-patient (positive)" in tested.output
    assert "2 rule(s): 5 pass" in tested.output


def test_a_column_typo_is_a_lint_error_at_its_line(tmp_path):
    query = copy_hunting(tmp_path, PATIENT, cases=False)
    line = edit(query, "and PatientRef == patient", "and PatientRefs == patient")
    result = runner.invoke(app, ["rules", "lint", str(query)])
    assert result.exit_code == 1
    column = query.read_text().splitlines()[line - 1].index("PatientRefs") + 1
    assert f"{PATIENT}.yaml:{line}:{column}: error [KS142]" in result.output


def test_a_wrong_filter_fails_the_cases(tmp_path):
    query = copy_hunting(tmp_path, PATIENT)
    # Matching on a prefix would list another patient's accesses (pat-ab for pat-a).
    edit(query, "and PatientRef == patient", "and PatientRef startswith patient")
    report = run_rule_tests([query])
    assert not report.ok
    by_case = {c.name: c for r in report.rules for c in r.cases}
    assert by_case["quiet-no-access-in-the-range"].outcome is Outcome.failed
    coverage = copy_hunting(tmp_path, COVERAGE)
    edit(coverage, "+ 1 - ActiveHours", "- ActiveHours")
    assert not run_rule_tests([coverage]).ok


def test_an_empty_parameter_must_match_nothing(tmp_path):
    # Without the guard, the shipped default ("") lists every event whose field is empty.
    patient = copy_hunting(tmp_path, PATIENT)
    edit(patient, "isnotempty(patient) and ", "")
    actor = copy_hunting(tmp_path, ACTOR)
    edit(actor, "| where isnotempty(actor)\n", "")
    report = run_rule_tests([patient, actor])
    failed = {c.name for r in report.rules for c in r.cases if c.outcome is Outcome.failed}
    assert failed == {"quiet-no-patient-given", "quiet-no-actor-given"}


def test_the_actor_query_fails_when_the_median_is_an_average(tmp_path):
    # The baseline days hold 2, 4 and 12 events: median 4, mean 6.
    query = copy_hunting(tmp_path, ACTOR)
    edit(query, "percentile(DayEvents, 50)", "avg(DayEvents)")
    report = run_rule_tests([query])
    failed = {c.name for r in report.rules for c in r.cases if c.outcome is Outcome.failed}
    assert "fires-days-against-the-median" in failed


def test_a_declared_parameter_without_its_let_line_is_a_lint_error(tmp_path):
    query = copy_hunting(tmp_path, ACTOR, cases=False)
    edit(query, "parameters: [actor]", "parameters: [actor, patient]")
    report = lint([query], check_kql=False, check_git=False)
    (problem,) = report.errors
    assert problem.code == "parameter" and "'patient'" in problem.message
    line = query.read_text().splitlines().index("  parameters: [actor, patient]") + 1
    assert problem.position.line == line


def test_analytic_rule_keys_are_refused_in_a_hunting_query(tmp_path):
    query = copy_hunting(tmp_path, COVERAGE, cases=False)
    line = edit(query, "version: 1.0.0", "version: 1.0.0\nseverity: High")
    try:
        load_query_file(query)
    except RuleLoadError as exc:
        (problem,) = exc.problems
        assert problem.position.line == line + 1 and "severity" in problem.render()
    else:
        raise AssertionError("a hunting query with severity loaded")
