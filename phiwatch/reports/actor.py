"""`phiwatch report actor`: everything one user or application did on PHI in a range,
next to its usual daily volume.

The actor is matched by object id, UPN or application id (any case) against the events'
`ActorUserId`, `ActorUsername` and `ActingAppId`. "On PHI" is an event with a PHI category
or a patient named (`PhiCategory` not `none`, or a `PatientRef`): a Key Vault read or a
sign-in is not an access to a record. Patients appear only as their pseudonyms.

The usual volume is the median of the actor's PHI events per day over the 30 days before
`since`, counted on the days the archive holds any event (a day the archive does not cover
is not a quiet day: a day counts as covered when an events object is filed under one of its
hours), or "no history" when it covers none of them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from phiwatch.archive.signer import PublicKey
from phiwatch.archive.store import ObjectStore
from phiwatch.reports.render import Table, to_csv, to_html
from phiwatch.reports.source import alerts, archived_days, event_time, events, verify_range
from phiwatch.reports.timespec import TimeRange

HISTORY_DAYS = 30
NO_HISTORY = "no history"


def is_phi(event: dict[str, Any]) -> bool:
    return event.get("PhiCategory") not in (None, "none") or bool(event.get("PatientRef"))


def is_actor(event: dict[str, Any], actor: str) -> bool:
    wanted = actor.strip().lower()
    return any(
        isinstance(event.get(k), str) and str(event[k]).lower() == wanted
        for k in ("ActorUserId", "ActorUsername", "ActingAppId")
    )


@dataclass
class ActorReport:
    actor: str
    range: TimeRange
    verified: bool
    problems: list[str]
    events: int = 0
    patients: Counter[str] = field(default_factory=Counter)
    resources: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    hours: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    alerts: list[str] = field(default_factory=list)
    usual_daily_events: float | str = NO_HISTORY
    history_days: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "range": self.range.as_dict(),
            "verified": self.verified,
            "problems": self.problems,
            "events": self.events,
            "patients": _ranked(self.patients),
            "distinct_patients": len(self.patients),
            "resources": _ranked(self.resources),
            "operations": _ranked(self.operations),
            "hours": {f"{h:02d}": self.hours[h] for h in sorted(self.hours)},
            "failures": _ranked(self.failures),
            "alerts": self.alerts,
            "usual_daily_events": self.usual_daily_events,
            "history_days": self.history_days,
        }

    def sections(self) -> list[tuple[str, list[tuple[str, int]]]]:
        return [
            ("patients", self.patients.most_common()),
            ("resources", self.resources.most_common()),
            ("operations", self.operations.most_common()),
            ("hours", [(f"{h:02d}", self.hours[h]) for h in sorted(self.hours)]),
            ("failures", self.failures.most_common()),
        ]

    def to_csv(self) -> str:
        rows: list[list[object]] = [["events", "", self.events]]
        rows += [[name, key, count] for name, items in self.sections() for key, count in items]
        rows += [["alert", a, 1] for a in self.alerts]
        rows.append(["usual_daily_events", f"{self.history_days} days", self.usual_daily_events])
        return to_csv(("section", "key", "count"), rows)

    def to_html(self) -> str:
        summary = [
            ("Actor", self.actor),
            ("Range", f"{self.range.as_dict()['since']} to {self.range.as_dict()['until']}"),
            ("PHI events", str(self.events)),
            ("Distinct patients", str(len(self.patients))),
            ("Usual daily events", _usual(self)),
            ("Alerts", ", ".join(self.alerts) or "none"),
            ("Problems", "; ".join(self.problems) or "none"),
        ]
        tables = [
            Table(name.capitalize(), (name.rstrip("s"), "events"), items)
            for name, items in self.sections()
        ]
        return to_html("Actor activity report", summary, tables, verified=self.verified)


def _overlaps(alert: dict[str, Any], span: TimeRange) -> bool:
    """An alert read from the range's slack hours counts only if its events touch the range."""
    first = event_time({"TimeGenerated": alert.get("FirstEventTime")})
    last = event_time({"TimeGenerated": alert.get("LastEventTime")})
    if first is None or last is None:
        return True
    return first < span.until and last >= span.since


def _usual(report: ActorReport) -> str:
    if isinstance(report.usual_daily_events, str):
        return report.usual_daily_events
    return f"{report.usual_daily_events:g} (median over {report.history_days} archived days)"


def _ranked(counter: Counter[str]) -> list[dict[str, Any]]:
    return [{"name": k, "count": v} for k, v in counter.most_common()]


def usual_daily_volume(store: ObjectStore, actor: str, span: TimeRange) -> tuple[float | str, int]:
    """(median PHI events a day, days counted) over HISTORY_DAYS before `span.since`."""
    start = span.since - timedelta(days=HISTORY_DAYS)
    covered = archived_days(store, start, span.since)
    if not covered:
        return NO_HISTORY, 0
    per_day: Counter[date] = Counter()
    for event in events(
        store, start, span.since, keys=(actor,), keep=lambda e: is_actor(e, actor) and is_phi(e)
    ):
        moment = event_time(event)
        if moment is not None:
            per_day[moment.date()] += 1
    covered |= set(per_day)  # a batch filed the hour after its events still covers their day
    return float(statistics.median(per_day[d] for d in covered)), len(covered)


def actor_report(
    store: ObjectStore, trusted: dict[str, PublicKey], actor: str, span: TimeRange
) -> ActorReport:
    check = verify_range(store, trusted, span.since, span.until)
    report = ActorReport(actor, span, check.verified, check.problems)
    uids: set[str] = set()
    for event in events(
        store, span.since, span.until, keys=(actor,), keep=lambda e: is_actor(e, actor)
    ):
        if not is_phi(event):
            continue
        report.events += 1
        uids.add(str(event.get("EventUid")))
        if event.get("PatientRef"):
            report.patients[str(event["PatientRef"])] += 1
        report.resources[str(event.get("TargetResourceId") or "unknown")] += 1
        operation = str(event.get("EventSubType") or event.get("Operation") or "unknown")
        report.operations[operation] += 1
        moment = event_time(event)
        if moment is not None:
            report.hours[moment.hour] += 1
        if event.get("EventResult") == "Failure":
            report.failures[operation] += 1
    found: dict[str, None] = {}
    for alert in alerts(store, span.since, span.until):
        evidence = alert.get("EvidenceEventUids") or []
        cites = isinstance(evidence, list) and bool(uids.intersection(evidence))
        if cites or (is_actor(alert, actor) and _overlaps(alert, span)):
            found.setdefault(str(alert.get("AlertId")), None)
    report.alerts = list(found)
    report.usual_daily_events, report.history_days = usual_daily_volume(store, actor, span)
    return report


__all__ = ["HISTORY_DAYS", "NO_HISTORY", "ActorReport", "actor_report", "is_actor", "is_phi"]
