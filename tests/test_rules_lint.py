"""`phiwatch rules lint` on the shipped rules and on broken copies: every problem is located
at the rule file's line and column, and any error exits 1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.rules.kql_check import ValidatorUnavailable, analyze
from phiwatch.rules.lint import lint
from phiwatch.rules.loader import discover
from tests.rules_helpers import copy_rule, edit

runner = CliRunner()
MRA = "phiwatch-mass-record-access"


def lint_one(path: Path, *, check_kql: bool = True):
    return lint([path], check_kql=check_kql)


def rendered(report) -> list[str]:
    return [p.render() for p in report.problems]


def test_every_shipped_rule_lints_clean():
    report = lint(discover())
    assert len(report.rules) >= 4
    assert report.problems == [], rendered(report)


def test_cli_passes_on_the_shipped_rules():
    result = runner.invoke(app, ["rules", "lint"])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_a_column_typo_is_a_kusto_error_at_its_line_and_column(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    line = edit(rule, "and isnotempty(PatientRef)", "and isnotempty(PatientRefs)")
    result = runner.invoke(app, ["rules", "lint", str(rule)])
    assert result.exit_code == 1
    text = rule.read_text().splitlines()[line - 1]
    column = text.index("PatientRefs") + 1
    assert f"{MRA}.yaml:{line}:{column}: error [KS142] The name 'PatientRefs' does not refer" in (
        result.output
    )


def test_wrong_column_case_is_an_error_although_duckdb_would_accept_it(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    line = edit(rule, 'where EventType == "Read"', 'where eventtype == "Read"')
    report = lint_one(rule)
    (problem,) = report.errors
    assert problem.code == "KS142" and "'eventtype'" in problem.message
    assert problem.position.line == line
    assert (
        rule.read_text()
        .splitlines()[line - 1][problem.position.column - 1 :]
        .startswith("eventtype")
    )


def test_a_type_error_and_a_syntax_error(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    edit(rule, "TimeGenerated > ago(lookback)", "TimeGenerated > 5")
    codes = {p.code for p in lint_one(rule).errors}
    assert "KS106" in codes
    edit(rule, "| summarize Patients = count() by ActorKey", "| summarize Patients = by ActorKey")
    assert "KS006" in {p.code for p in lint_one(rule).errors}


def test_a_bad_frequency_points_at_its_line(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    line = edit(rule, "queryFrequency: 30m", "queryFrequency: 2m")
    result = runner.invoke(app, ["rules", "lint", str(rule)])
    assert result.exit_code == 1
    assert (
        f"{MRA}.yaml:{line}:17: error [schedule] queryFrequency 2m is outside Sentinel's "
        "range 5m to 14d" in result.output
    )


def test_period_shorter_than_frequency_and_long_periods(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    edit(rule, "queryPeriod: 1h", "queryPeriod: 15m")
    assert any(
        "shorter than queryFrequency 30m" in p.message
        for p in lint_one(rule, check_kql=False).errors
    )
    edit(rule, "queryPeriod: 15m", "queryPeriod: 15d")
    messages = [p.message for p in lint_one(rule, check_kql=False).errors]
    assert any("queryPeriod 15d is outside" in m for m in messages)
    assert any("needs queryFrequency >= 1h" in m for m in messages)


CONSTRAINTS = [
    ("triggerThreshold: 0", "triggerThreshold: 10001", "trigger", "outside 0 to 10000"),
    ("- T1530", "- T1555", "techniques", "T1555 belongs to CredentialAccess"),
    ("- T1530", "- T9999", "techniques", "not in phiwatch/rules/mitre.py"),
    ("  - Collection\n", "  - Collecting\n", "tactics", "'Collecting' is not a Sentinel"),
    ("identifier: AadUserId", "identifier: AadUser", "entity-mapping", "not an identifier"),
    ("entityType: IP", "entityType: IpAddress", "entity-mapping", "unknown entity type"),
    ("columnName: SrcIpAddr", "columnName: SourceIp", "result-column", "'SourceIp' is not"),
    ("  EventCount: EventCount", "  EventCount: Events", "result-column", "custom detail"),
    ("{{ActorLabel}}: {{Distinct", "{{Actor}}: {{Distinct", "result-column", "placeholder"),
    ("  - Account\n    groupByAlert", "  - Host\n    groupByAlert", "incident-grouping", "Host"),
    ("name: phiwatch - Mass", "name: phiwatch \u2013 Mass", "encoding", "non-ASCII"),
]


def test_template_constraints(tmp_path):
    # One broken copy per constraint, linted together (one Node process for all).
    copies = []
    for index, (old, new, code, message) in enumerate(CONSTRAINTS):
        rule = copy_rule(tmp_path / str(index), MRA, cases=False)
        copies.append((rule, edit(rule, old, new), code, message))
    report = lint([rule for rule, *_ in copies])
    for rule, line, code, message in copies:
        problems = [p for p in report.errors if p.path == rule.resolve() and p.code == code]
        assert problems, (code, [p.render() for p in report.errors if p.path == rule.resolve()])
        assert message in problems[0].message
        assert line - 1 <= problems[0].position.line <= line + 1  # the key or the value
    assert {p.code for p in report.errors} == {c for *_, c, _ in copies} | {"duplicate-id"}


def test_limits_on_counts_and_query_length(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    ip = "  - entityType: IP\n    fieldMappings:\n      - identifier: Address\n"
    edit(rule, "customDetails:", (ip + "        columnName: SrcIpAddr\n") * 3 + "customDetails:")
    details = "".join(f"  Detail{i}: EventCount\n" for i in range(15))
    edit(rule, "alertDetailsOverride:", details + "alertDetailsOverride:")
    edit(rule, "  let threshold = 50;", "  let threshold = 50;" + " " * 10_000)
    messages = [p.message for p in lint_one(rule).errors]
    assert any("6 entity mappings; Sentinel takes at most 5" in m for m in messages)
    assert any("21 custom details; Sentinel takes at most 20" in m for m in messages)
    assert any("characters; Sentinel takes at most 10,000" in m for m in messages)


def test_duplicate_ids_across_files(tmp_path):
    first = copy_rule(tmp_path, MRA, cases=False)
    second = tmp_path / "copy.yaml"
    second.write_text(first.read_text())
    report = lint([first], check_kql=False)  # the sibling is found without being named
    (problem,) = report.errors
    assert problem.code == "duplicate-id" and "copy.yaml" in problem.message
    assert (
        problem.position.line
        == first.read_text().splitlines().index("id: 527d14eb-fb6e-4411-ad95-7b6c6ad17629") + 1
    )


def test_analyzer_warnings_are_warnings(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    edit(rule, "| join kind=leftouter (top_ip)", "| join (top_ip)")
    report = lint_one(rule)
    assert report.errors == []
    (warning,) = report.warnings
    assert warning.code == "KS508" and warning.severity == "warning"
    result = runner.invoke(app, ["rules", "lint", str(rule)])
    assert result.exit_code == 0 and "warning [KS508]" in result.output


def test_nrt_rules_take_no_join(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    for key in ("queryFrequency: 30m\n", "queryPeriod: 1h\n", "triggerOperator: gt\n"):
        edit(rule, key, "")
    edit(rule, "triggerThreshold: 0\n", "")
    edit(rule, "kind: Scheduled", "kind: NRT")
    problems = [p for p in lint_one(rule).errors if p.code == "nrt"]
    assert problems and "cannot use join" in problems[0].message


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_changed_query_needs_a_version_bump(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    rule = copy_rule(tmp_path, MRA, cases=False)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "rule")
    assert lint_one(rule, check_kql=False).errors == []
    edit(rule, "let threshold = 50;", "let threshold = 60;")
    (problem,) = lint_one(rule, check_kql=False).errors
    assert problem.code == "version" and "still 1.0.0 (HEAD: 1.0.0)" in problem.message
    assert problem.position.line == rule.read_text().splitlines().index("version: 1.0.0") + 1
    edit(rule, "version: 1.0.0", "version: 1.1.0")
    assert lint_one(rule, check_kql=False).errors == []


def test_outside_git_the_version_check_is_skipped_with_a_note(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    report = lint_one(rule, check_kql=False)
    assert report.errors == []
    assert report.notes == [f"{MRA}.yaml: not in a git work tree, version bump not checked"]


def test_format_errors_are_reported_with_the_rest(tmp_path):
    rule = copy_rule(tmp_path, MRA, cases=False)
    line = edit(rule, "severity: High", "severity: Severe")
    result = runner.invoke(app, ["rules", "lint", str(rule)])
    assert result.exit_code == 1
    assert f"{MRA}.yaml:{line}:11: error [format] severity:" in result.output


def test_missing_node_or_kusto_package_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ValidatorUnavailable, match="not on PATH"):
        analyze({"q": "print 1"}, node="no-such-node-binary")
    monkeypatch.setenv("PHIWATCH_NODE_MODULES", str(tmp_path))
    with pytest.raises(ValidatorUnavailable, match="run `npm ci`"):
        analyze({"q": "print 1"})
    result = runner.invoke(app, ["rules", "lint"])
    assert result.exit_code == 2 and "npm ci" in result.output


def test_kusto_reports_result_columns_and_tables():
    (analysis,) = analyze(
        {
            "q": "PhiAccessEvents_CL | join kind=inner (SigninLogs) on $left.ActorUserId == "
            "$right.UserId | summarize n = count() by ActorUserId"
        }
    ).values()
    assert analysis.errors == []
    assert analysis.result_columns == [("ActorUserId", "string"), ("n", "long")]
    assert analysis.tables == ["PhiAccessEvents_CL", "SigninLogs"]
    assert analysis.operators == ["join"]
