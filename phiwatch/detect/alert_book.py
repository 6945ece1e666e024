"""Open alerts per (rule, key): deterministic ids, suppression, and what changed.

One burst must raise one alert: while an alert is open for a key, further matching events
enrich it (counts, evidence, severity) instead of raising new ones. The id is derived from
the rule, the key and the window-aligned time at which the rule first fired, never from a
counter or the wall clock, so replays, retries and other batch splits give the same id.
"""

from __future__ import annotations

import uuid
from bisect import insort
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phiwatch.detect.snapshot import snapshot_class, upgrades
from phiwatch.model import MAX_ALERT_REFS, AccessEvent, Severity

_ID_NAMESPACE = uuid.UUID("6f1d8f0c-3b7a-4d55-9a43-0c5e2f6b9a10")


def alert_id(rule_id: str, key: str, anchor: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{rule_id}\x1f{key}\x1f{anchor}"))


@snapshot_class
@dataclass(slots=True)
class AlertState:
    alert_id: str
    rule_id: str
    key: str
    severity: Severity
    detected_at: datetime
    first_time: float
    last_time: float
    window_start: float
    window_end: float
    event_count: int = 0
    patients: set[str] = field(default_factory=set)
    evidence: list[tuple[float, str]] = field(default_factory=list)
    actor_user_id: str | None = None
    actor_username: str | None = None
    src_ips: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    # The rule's own facts about this alert (its `Facts` dataclass, a snapshot_class): what
    # it renders beyond the counts above, e.g. the threshold in force when it fired.
    facts: Any = None
    # Past MAX_ALERT_REFS: evidence entries and new patients not kept (the alert says its
    # lists are incomplete rather than growing without bound).
    evidence_dropped: int = 0
    patients_dropped: int = 0

    def add(self, time: float, event: AccessEvent) -> None:
        self.add_entry(
            time,
            event.event_uid,
            patient=event.patient_ref,
            ip=event.src_ip_addr,
            target=event.target_resource_id,
        )
        self.actor_user_id = self.actor_user_id or event.actor_user_id
        self.actor_username = self.actor_username or event.actor_username

    def add_entry(
        self,
        time: float,
        uid: str,
        *,
        patient: str | None = None,
        ip: str | None = None,
        target: str | None = None,
    ) -> None:
        self.event_count += 1
        self.first_time = min(self.first_time, time)
        self.last_time = max(self.last_time, time)
        if patient:
            self.add_patient(patient)
        self.add_evidence(time, uid)
        if ip:
            self.src_ips[ip] += 1
        if target:
            self.targets[target] += 1

    def add_patient(self, patient: str) -> None:
        if len(self.patients) < MAX_ALERT_REFS or patient in self.patients:
            self.patients.add(patient)
        else:
            self.patients_dropped += 1  # may repeat a dropped one: "at least", not distinct

    def add_evidence(self, time: float, uid: str) -> None:
        # Keep the earliest evidence: the start of a burst is what an analyst opens first.
        entry = (time, uid)
        if len(self.evidence) < MAX_ALERT_REFS:
            insort(self.evidence, entry)
        elif entry < self.evidence[-1]:
            insort(self.evidence, entry)
            del self.evidence[MAX_ALERT_REFS:]
            self.evidence_dropped += 1
        else:
            self.evidence_dropped += 1

    @property
    def top_ip(self) -> str | None:
        return _top(self.src_ips)

    @property
    def top_target(self) -> str | None:
        return _top(self.targets)


@upgrades(AlertState)
def _facts_from_extra(fields: dict[str, Any]) -> dict[str, Any]:
    """v1 snapshots kept a rule's facts in a dict, `extra`; it stays a dict in `facts` until
    the engine turns it into the rule's Facts (phiwatch.detect.legacy_v1). Older snapshots
    lack the dropped counters."""
    if "extra" in fields and "facts" not in fields:
        fields["facts"] = fields.pop("extra")
    # Snapshots from before the lists were bounded at MAX_ALERT_REFS kept the earliest 50
    # evidence entries only: what they let go is dropped evidence (each counted event adds
    # one entry), so the alert does not claim a complete list it lost before the restore.
    if "evidence_dropped" not in fields:
        kept = len(fields.get("evidence") or ())
        fields["evidence_dropped"] = max(0, int(fields.get("event_count") or 0) - kept)
    fields.setdefault("patients_dropped", 0)
    return fields


def _top(counter: Counter[str]) -> str | None:
    if not counter:
        return None
    # Most frequent, ties broken by value so the choice does not depend on arrival order.
    return min(counter.items(), key=lambda item: (-item[1], item[0]))[0]


@snapshot_class
class AlertBook:
    __slots__ = ("_changed", "_open", "raised")

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], AlertState] = {}
        self._changed: dict[str, AlertState] = {}
        self.raised: Counter[str] = Counter()

    def open_for(self, rule_id: str, key: str, time: float, gap: float) -> AlertState | None:
        """The alert still open for this key: its last event is within `gap` of `time`."""
        state = self._open.get((rule_id, key))
        if state is not None and state.first_time - gap <= time <= state.last_time + gap:
            return state
        return None

    def open(
        self,
        rule_id: str,
        key: str,
        *,
        anchor: str,
        severity: Severity,
        detected_at: datetime,
        window: tuple[float, float],
    ) -> AlertState:
        state = AlertState(
            alert_id=alert_id(rule_id, key, anchor),
            rule_id=rule_id,
            key=key,
            severity=severity,
            detected_at=detected_at,
            first_time=float("inf"),  # set by the first add()
            last_time=float("-inf"),
            window_start=window[0],
            window_end=window[1],
        )
        self._open[(rule_id, key)] = state
        self._changed[state.alert_id] = state
        self.raised[rule_id] += 1
        return state

    def changed(self, state: AlertState) -> None:
        self._changed[state.alert_id] = state

    def changes(self) -> list[AlertState]:
        """Alerts opened or enriched since the last commit (kept until then, so a batch
        that fails before it is archived emits them on its retry)."""
        return list(self._changed.values())

    def commit(self) -> None:
        self._changed.clear()

    def expire(self, before: float) -> None:
        """Forget open alerts idle since before `before`; a later burst opens a new one."""
        for key in [k for k, s in self._open.items() if s.last_time < before]:
            del self._open[key]

    def __len__(self) -> int:
        return len(self._open)

    def open_alerts(self) -> list[AlertState]:
        return list(self._open.values())

    def drop(self, state: AlertState) -> None:
        """Forget an open alert (one a restored snapshot holds for a rule gone since)."""
        self._open.pop((state.rule_id, state.key), None)
        self._changed.pop(state.alert_id, None)
