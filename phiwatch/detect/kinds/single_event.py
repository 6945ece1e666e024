"""Single-event match (Sigma's plain rule): every matching event raises an alert, or
enriches the one open for its key within the gap. Each EventUid counts once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds.base import Fired, Part, raise_once
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo


@dataclass(frozen=True)
class SingleEvent(Part):
    """The AlertId anchors on the EventUid of the event that opened the alert."""

    kind: ClassVar[str] = "single_event"
    where: Callable[[AccessEvent], bool]
    facts: Callable[[AccessEvent], Any]
    # The alert's key; by default the event's key in the rule's group_by.
    alert_key: Callable[[AccessEvent], str | None] | None = None
    gap: float = 3600.0
    name: str = "single_event"

    def takes(self, event: AccessEvent) -> bool:
        return self.where(event)

    def new_state(self) -> Fired:
        return Fired()

    def observe(
        self, rule: RuleInfo, state: Fired, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        key = self.alert_key(event) if self.alert_key else key_of(rule.group_by, event)
        if key is not None:
            raise_once(rule, ctx, state, key, event, time, gap=self.gap, facts=self.facts)

    def expire(self, state: Fired, before: float) -> None:
        state.expire(before)

    def size(self, state: Fired) -> int:
        return len(state)
