"""Reading a detect snapshot written before rules were declarations (layout v1).

`detect` keeps per-partition snapshots in Blob across upgrades, so the first restore after
an upgrade reads v1: each rule's state under the attribute names it listed in
`state_attrs`, and its alert facts in `AlertState.extra`. This module loads that into the
current layout, so a partition goes on without losing an open alert, a window or a pending
delete (its AlertIds stay the same). v1 only ever held the three rules below; state of
any other rule id is dropped with one warning and the rule starts empty, as is an open
alert whose facts do not fit its rule's Facts any more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from phiwatch.detect.alert_book import AlertBook
from phiwatch.detect.detection import Detection
from phiwatch.detect.kinds.absence import AbsenceState, Pending
from phiwatch.detect.kinds.base import Fired
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent

log = structlog.get_logger("phiwatch.detect")

# v1 alert facts (AlertState.extra) by AlertId, read before they become Facts.
Extras = dict[str, dict[str, Any]]

LAYOUT = 2  # engine.state()["rules_layout"]; v1 snapshots have no such key


@snapshot_class
@dataclass(slots=True)
class _Pending:
    """v1 diagnostics-disabled's pending delete (the class name is what v1 bytes name)."""

    time: float
    event: AccessEvent
    monitored: str
    arrival: datetime


def upgrade(state: dict[str, Any], rules: Mapping[str, Detection]) -> None:
    """Turn a v1 engine state into the current layout, in place."""
    book: AlertBook = state["book"]
    dropped: set[str] = set()
    extras = {a.alert_id: a.facts for a in book.open_alerts() if isinstance(a.facts, dict)}
    for alert in book.open_alerts():
        rule = rules.get(alert.rule_id)
        if not isinstance(alert.facts, dict):
            continue
        facts = _facts(rule, alert.facts) if rule is not None else None
        if facts is None:
            book.drop(alert)
            dropped.add(alert.rule_id)
        else:
            alert.facts = facts
    upgraded: dict[str, Any] = {}
    for rule_id, old in state["detections"].items():
        if rule_id not in rules:
            continue  # a rule removed since: its state goes, as in any layout
        convert = _RULES.get(rule_id)
        parts = convert(old, book, extras) if convert is not None else None
        if parts is None:
            dropped.add(rule_id)
        else:
            upgraded[rule_id] = parts
    for rule_id in sorted(dropped):
        log.warning("detect snapshot of layout v1: rule state dropped", rule=rule_id)
    state["detections"] = upgraded
    state["rules_layout"] = LAYOUT


def _facts(rule: Detection, extra: dict[str, Any]) -> Any:
    """v1 `extra` keys are the Facts field names (v1 diagnostics' `uids` moved to Fired)."""
    cls = rule.Facts
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in extra.items() if k in names})
    except TypeError:
        return None


def _mass_record_access(
    old: dict[str, Any], book: AlertBook, extras: Extras
) -> dict[str, Any] | None:
    windows = old.get("windows")
    if not isinstance(windows, KeyedWindows):
        return None
    windows.rewrite(lambda kept: (kept[0], kept[0], kept[1], kept[2]))  # (patient, ip, target)
    return {"value_count": windows}


def _keyvault_failed_operations(
    old: dict[str, Any], book: AlertBook, extras: Extras
) -> dict[str, Any] | None:
    failures = old.get("failures")
    if not isinstance(failures, KeyedWindows):
        return None

    def label(kept: tuple[str, str | None, str | None, str | None]) -> tuple[Any, ...]:
        operation, status, ip, target = kept
        return (f"{operation} ({status})" if status else operation, None, ip, target)

    failures.rewrite(label)
    return {"event_count": failures}


def _diagnostics_disabled(
    old: dict[str, Any], book: AlertBook, extras: Extras
) -> dict[str, Any] | None:
    pending, deleted = old.get("pending"), old.get("deleted")
    if not isinstance(pending, dict) or not isinstance(deleted, dict):
        return None
    absence = AbsenceState(
        pending={
            uid: Pending(p.time, p.event, p.monitored, p.arrival) for uid, p in pending.items()
        },
        seen=dict(deleted),
    )
    single = Fired()
    for alert in book.open_alerts():
        if alert.rule_id == "diagnostics-disabled":
            fired = single if getattr(alert.facts, "turned_off", False) else absence.fired
            for uid in sorted(extras.get(alert.alert_id, {}).get("uids", ())):
                fired.first(uid, alert.last_time)
    return {"absence": absence, "single_event": single}


_RULES: dict[str, Callable[[dict[str, Any], AlertBook, Extras], dict[str, Any] | None]] = {
    "mass-record-access": _mass_record_access,
    "keyvault-failed-operations": _keyvault_failed_operations,
    "diagnostics-disabled": _diagnostics_disabled,
}
