"""`phiwatch rules test`: every shipped rule passes its cases; broken cases and rules fail
with the file, line and row that differ; an unsupported query is never a pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.rules.compare import compare
from phiwatch.rules.engine import QueryResult
from phiwatch.rules.loader import discover
from phiwatch.rules.testing import Outcome, UnknownParameter, run_rule_tests, with_parameters
from tests.rules_helpers import copy_rule, edit

runner = CliRunner()
MRA = "phiwatch-mass-record-access"
KV = "phiwatch-keyvault-failed-operations"
CASES = f"tests/{MRA}"


def outcomes(report) -> dict[str, Outcome]:
    return {case.name: case.outcome for rule in report.rules for case in rule.cases}


def test_every_shipped_rule_passes_its_cases():
    report = run_rule_tests(discover())
    assert report.ok, [(c.name, c.messages) for r in report.rules for c in r.cases]
    by_rule = {r.path.stem: r for r in report.rules}
    for stem in (MRA, KV, "phiwatch-diagnostics-disabled"):
        cases = by_rule[stem].cases
        assert {c.outcome for c in cases} == {Outcome.passed}, stem
        assert any(c.positive for c in cases) and any(not c.positive for c in cases), stem
    incident = by_rule["phiwatch-alerts-incident"].cases
    assert {c.outcome for c in incident} == {Outcome.not_executed}
    assert report.count(Outcome.passed) >= 13


def test_cli_output_names_each_case_and_the_totals():
    result = runner.invoke(app, ["rules", "test"])
    assert result.exit_code == 0, result.output
    assert "PASS         fires-51-patients-in-8-minutes (positive)" in result.output
    assert "NOT EXECUTED fires-latest-version-of-each-alert (positive)" in result.output
    assert "not executed: ingestion_time() and row_number()/prev()" in result.output
    assert "0 fail, 0 error, 0 unsupported, 2 not executed; 0 rule problem(s)" in result.output


def test_a_missing_negative_case_fails_at_the_rule_file(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    for case in (tmp_path / CASES).glob("quiet-*.yaml"):
        case.unlink()
    result = runner.invoke(app, ["rules", "test", str(rule)])
    assert result.exit_code == 1
    line = rule.read_text().splitlines().index("query: |") + 1
    assert f"{MRA}.yaml:{line}:8: error [minimum-tests] 0 negative case(s) in " in result.output
    assert "2 pass" in result.output  # the cases that exist still ran
    more = runner.invoke(app, ["rules", "test", str(rule), "--minimum-tests", "3"])
    assert "2 positive case(s)" in more.output and more.exit_code == 1
    none = runner.invoke(app, ["rules", "test", str(rule), "--minimum-tests", "0"])
    assert none.exit_code == 0, none.output


def test_a_wrong_expectation_names_the_row_and_column(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    case = tmp_path / CASES / "fires-51-patients-in-8-minutes.yaml"
    edit(case, "DistinctPatientCount: 51", "DistinctPatientCount: 50")
    result = runner.invoke(app, ["rules", "test", str(rule)])
    assert result.exit_code == 1
    line = case.read_text().splitlines().index("expected:") + 1
    assert "FAIL         fires-51-patients-in-8-minutes (positive)" in result.output
    assert (
        f"fires-51-patients-in-8-minutes.yaml:{line}:1: expected row 1 " in result.output
        and "differs from result row 1: DistinctPatientCount: expected 50, got 51" in result.output
    )


def test_a_rule_that_stopped_firing_reports_the_missing_row(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    edit(rule, "let threshold = 50;", "let threshold = 51;")
    report = run_rule_tests([rule])
    cases = {c.name: c for c in report.rules[0].cases}
    failed = cases["fires-51-patients-in-8-minutes"]
    assert failed.outcome is Outcome.failed
    assert any("missing row 1: {RuleId: " in m for m in failed.messages), failed.messages
    assert cases["quiet-50-patients-some-twice-and-failed-reads"].outcome is Outcome.passed


def test_a_rule_that_fires_too_often_reports_the_unexpected_row(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    edit(rule, "let threshold = 50;", "let threshold = 49;")
    quiet = {c.name: c for c in run_rule_tests([rule]).rules[0].cases}[
        "quiet-50-patients-some-twice-and-failed-reads"
    ]
    assert quiet.outcome is Outcome.failed
    assert any("unexpected result row 1: {RuleId: " in m for m in quiet.messages)


def test_a_column_typo_in_a_fixture_points_at_the_row(tmp_path):
    rule = copy_rule(tmp_path, KV)
    case = tmp_path / "tests" / KV / "quiet-five-failures-over-five-minutes.yaml"
    line = edit(case, "ActorUserId:", "ActorUserID:")
    report = run_rule_tests([rule])
    broken = {c.name: c for c in report.rules[0].cases}["quiet-five-failures-over-five-minutes"]
    assert broken.outcome is Outcome.error
    (message,) = broken.messages
    column = case.read_text().splitlines()[line - 1].index("ActorUserID") + 1
    assert f"quiet-five-failures-over-five-minutes.yaml:{line}:{column}: " in message
    assert "PhiAccessEvents_CL has no column ActorUserID" in message
    assert not report.ok


def test_an_unsupported_construct_is_never_a_pass(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    edit(rule, "| where TimeGenerated > ago(lookback)", "| where ingestion_time() > ago(lookback)")
    result = runner.invoke(app, ["rules", "test", str(rule)])
    assert result.exit_code == 1
    assert "UNSUPPORTED  fires-51-patients-in-8-minutes (positive)" in result.output
    assert "declare phiwatch.unsupportedLocally" in result.output
    assert "0 pass" in result.output and "4 unsupported" in result.output

    edit(rule, "  ruleId: mass-record-access", "  ruleId: mass-record-access\n"
         "  unsupportedLocally: ingestion_time() is not translated by duckdb-kql")  # fmt: skip
    declared = runner.invoke(app, ["rules", "test", str(rule)])
    assert declared.exit_code == 0, declared.output
    assert "NOT EXECUTED fires-51-patients-in-8-minutes (positive)" in declared.output
    assert "not executed: ingestion_time() is not translated by duckdb-kql" in declared.output
    assert "0 pass" in declared.output and "4 not executed" in declared.output


def test_a_stale_unsupported_declaration_is_flagged(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    edit(rule, "  ruleId: mass-record-access", "  ruleId: mass-record-access\n"
         "  unsupportedLocally: once upon a time it used ingestion_time()")  # fmt: skip
    cases = run_rule_tests([rule]).rules[0].cases
    assert {c.outcome for c in cases} == {Outcome.passed}
    assert all("unsupportedLocally is out of date" in c.messages[-1] for c in cases)


def test_a_broken_case_file_is_an_error_not_a_skip(tmp_path):
    rule = copy_rule(tmp_path, MRA)
    (tmp_path / CASES / "zz-broken.yaml").write_text("description: x\nnow: later\n")
    report = run_rule_tests([rule])
    broken = report.rules[0].cases[-1]
    assert broken.outcome is Outcome.error and not report.ok
    assert any("now:" in m or "expected: Field required" in m for m in broken.messages)


NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
RESULT = QueryResult(
    ["Actor", "Patients", "Last", "Tags"],
    ["string", "long", "datetime", "dynamic"],
    [("alice", 51, NOW, ["a", "b"]), ("bob", 60, NOW, {"k": 1})],
)


def test_compare_ignores_order_and_unlisted_columns():
    assert compare(RESULT, [{"Actor": "bob"}, {"Actor": "alice", "Patients": 51}]) == []
    assert compare(RESULT, [{"Actor": "alice"}, {"Actor": "bob"}], ordered=True) == []


def test_compare_times_as_instants_and_dynamic_as_json():
    expected = [
        {"Actor": "alice", "Last": "2026-01-15T13:00:00+01:00", "Tags": ["a", "b"]},
        {"Actor": "bob", "Last": datetime(2026, 1, 15, 12), "Tags": {"k": 1}},
    ]
    assert compare(RESULT, expected) == []
    assert compare(RESULT, [{"Actor": "alice", "Tags": ["b", "a"]}, {"Actor": "bob"}]) == [
        'expected row 1 {Actor: "alice", Tags: ["b", "a"]} differs from result row 1: '
        'Tags: expected ["b", "a"], got ["a", "b"]'
    ]


def test_compare_reports_missing_unexpected_order_and_columns():
    assert compare(RESULT, [{"Actor": "alice"}]) == [
        'unexpected result row 2: {Actor: "bob", Patients: 60, Last: 2026-01-15T12:00:00Z, '
        'Tags: {"k": 1}}'
    ]
    assert compare(RESULT, [{"Actor": "alice"}, {"Actor": "bob"}, {"Actor": "cara"}]) == [
        'missing row 3: {Actor: "cara"}'
    ]
    assert compare(RESULT, [{"Actor": "bob"}, {"Actor": "alice"}], ordered=True) == [
        'row 1 differs: Actor: expected "bob", got "alice"',
        'row 2 differs: Actor: expected "alice", got "bob"',
    ]
    assert compare(RESULT, [{"Who": "alice"}]) == [
        "expected column(s) Who not in the result (columns: Actor, Patients, Last, Tags)"
    ]
    assert compare(RESULT, [{"Actor": "alice"}, {"Actor": "bob"}], columns=["Actor"]) == [
        "result columns are [Actor, Patients, Last, Tags], expected [Actor]"
    ]


def test_a_case_sets_let_parameters_and_an_unknown_one_is_refused():
    query = "let ids = dynamic([]);  // stream: ids\nlet n = 5;\nT | where Id in (ids)"
    assert with_parameters(query, {"ids": ["a\\b"], "n": 7}) == (
        'let ids = dynamic(["a\\\\b"]);  // stream: ids\nlet n = 7;\nT | where Id in (ids)'
    )
    with pytest.raises(UnknownParameter, match="parameter 'm' has no"):
        with_parameters(query, {"m": 1})
