"""`normalize`'s hand-over to `phi-events`: one message per (event, grouping a loaded rule
needs), keyed by the event's key in that grouping, and watermark ticks to every partition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import detections
from phiwatch.detect.engine import MAX_CLOCK_SKEW
from phiwatch.detect.grouping import Grouping
from phiwatch.eventhubs.publisher import EventPublisher, KeyedMessage
from phiwatch.model import AccessEvent
from phiwatch.phievents.message import encode_event, encode_tick
from phiwatch.phievents.routing import RoutedRule, Router

if TYPE_CHECKING:
    from phiwatch.config import Settings

# A partition only hears of event time through its own messages. Without ticks, a partition
# that gets no events for a while (few keys hash to it, a quiet night, or the rules need
# none of the events) holds its last events in the reorder buffer and its pending absence
# rules open: an alert would wait for the next unrelated event there, hours later. So for
# each diagnostics partition it reads, normalize sends every phi-events partition a tick
# whenever the event time it forwarded from there has moved this far since the last one;
# detect's engine takes the slowest active source as a low watermark (DetectionEngine.tick).
TICK_EVERY_SECONDS = 60.0


class PhiEventsPublisher(EventPublisher, Protocol):
    def broadcast(self, body: bytes) -> int:
        """One message to every partition; returns how many."""
        ...


class PublishingForwarder:
    """Each event to `phi-events` once per grouping the loaded rules need it in, and a
    watermark tick to every partition as event time moves on. `counts` says what was sent:
    events handed over, event messages published (in all and per grouping), events no rule
    needed (not published) and tick broadcasts."""

    def __init__(
        self,
        publisher: PhiEventsPublisher,
        rules: Iterable[RoutedRule] | Router,
        tick_every: float = TICK_EVERY_SECONDS,
    ) -> None:
        self.publisher = publisher
        self.router = rules if isinstance(rules, Router) else Router(rules)
        self.tick_every = tick_every
        self._last_tick: dict[str, float] = {}  # per diagnostics-hub stream
        self.counts: Counter[str] = Counter()

    @classmethod
    def for_settings(
        cls, publisher: PhiEventsPublisher, settings: Settings, **kwargs: float
    ) -> PublishingForwarder:
        """A forwarder routing for the rules `detect` loads with the same settings."""
        rules = detections.load_detections(
            settings.detection_params, lateness=float(settings.allowed_lateness_seconds)
        )
        return cls(publisher, rules, **kwargs)

    def forward(self, events: Sequence[tuple[AccessEvent, datetime | None]], stream: str) -> None:
        messages: list[KeyedMessage] = []
        sent: Counter[str] = Counter()
        # Copies the grouping's rules find interchangeable (one source's records in one
        # minute, for log-source-silent): only the earliest per presence key is sent.
        earliest: dict[tuple[Grouping, str], tuple[AccessEvent, datetime | None, str]] = {}
        router = self.router
        for event, arrival in events:
            routes = router.routes(event)
            if not routes:
                sent["unrouted"] += 1
            for grouping, key in routes:
                presence = router.presence(event, grouping)
                if presence is not None:
                    held = earliest.get((grouping, presence))
                    if held is None or _order(event) < _order(held[0]):
                        earliest[(grouping, presence)] = (event, arrival, key)
                    continue
                messages.append(KeyedMessage(key, encode_event(event, arrival, grouping), {}))
                sent[f"messages:{grouping}"] += 1
        for (grouping, _), (event, arrival, key) in sorted(
            earliest.items(), key=lambda item: _order(item[1][0])
        ):
            messages.append(KeyedMessage(key, encode_event(event, arrival, grouping), {}))
            sent[f"messages:{grouping}"] += 1
        self.publisher.publish(messages)
        sent.update(events=len(events), messages=len(messages))
        self.counts.update(sent)
        if not events:
            return
        # The newest event time, each capped at its arrival plus the clock skew the engine
        # allows (as the engine caps an event's say in the watermark), so a record with a
        # wrong clock cannot make the tick claim hours that have not come. Without arrival
        # times (files), the median. Over every event, published or not: event time is
        # what moves detect's watermark, whatever the rules need.
        tick: datetime
        if all(arrival is not None for _, arrival in events):
            skew = timedelta(seconds=MAX_CLOCK_SKEW)
            tick = max(min(e.time_generated, arrival + skew) for e, arrival in events if arrival)
        else:
            times = sorted(e.time_generated for e, _ in events)
            tick = times[len(times) // 2]
        if tick.timestamp() >= self._last_tick.get(stream, float("-inf")) + self.tick_every:
            self.counts["ticks"] += 1
            self.publisher.broadcast(encode_tick(tick, stream))
            self._last_tick[stream] = tick.timestamp()


def _order(event: AccessEvent) -> tuple[datetime, str]:
    return event.time_generated, event.event_uid
