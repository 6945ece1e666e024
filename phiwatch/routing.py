"""Routing keys: which events must meet on one `phi-events` partition.

The `detect` stage keeps all state for a key on the partition that key hashes to, so every
event a detection groups together must carry the same routing key. The key is decided by the
event's source plane:

* data plane (Key Vault, FHIR: someone read or used something): the actor, i.e. the Entra
  object id, else the app id, else the source address, which is exactly what the actor-grouped
  detections count by;
* control plane (Activity Log: someone changed a resource): the subscription of the resource.
  Not the resource itself: a detection may relate a resource to its parents (a diagnostic
  setting deleted because its resource group was deleted), and everything under one
  subscription meets on one partition. Control-plane volume is small, so one partition per
  subscription is no hot spot.

A detection declares which planes it reads and what it groups by; `check_grouping` refuses a
grouping the routing key of a plane cannot serve, at load time.
"""

from __future__ import annotations

from typing import Literal

from phiwatch.detect.detection import actor_key
from phiwatch.model import AccessEvent
from phiwatch.sources import NORMALISERS

Plane = Literal["data", "control"]
Grouping = Literal["actor", "resource", "subscription"]

PLANES: tuple[Plane, ...] = ("data", "control")
# What the routing key of each plane is, and which groupings a key of that kind serves: all
# events of one resource are in one subscription, so a subscription key serves both.
KEY_KIND: dict[Plane, Grouping] = {"data": "actor", "control": "subscription"}
SERVES: dict[Grouping, frozenset[Grouping]] = {
    "actor": frozenset({"actor"}),
    "subscription": frozenset({"subscription", "resource"}),
    "resource": frozenset({"resource"}),
}

_PLANE_BY_PRODUCT: dict[str, Plane] = {n.PRODUCT: n.PLANE for n in NORMALISERS}  # type: ignore[misc]


class RoutingError(ValueError):
    """An event or a detection that no routing key can serve."""


def plane_of(event: AccessEvent) -> Plane:
    try:
        return _PLANE_BY_PRODUCT[event.event_product]
    except KeyError:
        raise RoutingError(f"no source declares product '{event.event_product}'") from None


def routing_key(event: AccessEvent) -> str:
    """The `phi-events` partition key of an event."""
    if plane_of(event) == "data":
        # Without any actor no actor-grouped detection can use the event: any stable key
        # will do, the resource spreads such events instead of piling them on one partition.
        return actor_key(event) or f"res:{(event.target_resource_id or '').lower()}"
    return f"sub:{subscription_of(event.target_resource_id)}"


def subscription_of(resource_id: str | None) -> str:
    """The subscription id in an ARM resource id, lower-cased; '' when there is none."""
    parts = (resource_id or "").lower().split("/")
    if len(parts) > 2 and parts[1] == "subscriptions":
        return parts[2]
    return ""


def check_grouping(name: str, planes: frozenset[str], group_by: str) -> None:
    """Raise RoutingError unless every plane's routing key serves `group_by`."""
    if not planes:
        raise RoutingError(f"{name}: declares no planes (choose from {list(PLANES)})")
    for plane in sorted(planes):
        if plane not in KEY_KIND:
            raise RoutingError(f"{name}: unknown plane '{plane}' (choose from {list(PLANES)})")
        kind = KEY_KIND[plane]  # type: ignore[index]
        if group_by not in SERVES[kind]:
            raise RoutingError(
                f"{name}: group_by '{group_by}' cannot be served by a routing key: "
                f"{plane}-plane events are routed by {kind}, which serves "
                f"{sorted(SERVES[kind])}"
            )
