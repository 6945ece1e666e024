"""The rule format: the pydantic model of Sentinel's analytic-rule template."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from pydantic import ValidationError

from phiwatch.rules.loader import KQL_DIR, discover, load_rule
from phiwatch.rules.template import (
    RuleTemplate,
    format_duration,
    parse_duration,
    to_iso8601,
)

INCIDENT = KQL_DIR / "phiwatch-alerts-incident.yaml"


def scheduled(**changes: object) -> dict:
    data = {
        "id": "0e4a1b52-6b6a-4d8e-9d1e-3f3f7f2c9a10",
        "name": "Test rule",
        "description": "Identifies a test.",
        "severity": "Medium",
        "requiredDataConnectors": [],
        "queryFrequency": "1h",
        "queryPeriod": "1d",
        "triggerOperator": "gt",
        "triggerThreshold": 0,
        "tactics": ["DefenseEvasion"],
        "relevantTechniques": ["T1562.008"],
        "query": "PhiAccessEvents_CL | take 1",
        "version": "1.0.0",
        "kind": "Scheduled",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("text", "value", "iso"),
    [
        ("5m", timedelta(minutes=5), "PT5M"),
        ("90m", timedelta(minutes=90), "PT1H30M"),
        ("2h", timedelta(hours=2), "PT2H"),
        ("30h", timedelta(hours=30), "P1DT6H"),
        ("14d", timedelta(days=14), "P14D"),
    ],
)
def test_durations_parse_format_and_convert_to_iso8601(text, value, iso):
    assert parse_duration(text) == value
    assert format_duration(value) == text
    assert to_iso8601(value) == iso


@pytest.mark.parametrize("text", ["5", "5s", "PT5M", "1.5h", "m5", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_typed_accessors():
    rule = RuleTemplate.model_validate(
        scheduled(phiwatch={"ruleId": "diagnostics-disabled", "run": {"backend": "adx"}})
    )
    assert rule.id == UUID("0e4a1b52-6b6a-4d8e-9d1e-3f3f7f2c9a10")
    assert rule.query_frequency == rule.frequency == timedelta(hours=1)
    assert rule.query_period == rule.lookback == timedelta(days=1)
    assert rule.techniques == ["T1562"] and rule.sub_techniques == ["T1562.008"]
    assert rule.rule_id == "diagnostics-disabled"
    assert rule.runs_in_phiwatch and rule.backend == "adx"
    assert rule.unsupported_locally is None
    assert rule.version_tuple == (1, 0, 0)
    assert rule.matches_trigger(1) and not rule.matches_trigger(0)
    template = rule.to_template()
    assert template["queryFrequency"] == "1h" and template["queryPeriod"] == "1d"
    assert "phiwatch" not in template and template["id"] == "0e4a1b52-6b6a-4d8e-9d1e-3f3f7f2c9a10"


def test_a_rule_not_run_by_phiwatch_has_no_backend():
    rule = RuleTemplate.model_validate(scheduled())
    assert not rule.runs_in_phiwatch and rule.backend is None and rule.rule_id is None


def test_nrt_rules_take_no_schedule_or_trigger():
    nrt = scheduled(
        kind="NRT", queryFrequency=None, queryPeriod=None, triggerOperator=None,
        triggerThreshold=None,
    )  # fmt: skip
    rule = RuleTemplate.model_validate(nrt)
    assert rule.is_nrt and rule.frequency == timedelta(minutes=1)
    assert rule.matches_trigger(1) and not rule.matches_trigger(0)
    with pytest.raises(ValidationError, match=r"kind NRT .* takes no queryFrequency"):
        RuleTemplate.model_validate({**nrt, "queryFrequency": "5m"})


def test_scheduled_rules_need_their_schedule():
    with pytest.raises(ValidationError, match="kind Scheduled needs queryPeriod"):
        RuleTemplate.model_validate(scheduled(queryPeriod=None))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "0e4a1b526b6a4d8e9d1e3f3f7f2c9a10"}, "id must be a GUID"),
        ({"id": "not-a-guid"}, "id must be a GUID"),
        ({"severity": "Critical"}, "severity"),
        ({"kind": "Fusion"}, "kind"),
        ({"queryFrequency": "2x"}, "not a duration"),
        ({"relevantTechniques": ["1562"]}, "relevantTechniques.0"),
        ({"version": "1.0"}, "version"),
        ({"queryFrequncy": "5m"}, "queryFrequncy"),  # a typo is not silently ignored
        ({"phiwatch": {"ruleId": "Mass_Record"}}, "phiwatch.ruleId"),
        ({"phiwatch": {"run": {"backend": "splunk"}}}, "phiwatch.run.backend"),
    ],
)
def test_format_errors_name_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        RuleTemplate.model_validate(scheduled(**change))


def test_every_rule_in_kql_loads():
    paths = discover()
    assert INCIDENT.resolve() in paths
    for path in paths:
        load_rule(path)


def test_the_incident_rule_round_trips_to_its_template():
    raw = yaml.safe_load(INCIDENT.read_text(encoding="utf-8"))
    rule = load_rule(INCIDENT).template
    assert rule.to_template(only_written=True) == {k: v for k, v in raw.items() if k != "phiwatch"}
    effective = rule.to_template()
    assert effective["alertDetailsOverride"]["alertDynamicProperties"] == []
    assert rule.frequency == timedelta(minutes=5) and rule.lookback == timedelta(hours=2)


def test_discover_resolves_rule_names_and_skips_fixture_dirs(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "tests" / "a").mkdir(parents=True)
    (tmp_path / "tests" / "a" / "case.yaml").write_text("x: 1\n")
    assert discover([tmp_path]) == [(tmp_path / "a.yaml").resolve()]
    assert discover(["a"], root=tmp_path) == [(tmp_path / "a.yaml").resolve()]
    with pytest.raises(FileNotFoundError):
        discover(["missing"], root=tmp_path)
