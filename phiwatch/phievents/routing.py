"""Routing: every event reaches, for every grouping a loaded rule needs, the one `phi-events`
partition that owns the event's key in that grouping.

`detect` keeps a rule's state for a key on the partition the key hashes to, so every event a
rule groups together must go there. One key per event cannot serve rules that group the same
event differently (one actor's reads, one patient's readers, one address's sign-ins), so
`normalize` publishes an event once per grouping some loaded rule needs for it, each copy
keyed by `key_of(grouping, event)` and tagged with the grouping; `detect` hands a copy only
to the rules of its grouping (docs/routing.md).

A rule needs an event in its grouping when the event is on one of the rule's planes, the
rule `applies` to it, and the event has a key in that grouping (an event without one cannot
be counted by any rule of it). An event no loaded rule needs is not published at all: rules
never see it, and `detect` learns of event time from the watermark ticks, which the
forwarder computes from every event it was handed, published or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, get_args

from phiwatch.detect.grouping import GROUPINGS, Grouping, key_of
from phiwatch.model import AccessEvent, Plane
from phiwatch.sources import NORMALISERS

PLANES: tuple[Plane, ...] = get_args(Plane)

# How the previous version routed (one message per event, untagged): what its messages, still
# in flight during an upgrade, were keyed by, and so the only rules that may count them.
LEGACY_GROUPING: dict[Plane, Grouping] = {"data": "actor", "control": "subscription"}

_PLANE_BY_PRODUCT: dict[str, Plane] = {n.PRODUCT: n.PLANE for n in NORMALISERS}  # type: ignore[misc]


class RoutingError(ValueError):
    """An event or a rule that no route can serve."""


class RoutedRule(Protocol):
    """What routing needs of a rule (detections and the engine's rule kinds alike)."""

    @property
    def rule_id(self) -> str: ...

    @property
    def group_by(self) -> Grouping: ...

    @property
    def planes(self) -> frozenset[Plane]: ...

    def applies(self, event: AccessEvent) -> bool: ...

    def presence_of(self, event: AccessEvent) -> str | None: ...


def plane_of(event: AccessEvent) -> Plane:
    try:
        return _PLANE_BY_PRODUCT[event.event_product]
    except KeyError:
        raise RoutingError(f"no source declares product '{event.event_product}'") from None


def legacy_grouping(event: AccessEvent) -> Grouping:
    """The grouping an untagged message (the previous version's) was routed by."""
    return LEGACY_GROUPING[plane_of(event)]


class Router:
    """The routes of an event for one set of loaded rules."""

    def __init__(self, rules: Iterable[RoutedRule]) -> None:
        rules = list(rules)
        for rule in rules:
            check_grouping(rule.rule_id, rule.planes, rule.group_by)
        # Per plane, per grouping (in GROUPINGS order, so routes come out in a fixed order):
        # the rules that may need the event in that grouping.
        self._rules: dict[Plane, tuple[tuple[Grouping, tuple[RoutedRule, ...]], ...]] = {
            plane: tuple(
                (grouping, members)
                for grouping in GROUPINGS
                if (
                    members := tuple(
                        r for r in rules if r.group_by == grouping and plane in r.planes
                    )
                )
            )
            for plane in PLANES
        }
        self.groupings: frozenset[Grouping] = frozenset(r.group_by for r in rules)

    def needed(self, event: AccessEvent) -> list[Grouping]:
        """The groupings some loaded rule needs `event` in (it may have no key in them)."""
        return [
            grouping
            for grouping, members in self._rules[plane_of(event)]
            if any(rule.applies(event) for rule in members)
        ]

    def presence(self, event: AccessEvent, grouping: Grouping) -> str | None:
        """The key under which `event`'s copy in `grouping` is interchangeable with others
        (only the earliest per key and batch need be sent), or None when it must be sent:
        every rule of the grouping that applies must name the same key."""
        keys = {
            rule.presence_of(event)
            for grouping_of, members in self._rules[plane_of(event)]
            if grouping_of == grouping
            for rule in members
            if rule.applies(event)
        }
        if len(keys) != 1:
            return None
        return keys.pop()

    def routes(self, event: AccessEvent) -> list[tuple[Grouping, str]]:
        """(grouping, partition key) of every copy of `event` to publish; [] for none."""
        return [
            (grouping, key)
            for grouping in self.needed(event)
            if (key := key_of(grouping, event)) is not None
        ]


def check_grouping(name: str, planes: Iterable[str], group_by: object) -> None:
    """Raise RoutingError unless a route serves `group_by` on every plane in `planes`."""
    planes = frozenset(planes) if not isinstance(planes, str) else frozenset({planes})
    if not planes:
        raise RoutingError(f"{name}: declares no planes (choose from {list(PLANES)})")
    unknown = sorted(p for p in planes if p not in PLANES)
    if unknown:
        raise RoutingError(f"{name}: unknown plane(s) {unknown} (choose from {list(PLANES)})")
    if not isinstance(group_by, str) or group_by not in GROUPINGS:
        raise RoutingError(
            f"{name}: group_by {group_by!r} is not a grouping phi-events routes by "
            f"(choose from {list(GROUPINGS)})"
        )
