"""Daily: one alert per key and UTC day (a single-event match whose alerts are days).

Every matching event joins the alert of its key for the UTC day of its event time, opening
it if there is none: a hundred FHIR calls by one user on one chart in a day are one alert,
and the next day's first call opens the next. The AlertId anchors on the day itself, so it
depends only on the rule, the key and the day, never on which event arrived first.

The day is part of the alert book's key: a late event of yesterday (within the allowed
lateness) still finds yesterday's alert after today's opened, instead of raising yesterday's
AlertId again with only itself in it. The book forgets a day's alert a day after its last
event (AlertBook.expire), so what is held follows the keys active in the last two days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds.base import Fired, Fold, enrich, open_alert
from phiwatch.detect.kinds.single_event import SingleEvent
from phiwatch.detect.times import utc
from phiwatch.model import AccessEvent, Severity

if TYPE_CHECKING:
    from phiwatch.detect.context import DetectionContext, RuleInfo

DAY = 86400.0


def utc_day(time: float) -> str:
    """The UTC day of an event time, as the AlertId's anchor and in reasons: 2026-03-02."""
    return utc(time).date().isoformat()


@dataclass(frozen=True)
class Daily(SingleEvent):
    """`where`, `facts` and `alert_key` as for SingleEvent; the gap is the day."""

    kind: ClassVar[str] = "daily"
    fold: Fold | None = None  # (facts, event): every event of the alert, the first included
    # The alert's severity from its facts after each event; None keeps the rule's.
    severity: Callable[[Any], Severity] | None = None
    name: str = "daily"

    def observe(
        self, rule: RuleInfo, state: Fired, event: AccessEvent, time: float, ctx: DetectionContext
    ) -> None:
        key = self.alert_key(event) if self.alert_key else key_of(rule.group_by, event)
        if key is None or not state.first(event.event_uid, time):
            return
        day = utc_day(time)
        book_key = f"{key}|{day}"
        alert = ctx.book.open_for(rule.rule_id, book_key, time, DAY)
        if alert is None:
            alert = open_alert(
                rule,
                ctx,
                book_key,
                event,
                time,
                anchor=day,
                facts=self.facts(event),
                value=event,
                fold=self.fold,
            )
        else:
            enrich(rule, ctx, book_key, event, time, DAY, value=event, fold=self.fold)
            alert.window_start = min(alert.window_start, time)  # a late event of the day
        if self.severity is not None:
            alert.severity = self.severity(alert.facts)
