"""Sign-in incidents and their look-alikes: impossible travel and break-glass use.

Drawn from a generator of their own (seeded from the seed and the rule id), delivered and
packed on it too, and added after every other record: the original scenario, the added
sources and their bodies stay byte-for-byte what they were.

- incident: a clinician signs in at the hospital, then 25 minutes later from Bucharest
  (7,350 km, another autonomous system);
- look-alikes: a VPN hop (Amsterdam, 20 minutes later, through the same autonomous system
  as the hospital), a fast 403 km hop (Boston to Montreal in 15 minutes) and a far but slow
  trip (a consultant's Boston sign-in, then Chicago 100 minutes later: 817 km/h, a flight).

Break-glass: the tenant's emergency-access account fails a sign-in and then signs in at
night. `break-glass-sign-in` is off until its `object_ids` are configured, and the demo runs
with default parameters, so with them this is a look-alike that raises nothing; its ground
truth entry carries the parameters (`configure`) under which it is the rule's incident
(tests/test_detect_break_glass_sign_in.py replays it so).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .emitted import Emitted
from .ground_truth import Incident, Lookalike
from .ids import new_uuid
from .plan import ScenarioPlan
from .population import Actor, Population
from .traffic_entra import _HOSPITAL, _location, user_signin
from .writer import Body, pack

RULE = "impossible-travel"
BREAK_GLASS = "break-glass-sign-in"
Place = tuple[str, str, str, float, float, int]
_BUCHAREST: Place = ("Bucharest", "Bucuresti", "RO", 44.4268, 26.1025, 64510)
_AMSTERDAM: Place = ("Amsterdam", "North Holland", "NL", 52.3676, 4.9041, _HOSPITAL[5])
_MONTREAL: Place = ("Montreal", "Quebec", "CA", 45.5019, -73.5674, 64511)
_CHICAGO: Place = ("Chicago", "Illinois", "US", 41.8781, -87.6298, 64512)


def scenario_rng(seed: int, name: str) -> random.Random:
    return random.Random(f"phiwatch-samplegen/{seed}/incidents/{name}")  # noqa: S311


def signin_at(
    pop: Population, actor: Actor, t: datetime, rng: random.Random, place: Place, ip: str
) -> Emitted:
    """A successful interactive sign-in of `actor` at `t` from `place` and `ip`."""
    for _ in range(100):  # user_signin fails now and then, as people do
        made = user_signin(pop, actor, t, rng, interactive=True)
        if isinstance(made.record, dict) and made.record.get("resultType") == "0":
            break
    rec: dict[str, Any] = made.record  # type: ignore[assignment]
    rec["callerIpAddress"] = ip
    rec["location"] = place[2]
    props = rec["properties"]
    props |= {"ipAddress": ip, "location": _location(place), "autonomousSystemNumber": place[5]}
    made.scenario = True
    return made


def _consultant(pop: Population, rng: random.Random) -> Actor:
    """A visiting consultant: an Entra user of the tenant with no other traffic."""
    oid = new_uuid(rng)
    return Actor(
        name="Visiting Consultant",
        kind="user",
        oid=oid,
        app_id=new_uuid(rng),
        ip="198.51.100.201",
        user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15",
        upn=f"consultant.{oid[:4]}@contoso-health.org",
    )


def _reserved(plan: ScenarioPlan) -> set[str]:
    return {
        a.oid
        for a in (
            plan.mass_reader,
            plan.threshold_reader,
            plan.failed_reader,
            plan.diag_deleter,
            plan.cascade_admin,
            plan.diag_disabler,
            plan.kv_attacker,
            plan.kv_challenger,
        )
    }


def slot(
    rng: random.Random,
    plan: ScenarioPlan,
    taken: list[tuple[datetime, datetime]],
    hours: tuple[float, float],
    length: timedelta,
) -> datetime:
    """A start in `hours` after the scenario start (else anywhere in the day) whose span is
    at least 30 minutes from every scenario span already taken; the span is then taken."""
    apart = timedelta(minutes=31)
    for attempt in range(2000):
        lo, hi = hours if attempt < 1000 else (0.5, 23.0)
        start = plan.start + timedelta(hours=rng.uniform(lo, hi))
        end = start + length
        if end <= plan.end and all(start - b >= apart or a - end >= apart for a, b in taken):
            taken.append((start, end))
            return start
    raise RuntimeError("no free slot for a sign-in scenario")


def impossible_travel(
    pop: Population,
    plan: ScenarioPlan,
    rng: random.Random,
    taken: list[tuple[datetime, datetime]],
) -> tuple[list[Emitted], list[Incident], list[Lookalike]]:
    reserved = _reserved(plan) | set(plan.reservations)
    on_site = [c for c in pop.clinicians if c.ip.startswith("10.") and c.oid not in reserved]
    traveller, vpn_user, hopper = rng.sample(on_site, 3)
    consultant = _consultant(pop, rng)
    hospital_ip = "203.0.113.10"  # the hospital NAT (traffic_entra)
    tenant = f"/tenants/{pop.tenant_id}/providers/microsoft.aadiam".lower()
    out: list[Emitted] = []
    t1 = slot(rng, plan, taken, (2, 6), timedelta(minutes=25))
    t2 = t1 + timedelta(minutes=25)
    far_ip = f"192.0.2.{rng.randint(150, 199)}"
    out += [
        signin_at(pop, traveller, t1, rng, _HOSPITAL, hospital_ip),
        signin_at(pop, traveller, t2, rng, _BUCHAREST, far_ip),
    ]
    incident = Incident(
        rule_id=RULE,
        description=(
            "impossible travel: a clinician signs in at the hospital in Boston, then 25 "
            "minutes later from Bucharest (7,350 km, another autonomous system)"
        ),
        actor_user_id=traveller.oid,
        actor_app_id=None,
        src_ip=far_ip,
        target_resource_id=tenant,
        start=t1,
        end=t2,
    )

    v1 = slot(rng, plan, taken, (3, 8), timedelta(minutes=20))
    v2 = v1 + timedelta(minutes=20)
    out += [
        signin_at(pop, vpn_user, v1, rng, _HOSPITAL, hospital_ip),
        signin_at(pop, vpn_user, v2, rng, _AMSTERDAM, "203.0.113.240"),
    ]
    h1 = slot(rng, plan, taken, (3, 8), timedelta(minutes=15))
    h2 = h1 + timedelta(minutes=15)
    out += [
        signin_at(pop, hopper, h1, rng, _HOSPITAL, hospital_ip),
        signin_at(pop, hopper, h2, rng, _MONTREAL, f"198.51.100.{rng.randint(150, 199)}"),
    ]
    s1 = slot(rng, plan, taken, (1, 10), timedelta(minutes=100))
    s2 = s1 + timedelta(minutes=100)
    out += [
        signin_at(pop, consultant, s1, rng, _HOSPITAL, consultant.ip),
        signin_at(pop, consultant, s2, rng, _CHICAGO, "192.0.2.240"),
    ]
    lookalikes = [
        Lookalike(
            kind="travel-same-asn-vpn-hop",
            resembles_rule_id=RULE,
            description=(
                "Boston, then Amsterdam 20 minutes later through the hospital's own "
                "autonomous system (a VPN egress): one network, not travel"
            ),
            actor_user_id=vpn_user.oid,
            actor_app_id=None,
            src_ip="203.0.113.240",
            target_resource_id=None,
            start=v1,
            end=v2,
        ),
        Lookalike(
            kind="travel-403-km-fast-hop",
            resembles_rule_id=RULE,
            description="Boston, then Montreal 15 minutes later: fast, but under 500 km",
            actor_user_id=hopper.oid,
            actor_app_id=None,
            src_ip=None,
            target_resource_id=None,
            start=h1,
            end=h2,
        ),
        Lookalike(
            kind="travel-far-but-slow",
            resembles_rule_id=RULE,
            description="Boston, then Chicago 100 minutes later: 1,362 km at 817 km/h (a flight)",
            actor_user_id=consultant.oid,
            actor_app_id=None,
            src_ip="192.0.2.240",
            target_resource_id=None,
            start=s1,
            end=s2,
        ),
    ]
    return out, [incident], lookalikes


def break_glass(
    pop: Population,
    plan: ScenarioPlan,
    rng: random.Random,
    taken: list[tuple[datetime, datetime]],
) -> tuple[list[Emitted], list[Lookalike]]:
    oid = new_uuid(rng)
    account = Actor(
        name="Emergency Access 1",
        kind="user",
        oid=oid,
        app_id=new_uuid(rng),
        ip="192.0.2.77",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edge/130.0.0",
        upn="emergency.access1@contoso-health.org",
    )
    t1 = slot(rng, plan, taken, (14, 18), timedelta(seconds=90))  # at night
    t2 = t1 + timedelta(seconds=rng.uniform(30, 90))
    failed = signin_at(pop, account, t1, rng, _HOSPITAL, account.ip)
    rec: dict[str, Any] = failed.record  # type: ignore[assignment]
    rec["resultType"] = "50126"
    rec["Level"] = 3
    rec["properties"]["status"] = {
        "errorCode": 50126,
        "failureReason": "Error validating credentials due to invalid username or password.",
    }
    made = [failed, signin_at(pop, account, t2, rng, _HOSPITAL, account.ip)]
    look = Lookalike(
        kind="break-glass-sign-in-unconfigured",
        resembles_rule_id=BREAK_GLASS,
        description=(
            "the emergency-access account fails a sign-in, then signs in: no alert with "
            "default parameters (object_ids empty, the rule is off); with `configure` it is "
            "the rule's incident"
        ),
        actor_user_id=oid,
        actor_app_id=None,
        src_ip=account.ip,
        target_resource_id=f"/tenants/{pop.tenant_id}/providers/microsoft.aadiam".lower(),
        start=t1,
        end=t2,
        details={"configure": {BREAK_GLASS: {"object_ids": [oid]}}},
    )
    return made, [look]


SPRAY = "password-spray"
_SPRAY_HOST: Place = ("Boston", "Massachusetts", "US", 42.3601, -71.0589, 14061)  # a VPS nearby


def failed_at(
    pop: Population,
    actor: Actor,
    t: datetime,
    rng: random.Random,
    place: Place,
    ip: str,
    code: str,
    reason: str,
) -> Emitted:
    """A failed interactive sign-in of `actor` with Entra error `code`."""
    made = signin_at(pop, actor, t, rng, place, ip)
    rec: dict[str, Any] = made.record  # type: ignore[assignment]
    rec["resultType"] = code
    rec["resultDescription"] = reason
    rec["Level"] = 3
    rec["properties"]["status"] = {"errorCode": int(code), "failureReason": reason}
    return made


_BAD_PASSWORD = "Error validating credentials due to invalid username or password."  # noqa: S105
_MFA_REQUIRED = "Strong Authentication is required."


# The shapes a spray rule must not mistake for one: (kind, what it is, address ("{}": a
# drawn last octet), scenario hours, span, accounts, time between them, place, error code).
_SPRAY_LOOKALIKES: tuple[
    tuple[str, str, str, tuple[float, float], timedelta, int, timedelta, Place, str], ...
] = (
    (
        "spray-busy-nat",
        "six staff mistype passwords at the hospital NAT in 15 minutes; "
        "many more signed in from it successfully that day",
        "203.0.113.10",  # traffic_entra's hospital egress, late in the day
        (10, 14),
        timedelta(minutes=15),
        6,
        timedelta(minutes=2, seconds=30),
        _HOSPITAL,
        "50126",
    ),
    (
        "spray-four-users",
        "four accounts fail from one outside address: below five",
        "45.155.206.{}",
        (2, 12),
        timedelta(minutes=5),
        4,
        timedelta(minutes=1),
        _SPRAY_HOST,
        "50126",
    ),
    (
        "spray-spread-out",
        "five accounts fail from one address 12 minutes apart: never five within 20 minutes",
        "45.155.207.{}",
        (2, 12),
        timedelta(minutes=50),
        5,
        timedelta(minutes=12),
        _SPRAY_HOST,
        "50126",
    ),
    (
        "spray-mfa-interrupts",
        "eight staff at a clinic are asked for MFA (50074) within "
        "10 minutes: an interrupt, not a failed password",
        "198.51.100.30",
        (2, 12),
        timedelta(minutes=10),
        8,
        timedelta(minutes=1),
        _HOSPITAL,
        "50074",
    ),
)


def password_spray(
    pop: Population,
    plan: ScenarioPlan,
    rng: random.Random,
    taken: list[tuple[datetime, datetime]],
) -> tuple[list[Emitted], list[Incident], list[Lookalike]]:
    """A spray from a nearby VPS (so no travel rule judges the compromised user), and the
    shapes a spray rule must not mistake for one."""
    reserved = _reserved(plan) | set(plan.reservations)
    staff = [c for c in pop.clinicians if c.oid not in reserved]
    tenant = f"/tenants/{pop.tenant_id}/providers/microsoft.aadiam".lower()
    out: list[Emitted] = []

    def spray(
        people: list[Actor], start: datetime, step: timedelta, ip: str, place: Place, code: str
    ) -> None:
        reason = _MFA_REQUIRED if code == "50074" else _BAD_PASSWORD
        for i, person in enumerate(people):
            at = start + i * step + timedelta(seconds=rng.uniform(0, 20))
            out.append(failed_at(pop, person, at, rng, place, ip, code, reason))

    victims = rng.sample(staff, 12)
    sprayer = f"45.155.205.{rng.randint(10, 250)}"
    t1 = slot(rng, plan, taken, (4, 9), timedelta(minutes=16))
    spray(victims, t1, timedelta(seconds=50), sprayer, _SPRAY_HOST, "50126")
    t_ok = t1 + timedelta(minutes=15)
    out.append(signin_at(pop, victims[5], t_ok, rng, _SPRAY_HOST, sprayer))
    incident = Incident(
        rule_id=SPRAY,
        description=(
            "password spray: one outside address fails passwords for 12 clinicians within "
            "10 minutes, then one of them signs in from it (High)"
        ),
        actor_user_id=victims[5].oid,
        actor_app_id=None,
        src_ip=sprayer,
        target_resource_id=tenant,
        start=t1,
        end=t_ok,
    )
    looks: list[Lookalike] = []
    for kind, what, address, hours, span, people, step, place, code in _SPRAY_LOOKALIKES:
        ip = address.format(rng.randint(10, 250)) if "{}" in address else address
        start = slot(rng, plan, taken, hours, span)
        spray(rng.sample(staff, people), start, step, ip, place, code)
        looks.append(
            Lookalike(
                kind=kind,
                resembles_rule_id=SPRAY,
                description=what,
                actor_user_id=None,
                actor_app_id=None,
                src_ip=ip,
                target_resource_id=tenant,
                start=start,
                end=start + span,
            )
        )
    return out, [incident], looks


def _break_glass(
    pop: Population, plan: ScenarioPlan, rng: random.Random, taken: list[tuple[datetime, datetime]]
) -> tuple[list[Emitted], list[Incident], list[Lookalike]]:
    made, looks = break_glass(pop, plan, rng, taken)
    return made, [], looks


Scenario = Callable[
    [Population, ScenarioPlan, random.Random, list[tuple[datetime, datetime]]],
    tuple[list[Emitted], list[Incident], list[Lookalike]],
]
# name (it seeds the scenario's generator) -> scenario; tests empty it for the scenario as it
# was before these (tests/test_samplegen.py original_only).
SCENARIOS: tuple[tuple[str, Scenario], ...] = (
    (RULE, impossible_travel),
    (BREAK_GLASS, _break_glass),
    (SPRAY, password_spray),
)


def add_signin_incidents(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    incidents: list[Incident],
    lookalikes: list[Lookalike],
    delivered: list[Emitted],
    bodies: list[Body],
) -> tuple[list[Emitted], list[Body]]:
    """The records as delivered and the bodies, with the sign-in scenarios added (and the
    ground truth extended in place)."""
    # Scenarios of one rule stay 30 minutes apart (tests/test_samplegen.py); the sign-in
    # rules' own scenarios are kept apart from each other, and from the original scenario's
    # (the day's first incidents), while other second-wave rules read other keys.
    originals = {"mass-record-access", "keyvault-failed-operations", "diagnostics-disabled"}
    taken = [(i.start, i.end) for i in incidents if i.rule_id in originals] + [
        (b.start, b.end)
        for b in lookalikes
        if b.kind != "incident-actor-normal-traffic" and b.resembles_rule_id in originals
    ]
    made: list[Emitted] = []
    found: list[Incident] = []
    looks: list[Lookalike] = []
    for name, scenario in SCENARIOS:
        records, raised, alike = scenario(pop, plan, scenario_rng(seed, name), taken)
        made, found, looks = made + records, found + raised, looks + alike
    rng = scenario_rng(seed, "delivery")
    for e in made:
        e.line = json.dumps(e.record, separators=(",", ":"))
    incidents += found
    lookalikes += looks
    return delivered + made, sorted(bodies + pack(made, rng), key=lambda b: (b.first, b.stream))
