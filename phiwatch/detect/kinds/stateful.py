"""A rule with logic of its own (geo speed for impossible travel) on the same engine.

The rule names a state class (a snapshot_class: dataclass or __slots__) and the functions
that step it; the engine creates, holds, expires, snapshots and restores that state like
any declared kind's, and the rule raises alerts through the shared suppression step
(phiwatch.detect.kinds.base.enrich / open_alert / raise_once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.kinds.base import Part
from phiwatch.model import AccessEvent

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo


def _no_tick(rule: RuleInfo, state: Any, ctx: DetectionContext) -> None:
    return None


def _no_expiry(state: Any, before: float) -> None:
    return None


@dataclass(frozen=True)
class StatefulRule(Part):
    kind: ClassVar[str] = "stateful"
    state: Callable[[], Any]  # a fresh state
    step: Callable[[RuleInfo, Any, AccessEvent, float, DetectionContext], None]
    tick: Callable[[RuleInfo, Any, DetectionContext], None] = _no_tick
    drop_before: Callable[[Any, float], None] = _no_expiry
    measure: Callable[[Any], int] = len
    name: str = "stateful"

    def new_state(self) -> Any:
        return self.state()

    def observe(
        self, rule: RuleInfo, state: Any, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        self.step(rule, state, event, time, ctx)

    def step_function(self) -> Callable[..., None]:
        return self.step  # the rule's step itself: observe would only pass the call on

    def on_watermark(self, rule: RuleInfo, state: Any, ctx: DetectionContext) -> None:
        self.tick(rule, state, ctx)

    def expire(self, state: Any, before: float) -> None:
        self.drop_before(state, before)

    def size(self, state: Any) -> int:
        return self.measure(state)
