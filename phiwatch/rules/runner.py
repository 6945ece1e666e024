"""phiwatch's scheduled rule runner: the rules whose `phiwatch.run` block asks for it, run when
due on their queryFrequency against Log Analytics or Azure Data Explorer, their result rows
mapped to `Alert`s for the normal alert path (dedupe, archive, Sentinel).

Runs are aligned to multiples of queryFrequency since the Unix epoch, so every instance of the
timer computes the same window for the same run, and an alert's id is uuid5(rule id, entity
key, window end): a repeated or retried run yields the same AlertIds, which the alert path
already deduplicates. Which window ran last is the caller's state (`last_runs`); losing it only
repeats a run.

Each rule's window is (end - queryPeriod, end]: Log Analytics gets it as the query `timespan`;
ADX has no timespan, so the query is run with the `query_now` request option set to the window
end (a rule for ADX bounds its own time with `ago()`, as a Sentinel rule does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from phiwatch.detect.alert_book import alert_id
from phiwatch.model import MAX_EVIDENCE, Alert
from phiwatch.rules.template import Backend, RuleTemplate

log = structlog.get_logger("phiwatch.rules.runner")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_SEVERITIES = ("Informational", "Low", "Medium", "High")


class QueryError(Exception):
    """The service did not answer the query completely (an error or a partial result)."""


class QueryBackend(Protocol):
    def rows(self, rule: RuleTemplate, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The rule's result rows for the window (start, end]."""
        ...


class LogAnalyticsBackend:
    """`LogsQueryClient.query_workspace` with the window as timespan."""

    def __init__(self, client: Any, workspace_id: str) -> None:
        self.client = client  # azure.monitor.query.LogsQueryClient
        self.workspace_id = workspace_id

    def rows(self, rule: RuleTemplate, start: datetime, end: datetime) -> list[dict[str, Any]]:
        from azure.monitor.query import LogsQueryStatus  # noqa: PLC0415 - optional backend

        response = self.client.query_workspace(self.workspace_id, rule.query, timespan=(start, end))
        if response.status != LogsQueryStatus.SUCCESS:
            # Alerting on part of the data could miss or misstate a burst: retry next run.
            raise QueryError(f"Log Analytics answered {response.status}: {response.partial_error}")
        table = response.tables[0]
        return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


class AdxBackend:
    """`KustoClient.execute` with `query_now` pinned to the window end."""

    def __init__(self, client: Any, database: str) -> None:
        self.client = client  # azure.kusto.data.KustoClient
        self.database = database

    def rows(self, rule: RuleTemplate, start: datetime, end: datetime) -> list[dict[str, Any]]:
        from azure.kusto.data import ClientRequestProperties  # noqa: PLC0415 - optional backend

        properties = ClientRequestProperties()
        properties.set_option("query_now", end.isoformat().replace("+00:00", "Z"))
        response = self.client.execute(self.database, rule.query, properties)
        primary = response.primary_results[0]
        return [dict(row.to_dict()) for row in primary]


