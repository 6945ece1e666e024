"""The `outbox-backlog` alert: rows Sentinel has not taken pile up in the outbox.

Not a detection over events: the delivery timer raises it when the outbox holds more pending
entries than `outbox_backlog_alert_entries` (Sentinel has been unreachable or refusing for
a while, or the DCR/role assignment is broken). One AlertId per outbox and UTC hour, so an
outage that lasts all day is one alert per hour, updated as the backlog grows, never a storm.
It is archived like any alert, and sent to Sentinel when it can take it: it is also the
health signal that tells Sentinel's side that rows are arriving late.
"""

from __future__ import annotations

from datetime import datetime

from phiwatch.detect.system_alert import system_alert
from phiwatch.model import Alert

RULE_ID = "outbox-backlog"


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def backlog_alert(location: str, pending: int, threshold: int, when: datetime) -> Alert:
    """`pending` entries wait in the outbox at `location` (a container URL or directory: no
    row content) at `when` (aware, UTC)."""
    hour = hour_of(when)
    return system_alert(
        rule_id=RULE_ID,
        key=location,
        anchor=hour.isoformat(),
        rule_name="Sentinel delivery backlog",
        severity="Medium",
        tactics=["DefenseEvasion"],
        techniques=["T1562.008"],  # Impair Defenses: Disable or Modify Cloud Logs
        title=f"{pending} entries wait in the Sentinel outbox",
        description=(
            "Rows that Microsoft Sentinel did not accept wait in the outbox and are retried "
            "oldest first. A growing backlog means the Logs Ingestion endpoint, the DCR or the "
            "app's role on it is failing: alerts and events reach Sentinel late, and beyond the "
            "outbox bound new rows are refused (they stay in the audit archive). Check the "
            "`sentinel ingestion failed` log lines for the status, fix it, and the timer drains "
            "the backlog."
        ),
        reasons=[
            f"{pending} pending outbox entries; the alert threshold is {threshold}.",
        ],
        at=when,
        window=(hour, when),
    )


__all__ = ["RULE_ID", "backlog_alert", "hour_of"]
