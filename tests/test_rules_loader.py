"""Rule and case files load with positions: problems point at the file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from phiwatch.rules.fixtures import case_paths, load_case
from phiwatch.rules.loader import RuleLoadError, load_rule
from phiwatch.rules.yaml_positions import Position, load_yaml

RULE = """\
# a comment line
id: 0e4a1b52-6b6a-4d8e-9d1e-3f3f7f2c9a10
name: Test rule
description: Identifies a test.
severity: Medium
queryFrequency: 1h
queryPeriod: 1d
triggerOperator: gt
triggerThreshold: 0
query: |
  // first line
  let window = 10m;
  PhiAccessEvents_CL
  | where TimeGenerated > ago(window)

  | summarize n = count() by ActorUserId
version: 1.0.0
kind: Scheduled
"""


def write(tmp_path: Path, text: str, name: str = "rule.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_offsets_in_a_block_scalar_query_map_to_file_lines_and_columns(tmp_path):
    rule = load_rule(write(tmp_path, RULE))
    query = rule.template.query
    lines = RULE.splitlines()
    for needle in ("// first", "window = 10m", "PhiAccessEvents_CL", "ago(window)", "ActorUserId"):
        at = rule.query_position(query.index(needle))
        assert lines[at.line - 1][at.column - 1 :].startswith(needle), needle
    assert rule.query_position(query.index("ActorUserId")) == Position(16, 30)
    assert rule.query_position(0) == Position(11, 3)


def test_offsets_in_an_indented_block_with_a_blank_line(tmp_path):
    head, rest = RULE.split("query: |\n")
    body, tail = rest.split("version:")
    indented = "".join(("    " + line if line.strip() else line) for line in body.splitlines(True))
    text = head + "query: |\n" + indented + "version:" + tail
    rule = load_rule(write(tmp_path, text))
    at = rule.query_position(rule.template.query.index("ActorUserId"))
    assert text.splitlines()[at.line - 1][at.column - 1 :].startswith("ActorUserId")
    assert at.column == 34


def test_offsets_in_single_line_plain_and_quoted_queries(tmp_path):
    for value, column in (
        ("PhiAccessEvents_CL | take 1", 8),
        ('"PhiAccessEvents_CL | take 1"', 9),
        ("'PhiAccessEvents_CL | take 1'", 9),
    ):
        text = (
            RULE.split("query: |", maxsplit=1)[0]
            + f"query: {value}\nversion: 1.0.0\nkind: Scheduled\n"
        )
        rule = load_rule(write(tmp_path, text))
        assert rule.query_position(rule.template.query.index("take")) == Position(10, column + 21)


def test_folded_queries_fall_back_to_the_start_of_the_value(tmp_path):
    text = RULE.replace("query: |", "query: >")
    rule = load_rule(write(tmp_path, text))
    assert rule.query_position(20) == Position(10, 8)


def test_format_errors_point_at_the_offending_line(tmp_path):
    text = RULE.replace("queryFrequency: 1h", "queryFrequency: 2x").replace(
        "severity: Medium", "severity: Critical"
    )
    with pytest.raises(RuleLoadError) as caught:
        load_rule(write(tmp_path, text))
    rendered = [p.render() for p in caught.value.problems]
    assert any(":6:17: error [format] queryFrequency: " in r and "2x" in r for r in rendered)
    assert any(":5:11: error [format] severity: " in r for r in rendered), rendered


def test_model_level_errors_point_at_kind(tmp_path):
    text = RULE.replace("queryPeriod: 1d\n", "")
    with pytest.raises(RuleLoadError) as caught:
        load_rule(write(tmp_path, text))
    (problem,) = caught.value.problems
    assert problem.position == Position(17, 7)
    assert "kind Scheduled needs queryPeriod" in problem.message


def test_invalid_yaml_is_located(tmp_path):
    with pytest.raises(RuleLoadError) as caught:
        load_rule(write(tmp_path, RULE.replace("name: Test rule", "name: [Test rule")))
    (problem,) = caught.value.problems
    assert problem.code == "yaml" and problem.position.line >= 3


def test_unknown_keys_are_reported_where_they_are(tmp_path):
    with pytest.raises(RuleLoadError) as caught:
        load_rule(write(tmp_path, RULE.replace("kind: Scheduled", "kind: Scheduled\ntrigerOp: 1")))
    (problem,) = caught.value.problems
    assert problem.position == Position(19, 1) and "trigerOp: unknown key" in problem.message


def test_cases_load_and_know_whether_they_are_positive(tmp_path):
    cases = tmp_path / "tests" / "rule"
    cases.mkdir(parents=True)
    write(
        cases,
        "description: fires\nnow: 2026-01-15T12:00:00Z\ntables:\n  PhiAccessEvents_CL:\n"
        "    - {ActorUserId: a}\nexpected:\n  rows:\n    - {n: 1}\n",
        "fires.yaml",
    )
    write(cases, "description: quiet\nnow: 2026-01-15 12:00:00\nexpected: {rows: []}\n", "q.yaml")
    loaded = [load_case(p) for p in case_paths(cases)]
    assert [(c.name, c.positive) for c in loaded] == [("fires", True), ("q", False)]
    assert loaded[1].case.now.tzinfo is not None  # a time without a zone is UTC
    with pytest.raises(RuleLoadError) as caught:
        load_case(write(cases, "description: x\nnow: soon\nexpected: {rows: []}\n", "bad.yaml"))
    assert caught.value.problems[0].position == Position(2, 6)


def test_positions_of_nested_keys():
    document = load_yaml(Path("x.yaml"), "a:\n  - b: 1\n    c: [1, 2]\n")
    assert document.position(("a", 0, "c")) == Position(3, 5)
    assert document.position(("a", 0, "c", 1)) == Position(3, 12)  # the value itself
    assert document.position(("a", 0, "missing")) == Position(2, 5)  # the nearest parent
    assert document.position(("a", 0, "b")) == Position(2, 8)