def window_end(rule: RuleTemplate, now: datetime) -> datetime:
    """The end of the latest run window at `now`: a multiple of queryFrequency since 1970."""
    return _EPOCH + ((now - _EPOCH) // rule.frequency) * rule.frequency


def alert_rule_id(rule: RuleTemplate) -> str:
    """The Alert.RuleId: the phiwatch block's ruleId, else one derived from the GUID."""
    return rule.rule_id or f"kql-{str(rule.id).lower()}"


def _mapped(rule: RuleTemplate, row: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    values = {}
    for mapping in rule.entity_mappings:
        for field_mapping in mapping.field_mappings:
            value = row.get(field_mapping.column_name)
            if value not in (None, ""):
                values[(mapping.entity_type, field_mapping.identifier)] = str(value)
    return values


def _format(template: str | None, row: Mapping[str, Any], fallback: str) -> str:
    if not template:
        return fallback
    text = _PLACEHOLDER.sub(lambda m: "" if row.get(m[1]) is None else str(row[m[1]]), template)
    return text.strip() or fallback


def _time(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default


def to_alert(rule: RuleTemplate, row: Mapping[str, Any], end: datetime) -> Alert:
    """One result row as an Alert (entities through the rule's entityMappings)."""
    entities = _mapped(rule, row)
    name, suffix = entities.get(("Account", "Name")), entities.get(("Account", "UPNSuffix"))
    username = entities.get(("Account", "FullName")) or (
        f"{name}@{suffix}" if name and suffix else name
    )
    key = "\x1f".join(f"{t}.{i}={v}" for (t, i), v in sorted(entities.items()))
    override = rule.alert_details_override
    severity = rule.severity
    tactics = list(rule.tactics)
    if override and override.alert_severity_column_name:
        candidate = row.get(override.alert_severity_column_name)
        severity = candidate if candidate in _SEVERITIES else severity  # Sentinel's fallback
    if override and override.alert_tactics_column_name:
        given = row.get(override.alert_tactics_column_name)
        listed = given.split(",") if isinstance(given, str) else given
        if isinstance(listed, list) and listed:
            tactics = [str(t).strip() for t in listed if str(t).strip()]
    start = end - rule.lookback
    evidence = row.get("EvidenceEventUids")
    details = [f"{label}: {row.get(column)}" for label, column in rule.custom_details.items()]
    return Alert(
        alert_id=alert_id(alert_rule_id(rule), key, end.isoformat()),
        rule_id=alert_rule_id(rule),
        rule_name=rule.name,
        severity=severity,
        tactics=tactics,
        techniques=rule.techniques,
        title=_format(override.alert_display_name_format if override else None, row, rule.name),
        description=_format(
            override.alert_description_format if override else None,
            row,
            rule.description.strip(),
        ),
        reasons=[f"KQL rule {rule.name} {rule.version} matched in ({start}, {end}]", *details],
        actor_user_id=entities.get(("Account", "AadUserId")),
        actor_username=username,
        src_ip_addr=entities.get(("IP", "Address")),
        target_resource_id=entities.get(("AzureResource", "ResourceId")),
        window_start=start,
        window_end=end,
        first_event_time=_time(row.get("FirstEventTime") or row.get("TimeGenerated"), start),
        last_event_time=_time(row.get("LastEventTime") or row.get("TimeGenerated"), end),
        event_count=int(row.get("EventCount") or 1),
        distinct_patient_count=int(row.get("DistinctPatientCount") or 0),
        evidence_event_uids=[str(e) for e in evidence][:MAX_EVIDENCE]
        if isinstance(evidence, list)
        else [],
        detected_at=end,  # the window end, not the wall clock: a re-run gives the same Alert
    )


@dataclass
class RunReport:
    alerts: list[Alert] = field(default_factory=list)
    ran: dict[str, datetime] = field(default_factory=dict)  # rule GUID → window end run
    failed: dict[str, str] = field(default_factory=dict)  # rule GUID → error


def run_due(
    rules: Sequence[RuleTemplate],
    backends: Mapping[Backend, QueryBackend],
    now: datetime,
    last_runs: Mapping[str, datetime] | None = None,
) -> RunReport:
    """Run every phiwatch-executed rule whose current window has not run yet. A failing rule
    is reported and left due (its window runs again next time), the others still run."""
    report = RunReport()
    for rule in rules:
        if not rule.runs_in_phiwatch or rule.backend is None:
            continue
        end = window_end(rule, now)
        last = (last_runs or {}).get(str(rule.id))
        if last is not None and last >= end:
            continue
        backend = backends.get(rule.backend)
        if backend is None:
            report.failed[str(rule.id)] = f"no {rule.backend} backend configured"
            continue
        try:
            rows = backend.rows(rule, end - rule.lookback, end)
        except Exception as exc:  # one rule's failure must not stop the others
            log.warning("scheduled rule failed", rule=rule.name, error=type(exc).__name__)
            report.failed[str(rule.id)] = f"{type(exc).__name__}: {exc}"
            continue
        report.ran[str(rule.id)] = end
        if rule.matches_trigger(len(rows)):
            report.alerts.extend(to_alert(rule, row, end) for row in rows)
    return report
