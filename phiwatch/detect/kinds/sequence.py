"""Ordered sequences (Sigma's temporal_ordered): A then B within T, per key.

`Sequence` is a rule kind of its own: it remembers each key's A events for `within`
seconds and raises when a B follows one, with the A events as evidence. `Then` is the same
idea as a step on another part's open alert: a threshold alert followed by B (failures,
then a successful secret read) is raised in place, never duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds.base import Part, enrich, kept_of, open_alert
from phiwatch.detect.times import window_anchor
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent, Severity

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo


@dataclass(frozen=True)
class Then:
    """B after an open alert: `record` notes B in the alert's facts and says whether it
    changed anything (False: already escalated); then the alert takes `severity` and B
    joins its evidence. Only a B at or after the alert's first event counts."""

    where: Callable[[AccessEvent], bool]
    record: Callable[[Any, AccessEvent, float], bool]  # (facts, B, its time)
    severity: Severity = "High"

    def step(
        self,
        rule: RuleInfo,
        ctx: DetectionContext,
        key: str,
        event: AccessEvent,
        time: float,
        gap: float,
    ) -> None:
        alert = ctx.book.open_for(rule.rule_id, key, time, gap)
        if alert is None or time < alert.first_time:
            return
        if self.record(alert.facts, event, time):
            alert.severity = self.severity
            alert.add_evidence(time, event.event_uid)
            ctx.book.changed(alert)


@dataclass(frozen=True)
class Sequence(Part):
    """A (`first`) then B (`then`) within `within` seconds, per key of the rule's group_by.
    The alert's evidence is the A events in (B − within, B] and B; a later B while it is
    open enriches it. AlertIds anchor on B's window-aligned bucket of width `within`."""

    kind: ClassVar[str] = "sequence"
    first: Callable[[AccessEvent], bool]
    then: Callable[[AccessEvent], bool]
    within: float
    facts: Callable[[AccessEvent], Any]
    name: str = "sequence"

    def takes(self, event: AccessEvent) -> bool:
        return self.first(event) or self.then(event)

    def new_state(self) -> KeyedWindows:
        return KeyedWindows(self.within)

    def adopt(self, state: KeyedWindows) -> KeyedWindows:
        state.width = self.within
        return state

    def observe(
        self,
        rule: RuleInfo,
        state: KeyedWindows,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        key = key_of(rule.group_by, event)
        if key is None:
            return
        window = state.window(key, time, ctx.watermark - rule.lateness)
        if self.first(event):
            window.add(time, event.event_uid, kept_of(event, None))
            return
        before = [e for e in window.span(time - self.within, time) if e[1] != event.event_uid]
        if not before:
            return
        if _has_evidence(ctx, rule, key, time, self.within, event.event_uid):
            return  # B again (redelivered): already in the alert
        if enrich(rule, ctx, key, event, time, self.within):
            return
        open_alert(
            rule,
            ctx,
            key,
            event,
            time,
            anchor=window_anchor(time, self.within),
            facts=self.facts(event),
            entries=before,
            window=(before[0][0], time),
        )

    def expire(self, state: KeyedWindows, before: float) -> None:
        state.expire(before)

    def size(self, state: KeyedWindows) -> int:
        return len(state)


def _has_evidence(
    ctx: DetectionContext, rule: RuleInfo, key: str, time: float, gap: float, uid: str
) -> bool:
    alert: AlertState | None = ctx.book.open_for(rule.rule_id, key, time, gap)
    return alert is not None and any(u == uid for _, u in alert.evidence)
