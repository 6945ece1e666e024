"""impossible-travel: one user signs in from two places no one could travel between in time.

Successful interactive Entra sign-ins only, located by the records' own coordinates
(`location.geoCoordinates`; no GeoIP lookup). Each sign-in is judged against its neighbours
in event time, so a late record between two known ones is judged on both sides. A pair
fires when the great-circle distance is at least `min_distance_km` and the implied speed
exceeds `max_speed_kmh` (Panther's impossible_travel_login: 900 km/h, a jet's cruising
speed). Unknown coordinates, an address in `trusted_ranges` (VPN, ZTNA egress) and a pair in
one autonomous system (one carrier's or VPN's egress geolocated apart) never fire.

Later impossible pairs of the user within a day enrich the same alert. PHI read by that
user from the new location's address within an hour of the sign-in raises it to High: the
rule also keeps, per user, the addresses of their recent PHI accesses (data-plane events
with a patient or a PHI category), so a PHI access seen before a late sign-in still counts.
"""

from __future__ import annotations

import ipaddress
import math
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any

from pydantic import Field, field_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import signins

EARTH_RADIUS_KM = 6371.0
HALF_CIRCUMFERENCE_KM = math.pi * EARTH_RADIUS_KM  # no two places are farther apart
ALERT_GAP = 86400.0  # later impossible pairs of the user within a day: the same incident
PHI_WINDOW = 3600.0  # PHI read from the new address within an hour: High
MAX_SIGNINS = 32  # kept per user (the most recent)
MAX_PHI = 64  # PHI accesses kept per user (the most recent; only minutes matter)
MAX_NEW_PLACES = 16  # new locations an alert remembers for the PHI step


class Params(DetectionParams):
    min_distance_km: float = Field(default=500, ge=1, le=20_000)
    max_speed_kmh: float = Field(default=900, ge=100, le=10_000)
    trusted_ranges: tuple[str, ...] = ()  # CIDRs whose sign-ins are never judged

    @field_validator("trusted_ranges")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)


# A kept sign-in: [time, uid, latitude, longitude, asn, address, city, country].
Place = list


@snapshot_class
@dataclass(slots=True)
class SignInWhereabouts:
    signins: dict[str, list[Place]] = field(default_factory=dict)  # actor key → by time
    phi: dict[str, list[list]] = field(default_factory=dict)  # actor key → [time, uid, ip]

    def __len__(self) -> int:
        return len(self.signins) + len(self.phi)


@snapshot_class
@dataclass(slots=True)
class TravelFacts:
    min_distance_km: float  # in force when the alert opened
    max_speed_kmh: float
    # The first impossible pair (by the new sign-in's time): what the alert describes.
    from_place: str
    to_place: str
    from_time: float
    to_time: float
    distance_km: float
    speed_kmh: float | None  # None: the two sign-ins were simultaneous
    from_asn: int | None
    to_asn: int | None
    pairs: int = 0
    counted: list[str] = field(default_factory=list)  # sign-in uids in the alert
    new_places: list[list] = field(default_factory=list)  # [time, address] of new locations
    phi_time: float | None = None  # the PHI access from a new location that raised it
    phi_address: str | None = None


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def is_signin(event: AccessEvent) -> bool:
    return (
        event.event_product == signins.PRODUCT
        and event.event_type == "Logon"
        and event.event_result == "Success"
        and event.is_interactive is True
    )


def is_phi(event: AccessEvent) -> bool:
    """A successful data-plane access to PHI (a denied read reached nothing)."""
    return (
        event.event_product != signins.PRODUCT
        and event.event_result == "Success"
        and (event.patient_ref is not None or event.phi_category != "none")
    )


def place_label(city: str | None, country: str | None) -> str:
    return ", ".join(p for p in (city, country) if p) or "an unnamed place"


def in_ranges(address: str | None, ranges: tuple[str, ...]) -> bool:
    if not address or not ranges:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(r) for r in ranges)


def impossible(params: Params, a: Place, b: Place) -> tuple[float, float | None] | None:
    """(distance, speed) when going from sign-in a to the later b is impossible."""
    if a[4] is not None and a[4] == b[4]:
        return None  # one autonomous system: one egress, geolocated apart
    distance = haversine_km(a[2], a[3], b[2], b[3])
    if distance < params.min_distance_km:
        return None
    hours = (b[0] - a[0]) / 3600
    if hours <= 0:
        return distance, None
    speed = distance / hours
    return (distance, speed) if speed > params.max_speed_kmh else None


