"""`phiwatch rules export --format arm`: every rule in kql/, field by field."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.rules.export import API_VERSION, RESOURCE_TYPE, arm_template, render_arm
from phiwatch.rules.loader import discover, load_rules
from phiwatch.rules.template import RuleTemplate, to_iso8601

RULES = [rule.template for rule in load_rules(discover())[0]]
OPERATORS = {"gt": "GreaterThan", "lt": "LessThan", "eq": "Equal", "ne": "NotEqual"}
NRT_REJECTS = ("queryFrequency", "queryPeriod", "triggerOperator", "triggerThreshold")


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        (timedelta(minutes=5), "PT5M"),
        (timedelta(minutes=90), "PT1H30M"),
        (timedelta(hours=1), "PT1H"),
        (timedelta(hours=2), "PT2H"),
        (timedelta(days=1), "P1D"),
        (timedelta(days=14), "P14D"),
        (timedelta(hours=30), "P1DT6H"),
        (timedelta(minutes=1441), "P1DT1M"),
        (timedelta(days=1, hours=1, minutes=1), "P1DT1H1M"),
    ],
)
def test_iso8601_durations(value: timedelta, iso: str) -> None:
    assert to_iso8601(value) == iso


def _props(rule: RuleTemplate) -> dict[str, Any]:
    (resource,) = [r for r in arm_template([rule])["resources"] if str(rule.id) in r["name"]]
    return resource


def test_kql_has_rules() -> None:
    assert len(RULES) >= 1


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_field_maps(rule: RuleTemplate) -> None:
    resource = _props(rule)
    assert resource["type"] == RESOURCE_TYPE
    assert resource["apiVersion"] == API_VERSION
    assert resource["kind"] == rule.kind
    # The resource name is the rule GUID, so a redeploy updates the same rule.
    assert resource["name"].endswith(f"/Microsoft.SecurityInsights/{rule.id}')]")
    p = resource["properties"]
    assert p["displayName"] == rule.name
    assert p["description"] == rule.description
    assert p["severity"] == rule.severity
    assert p["enabled"] is (rule.status == "Available")
    assert p["query"] == rule.query
    if rule.kind == "Scheduled":
        assert p["queryFrequency"] == to_iso8601(rule.query_frequency)  # type: ignore[arg-type]
        assert p["queryPeriod"] == to_iso8601(rule.query_period)  # type: ignore[arg-type]
        assert p["triggerOperator"] == OPERATORS[rule.trigger_operator]  # type: ignore[index]
        assert p["triggerThreshold"] == rule.trigger_threshold
    else:
        assert not set(NRT_REJECTS) & set(p)
    assert p["tactics"] == rule.tactics
    assert p["techniques"] == sorted(
        {t.split(".")[0] for t in rule.relevant_techniques}, key=rule.techniques.index
    )
    assert p["subTechniques"] == [t for t in rule.relevant_techniques if "." in t]
    expected_mappings = [
        {
            "entityType": m.entity_type,
            "fieldMappings": [
                {"identifier": f.identifier, "columnName": f.column_name} for f in m.field_mappings
            ],
        }
        for m in rule.entity_mappings
    ]
    assert p.get("entityMappings", []) == expected_mappings
    assert p.get("customDetails", {}) == rule.custom_details
    override = rule.alert_details_override
    if override is None:
        assert "alertDetailsOverride" not in p
    else:
        o = p["alertDetailsOverride"]
        assert o.get("alertDisplayNameFormat") == override.alert_display_name_format
        assert o.get("alertDescriptionFormat") == override.alert_description_format
        assert o.get("alertSeverityColumnName") == override.alert_severity_column_name
        assert o.get("alertTacticsColumnName") == override.alert_tactics_column_name
        assert o.get("alertDynamicProperties", []) == [
            {"alertProperty": d.alert_property, "value": d.value}
            for d in override.alert_dynamic_properties
        ]
    if rule.event_grouping_settings is None:
        assert "eventGroupingSettings" not in p
    else:
        assert p["eventGroupingSettings"] == {
            "aggregationKind": rule.event_grouping_settings.aggregation_kind
        }
    incident = rule.incident_configuration
    if incident is None:
        assert "incidentConfiguration" not in p
    else:
        g = incident.grouping_configuration
        assert p["incidentConfiguration"] == {
            "createIncident": incident.create_incident,
            "groupingConfiguration": {
                "enabled": g.enabled,
                "reopenClosedIncident": g.reopen_closed_incident,
                "lookbackDuration": to_iso8601(g.lookback_duration),
                "matchingMethod": g.matching_method,
                "groupByEntities": g.group_by_entities,
                "groupByAlertDetails": g.group_by_alert_details,
                "groupByCustomDetails": g.group_by_custom_details,
            },
        }
    assert p["suppressionDuration"] == to_iso8601(rule.suppression_duration)
    assert p["suppressionEnabled"] is rule.suppression_enabled
    assert p["templateVersion"] == rule.version
    assert p["alertRuleTemplateName"] == str(rule.id)
    # The phiwatch block is phiwatch's own: Sentinel would reject an unknown property.
    assert not {"phiwatch", "ruleId", "run"} & set(p)


def test_nrt_omits_schedule_fields() -> None:
    base = RULES[0].model_dump(by_alias=True)
    for key in NRT_REJECTS:
        base.pop(key)
    nrt = RuleTemplate.model_validate({**base, "kind": "NRT"})
    resource = _props(nrt)
    assert resource["kind"] == "NRT"
    assert not set(NRT_REJECTS) & set(resource["properties"])
    assert resource["properties"]["query"] == nrt.query


# A JSON-schema-like description of what ARM needs (no jsonschema dependency for one check).
_STRUCTURE: dict[str, Any] = {
    "$schema": str,
    "contentVersion": str,
    "parameters": {"workspace": {"type": str}},
    "resources": [
        {
            "type": str,
            "apiVersion": str,
            "name": str,
            "kind": str,
            "properties": {
                "displayName": str,
                "description": str,
                "severity": str,
                "enabled": bool,
                "query": str,
                "tactics": [str],
                "techniques": [str],
                "suppressionDuration": str,
                "suppressionEnabled": bool,
                "templateVersion": str,
                "alertRuleTemplateName": str,
            },
        }
    ],
}


def _conforms(value: Any, shape: Any, where: str = "$") -> list[str]:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        problems = [f"{where}.{k}: missing" for k in shape if k not in value]
        for key, sub in shape.items():
            if key in value:
                problems += _conforms(value[key], sub, f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [
            p for i, item in enumerate(value) for p in _conforms(item, shape[0], f"{where}[{i}]")
        ]
    return [] if isinstance(value, shape) else [f"{where}: expected {shape.__name__}"]


def test_structure_and_determinism(tmp_path: Path) -> None:
    out = tmp_path / "rules.json"
    result = CliRunner().invoke(app, ["rules", "export", "--format", "arm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert _conforms(document, _STRUCTURE) == []
    assert len(document["resources"]) == len(RULES)
    for resource in document["resources"]:
        assert resource["kind"] in ("Scheduled", "NRT")
        props = resource["properties"]
        for key in ("queryFrequency", "queryPeriod", "suppressionDuration"):
            if key in props:
                assert props[key].startswith("P"), key
    # Same input, same bytes: a redeploy diff shows only real changes.
    assert out.read_text() == render_arm(RULES)
    again = CliRunner().invoke(app, ["rules", "export"])
    assert again.stdout == out.read_text()


def test_unknown_format_is_refused() -> None:
    result = CliRunner().invoke(app, ["rules", "export", "--format", "bicep"])
    assert result.exit_code == 2


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        arm_template([RULES[0], RULES[0]])
