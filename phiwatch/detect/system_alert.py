"""Alerts phiwatch raises about itself rather than about access: an archive name clash, a
quarantined batch, a Sentinel backlog, a refused event time.

They carry no evidence events and no entities of a person; what tells them apart is the rule,
the text and the window. One constructor so each of them states only that, and so their ids
are built one way (`alert_id(rule, key, anchor)`, the same contract as the detections').
"""

from __future__ import annotations

from datetime import datetime

from phiwatch.detect.alert_book import alert_id
from phiwatch.model import Alert, Severity


def system_alert(
    *,
    rule_id: str,
    key: str,
    anchor: str,
    rule_name: str,
    severity: Severity,
    tactics: list[str],
    techniques: list[str],
    title: str,
    description: str,
    reasons: list[str],
    at: datetime,
    window: tuple[datetime, datetime] | None = None,
    events: tuple[datetime, datetime] | None = None,
    event_count: int = 0,
) -> Alert:
    """`at` is when it was detected; the window and the event times default to it."""
    window_start, window_end = window or (at, at)
    first, last = events or (at, at)
    return Alert(
        alert_id=alert_id(rule_id, key, anchor),
        rule_id=rule_id,
        rule_name=rule_name,
        severity=severity,
        tactics=tactics,
        techniques=techniques,
        title=title,
        description=description,
        reasons=reasons,
        window_start=window_start,
        window_end=window_end,
        first_event_time=first,
        last_event_time=last,
        event_count=event_count,
        evidence_event_uids=[],
        detected_at=at,
    )