def step(
    params: Params,
    rule: RuleInfo,
    state: SignInWhereabouts,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    key = actor_key(event)
    if key is None:
        return
    if is_phi(event):
        phi_step(rule, state, key, event, time, ctx)
        return
    lat, lon = event.src_geo_latitude, event.src_geo_longitude
    if lat is None or lon is None or in_ranges(event.src_ip_addr, params.trusted_ranges):
        return
    kept = state.signins.setdefault(key, [])
    if any(p[1] == event.event_uid for p in kept):
        return  # redelivered
    place: Place = [
        time,
        event.event_uid,
        lat,
        lon,
        event.src_asn,
        event.src_ip_addr,
        event.src_geo_city,
        event.src_geo_country,
    ]
    insort(kept, place, key=lambda p: (p[0], p[1]))
    at = kept.index(place)
    if at > 0:
        judge(params, rule, state, key, kept[at - 1], place, event, time, ctx)
    if at + 1 < len(kept):
        judge(params, rule, state, key, place, kept[at + 1], event, time, ctx)
    del kept[:-MAX_SIGNINS]


def judge(
    params: Params,
    rule: RuleInfo,
    state: SignInWhereabouts,
    key: str,
    a: Place,
    b: Place,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    found = impossible(params, a, b)
    if found is None:
        return
    distance, speed = found
    alert = ctx.book.open_for(rule.rule_id, key, b[0], ALERT_GAP)
    if alert is None:
        facts = TravelFacts(
            min_distance_km=params.min_distance_km,
            max_speed_kmh=params.max_speed_kmh,
            from_place=place_label(a[6], a[7]),
            to_place=place_label(b[6], b[7]),
            from_time=a[0],
            to_time=b[0],
            distance_km=distance,
            speed_kmh=speed,
            from_asn=a[4],
            to_asn=b[4],
        )
        other = b if event.event_uid == a[1] else a
        alert = open_alert(
            rule,
            ctx,
            key,
            event,
            time,
            anchor=b[1],
            facts=facts,
            entries=[(other[0], other[1], (None, None, other[5], None))],
            window=(a[0], b[0]),
        )
        alert.facts.counted = [a[1], b[1]]
    else:
        facts = alert.facts
        for p in (a, b):
            if p[1] not in facts.counted:
                alert.add_entry(p[0], p[1], ip=p[5])
                facts.counted.append(p[1])
        del facts.counted[:-MAX_SIGNINS]
        alert.window_start = min(alert.window_start, a[0])
        alert.window_end = max(alert.window_end, b[0])
        if b[0] < facts.to_time:  # describe the earliest impossible arrival
            facts.from_place, facts.to_place = place_label(a[6], a[7]), place_label(b[6], b[7])
            facts.from_time, facts.to_time = a[0], b[0]
            facts.distance_km, facts.speed_kmh = distance, speed
            facts.from_asn, facts.to_asn = a[4], b[4]
    facts = alert.facts
    facts.pairs += 1
    if b[5] and [b[0], b[5]] not in facts.new_places:
        facts.new_places.append([b[0], b[5]])
        del facts.new_places[:-MAX_NEW_PLACES]
    ctx.book.changed(alert)
    if facts.phi_time is None:
        for t, uid, ip in state.phi.get(key, ()):
            if ip == b[5] and b[0] <= t <= b[0] + PHI_WINDOW:
                raise_for_phi(alert, t, uid, ip)
                break


def phi_step(
    rule: RuleInfo,
    state: SignInWhereabouts,
    key: str,
    event: AccessEvent,
    time: float,
    ctx: DetectionContext,
) -> None:
    ip = event.src_ip_addr
    if ip is None:
        return
    kept = state.phi.get(key)
    if kept is None:
        kept = state.phi[key] = []
    uid = event.event_uid
    # `kept` is in time order (every entry goes in at its bisect point), so the entries
    # equal to this one, and those of its minute, are found by bisecting: every PHI access
    # comes here, and a scan of all MAX_PHI entries was most of its cost.
    at = bisect_left(kept, time, key=_time)
    end = len(kept)
    same = at
    while same < end and kept[same][0] == time:
        if kept[same][1] == uid and kept[same][2] == ip:
            return  # this access again (a redelivery)
        same += 1
    # One access per address and minute is all the PHI step needs. An entry of this
    # minute lies within a minute of it either side (the look is wider than the minute,
    # and asks what the minute test always asked).
    minute = time - time % 60
    near = bisect_left(kept, minute - 60, key=_time)
    while near < end and kept[near][0] < minute + 120:
        p = kept[near]
        if p[2] == ip and p[0] - p[0] % 60 == minute:
            break
        near += 1
    else:
        kept.insert(at, [time, uid, ip])
        del kept[:-MAX_PHI]
    alert = ctx.book.open_for(rule.rule_id, key, time, ALERT_GAP)
    if alert is None or alert.facts.phi_time is not None:
        return
    if any(a == ip and t <= time <= t + PHI_WINDOW for t, a in alert.facts.new_places):
        raise_for_phi(alert, time, event.event_uid, ip)
        ctx.book.changed(alert)


_time = itemgetter(0)  # a kept PHI access's time


def raise_for_phi(alert: AlertState, time: float, uid: str, ip: str) -> None:
    alert.facts.phi_time, alert.facts.phi_address = time, ip
    alert.severity = "High"
    alert.add_evidence(time, uid)


def drop_before(horizon: float, state: SignInWhereabouts, before: float) -> None:
    """Sign-ins older than any pair that could still be impossible; PHI accesses before
    the in-time boundary (a sign-in arriving now is no earlier than that)."""
    _trim(state.signins, before - horizon)
    _trim(state.phi, before)


def _trim(kept: dict[str, list[Any]], cutoff: float) -> None:
    """Drop the entries before `cutoff`, and the actors left with none, in place. Each list
    is in time order, so only actors whose first entry is out of reach are touched: a
    rebuild of every actor's list each batch cost in proportion to all that is held."""
    for key in [k for k, v in kept.items() if not v or v[0][0] < cutoff]:
        entries = kept[key]
        rest = entries[bisect_left(entries, cutoff, key=_time) :]
        if rest:
            kept[key] = rest
        else:
            del kept[key]


class ImpossibleTravel(Detection[Params]):
    rule_id = "impossible-travel"
    rule_name = "Impossible travel between sign-ins"
    severity = "Medium"
    tactics = ("InitialAccess",)
    techniques = ("T1078",)  # Valid Accounts: a stolen credential or session in use
    group_by = "actor"
    planes = frozenset({"data"})
    Params = Params
    Facts = TravelFacts

    def applies(self, event: AccessEvent) -> bool:
        if is_signin(event):
            return event.src_geo_latitude is not None and event.src_geo_longitude is not None
        return is_phi(event) and event.src_ip_addr is not None

    def declare(self) -> StatefulRule:
        params = self.params
        # No two sign-ins farther apart than this can be an impossible pair.
        horizon = HALF_CIRCUMFERENCE_KM / params.max_speed_kmh * 3600
        return StatefulRule(
            state=SignInWhereabouts,
            step=partial(step, params),
            drop_before=partial(drop_before, horizon),
            name="travel",
        )

    def render(self, state: AlertState) -> Alert:
        facts: TravelFacts = state.facts
        who = actor_label(state)
        minutes = round((facts.to_time - facts.from_time) / 60)
        speed = (
            f"an implied {facts.speed_kmh:,.0f} km/h"
            if facts.speed_kmh is not None
            else "no time at all between them"
        )
        asns = (
            f"different networks (AS{facts.from_asn} and AS{facts.to_asn})"
            if facts.from_asn is not None and facts.to_asn is not None
            else "networks not both known"
        )
        reasons = [
            f"Signed in from {facts.from_place} at {hhmm(facts.from_time)}, then from "
            f"{facts.to_place} at {hhmm(facts.to_time)}: {facts.distance_km:,.0f} km in "
            f"{minutes} min, {speed}; the rule fires at {facts.min_distance_km:,.0f} km or more "
            f"and over {facts.max_speed_kmh:,.0f} km/h.",
            f"The earlier sign-in at {facts.from_place} is the user's last known location; the "
            f"two came from {asns}, so one VPN or carrier egress does not explain them.",
        ]
        if facts.pairs > 1:
            reasons.append(f"{facts.pairs} impossible pairs of sign-ins within a day.")
        title = f"Impossible travel by {who}: {facts.from_place} to {facts.to_place}"
        if facts.phi_time is not None:
            reasons.append(
                f"PHI was accessed from the new location's address {facts.phi_address} at "
                f"{hhmm(facts.phi_time)}, within an hour of the sign-in: severity is High."
            )
            title += ", then PHI accessed"
        reasons.append(
            "Check first: whether the user is travelling or on a VPN, the sign-in's device "
            "and MFA details, and what was accessed from the new address."
        )
        return self.base_alert(
            state,
            title=title,
            description=(
                f"{who} signed in successfully from {facts.from_place} and from "
                f"{facts.to_place} {facts.distance_km:,.0f} km apart within {minutes} minutes, "
                "faster than any flight. One of the sign-ins is likely a stolen credential or "
                "session in use; confirm with the user and revoke sessions if it was not them."
            ),
            reasons=reasons,
        )


DETECTION = ImpossibleTravel
