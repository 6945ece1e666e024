"""`phiwatch rules export --format arm`: the rules in kql/ as one deployable ARM template.

Each rule becomes a `Microsoft.OperationalInsights/workspaces/providers/alertRules` resource
(the form Sentinel's own content hub templates use) named after the rule's GUID, so a redeploy
updates the rule in place instead of adding a copy. Output is deterministic (rules in file
order, fixed key order) so a diff of two exports shows only what changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from phiwatch.rules.loader import load_rules
from phiwatch.rules.template import TRIGGER_OPERATORS, RuleTemplate, to_iso8601

API_VERSION = "2023-12-01-preview"
DEPLOYMENT_SCHEMA = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
)
RESOURCE_TYPE = "Microsoft.OperationalInsights/workspaces/providers/alertRules"


def _grouping(rule: RuleTemplate) -> dict[str, Any] | None:
    if rule.incident_configuration is None:
        return None
    grouping = rule.incident_configuration.grouping_configuration
    return {
        "createIncident": rule.incident_configuration.create_incident,
        "groupingConfiguration": {
            "enabled": grouping.enabled,
            "reopenClosedIncident": grouping.reopen_closed_incident,
            "lookbackDuration": to_iso8601(grouping.lookback_duration),
            "matchingMethod": grouping.matching_method,
            "groupByEntities": list(grouping.group_by_entities),
            "groupByAlertDetails": list(grouping.group_by_alert_details),
            "groupByCustomDetails": list(grouping.group_by_custom_details),
        },
    }


def rule_properties(rule: RuleTemplate) -> dict[str, Any]:
    """The alertRules `properties` of one rule (ARM names, ISO-8601 durations)."""
    props: dict[str, Any] = {
        "displayName": rule.name,
        "description": rule.description,
        "severity": rule.severity,
        # A deprecated template still deploys (so a redeploy does not orphan it), disabled.
        "enabled": rule.status == "Available",
        "query": rule.query,
    }
    if not rule.is_nrt:
        # NRT rules run every minute on new rows: the API rejects these four for kind NRT.
        assert rule.query_frequency and rule.query_period and rule.trigger_operator
        props["queryFrequency"] = to_iso8601(rule.query_frequency)
        props["queryPeriod"] = to_iso8601(rule.query_period)
        props["triggerOperator"] = TRIGGER_OPERATORS[rule.trigger_operator]
        props["triggerThreshold"] = rule.trigger_threshold
    props["suppressionDuration"] = to_iso8601(rule.suppression_duration)
    props["suppressionEnabled"] = rule.suppression_enabled
    props["tactics"] = list(rule.tactics)
    props["techniques"] = rule.techniques
    props["subTechniques"] = rule.sub_techniques
    props["entityMappings"] = [
        m.model_dump(mode="json", by_alias=True) for m in rule.entity_mappings
    ] or None
    props["customDetails"] = dict(rule.custom_details) or None
    if rule.alert_details_override is not None:
        props["alertDetailsOverride"] = rule.alert_details_override.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    if rule.event_grouping_settings is not None:
        props["eventGroupingSettings"] = rule.event_grouping_settings.model_dump(
            mode="json", by_alias=True
        )
    props["incidentConfiguration"] = _grouping(rule)
    props["alertRuleTemplateName"] = str(rule.id)
    props["templateVersion"] = rule.version
    # ARM treats an explicit null as "unset"; leaving the key out is the same and shorter.
    return {key: value for key, value in props.items() if value is not None}


def rule_resource(rule: RuleTemplate) -> dict[str, Any]:
    return {
        "type": RESOURCE_TYPE,
        "apiVersion": API_VERSION,
        "name": f"[concat(parameters('workspace'), '/Microsoft.SecurityInsights/{rule.id}')]",
        "kind": rule.kind,
        "properties": rule_properties(rule),
    }


def arm_template(rules: Sequence[RuleTemplate]) -> dict[str, Any]:
    ids = [str(rule.id) for rule in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        # Two resources with one name: ARM would deploy only the last; refuse instead.
        raise ValueError(f"rule ids used more than once: {', '.join(duplicates)}")
    return {
        "$schema": DEPLOYMENT_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "workspace": {
                "type": "string",
                "metadata": {"description": "Log Analytics workspace with Microsoft Sentinel"},
            }
        },
        "resources": [rule_resource(rule) for rule in rules],
    }


def render_arm(rules: Sequence[RuleTemplate]) -> str:
    return json.dumps(arm_template(rules), indent=2, ensure_ascii=False) + "\n"


def export_cli(paths: Sequence[Path], format_: str, out_file: Path | None) -> None:
    """`phiwatch rules export`: exit 1 when a rule does not load (a partial export would
    silently drop a rule from the deployment), 2 on a bad option."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if format_ != "arm":
        err.print(f"[bold red]error:[/] unknown format {escape(format_)!s} (supported: arm)")
        raise typer.Exit(2)
    rules, problems = load_rules(paths)
    for problem in problems:
        err.print(f"[red]{escape(problem.render())}[/]")
    if problems:
        raise typer.Exit(1)
    text = render_arm([rule.template for rule in rules])
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(text, encoding="utf-8")
    err.print(f"wrote {len(rules)} rule(s) to {escape(str(out_file))}")
