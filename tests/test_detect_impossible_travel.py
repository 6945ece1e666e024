"""impossible-travel on events and from raw sign-in records."""

from __future__ import annotations

import pytest

import detections
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import signins
from tests import records
from tests.harness import run

RULE = "impossible-travel"
DAY = "2026-03-02"
AADIAM = "/tenants/t-1/providers/microsoft.aadiam"
BOSTON = (42.3355, -71.1055, "Boston")
FRANKFURT = (50.1109, 8.6821, "Frankfurt")
NEW_YORK = (40.7128, -74.0060, "New York")  # 306 km from Boston
CHICAGO = (41.8781, -87.6298, "Chicago")  # 1,366 km from Boston


def signin(
    clock: str,
    where: tuple[float, float, str],
    *,
    asn: int | None = 64500,
    ip: str = "203.0.113.10",
    uid: str | None = None,
    interactive: bool = True,
    result: str = "Success",
    actor: str = "alice@contoso-health.example",
) -> AccessEvent:
    lat, lon, city = where
    event = access(
        f"{DAY} {clock}+00:00",
        actor=actor,
        product=signins.PRODUCT,
        event_type="Logon",
        sub_type="Interactive" if interactive else "NonInteractive",
        operation="Sign-in activity",
        result=result,
        ip=ip,
        target=AADIAM,
        uid=uid or f"signin-{clock}-{city}-{actor}",
    )
    return event.model_copy(
        update={
            "src_geo_latitude": lat,
            "src_geo_longitude": lon,
            "src_geo_city": city,
            "src_geo_country": "US" if lon < 0 else "DE",
            "src_asn": asn,
            "is_interactive": interactive,
        }
    )


def home() -> AccessEvent:
    return signin("10:00:00", BOSTON)


def abroad(clock: str = "10:30:00", **kw) -> AccessEvent:
    kw.setdefault("asn", 64999)
    kw.setdefault("ip", "198.51.100.7")
    return signin(clock, FRANKFURT, **kw)


def phi_read(clock: str, ip: str = "198.51.100.7") -> AccessEvent:
    return access(f"{DAY} {clock}+00:00", patient="p-1", ip=ip)


def test_two_cities_far_apart_within_minutes_fire_medium():
    first, second = home(), abroad()
    (alert,) = RuleHarness(RULE).feed(first, second).finish().alerts
    assert alert.alert_id == alert_id(RULE, actor_key(second), second.event_uid)
    assert alert.severity == "Medium"
    assert alert.title == (
        "Impossible travel by alice@contoso-health.example: Boston, US to Frankfurt, DE"
    )
    assert alert.reasons[0] == (
        "Signed in from Boston, US at 2026-03-02 10:00:00 UTC, then from Frankfurt, DE at "
        "2026-03-02 10:30:00 UTC: 5,901 km in 30 min, an implied 11,803 km/h; the rule fires "
        "at 500 km or more and over 900 km/h."
    )
    assert "different networks (AS64500 and AS64999)" in alert.reasons[1]
    assert alert.reasons[-1].startswith("Check first:")
    assert alert.actor_user_id == second.actor_user_id
    assert alert.src_ip_addr in {"203.0.113.10", "198.51.100.7"}
    assert alert.target_resource_id == AADIAM
    assert alert.evidence_event_uids == [first.event_uid, second.event_uid]
    assert (alert.tactics, alert.techniques) == (["InitialAccess"], ["T1078"])


def test_phi_from_the_new_address_within_an_hour_raises_the_same_alert_to_high():
    rule = RuleHarness(RULE).feed(home(), abroad())
    (medium,) = rule.alerts
    read = phi_read("11:10:00")
    (alert,) = rule.feed(read).finish().alerts
    assert alert.alert_id == medium.alert_id
    assert alert.severity == "High"
    assert alert.title.endswith(", then PHI accessed")
    assert read.event_uid in alert.evidence_event_uids
    assert any("198.51.100.7" in r and "severity is High" in r for r in alert.reasons)


@pytest.mark.parametrize(
    "read",
    [
        phi_read("11:31:00"),  # more than an hour after the sign-in
        phi_read("10:40:00", ip="203.0.113.10"),  # from the old location's address
        access(f"{DAY} 10:40:00+00:00", ip="198.51.100.7"),  # not PHI
        access(f"{DAY} 10:40:00+00:00", ip="198.51.100.7", patient="p-1", result="Failure"),
    ],
)
def test_other_reads_leave_it_medium(read):
    (alert,) = RuleHarness(RULE).feed(home(), abroad(), read).finish().alerts
    assert alert.severity == "Medium"


def test_phi_seen_before_a_late_signin_still_counts():
    rule = RuleHarness(RULE).feed(home(), phi_read("10:40:00"))
    (alert,) = rule.feed(abroad()).finish().alerts  # the sign-in arrives late
    assert alert.severity == "High"


@pytest.mark.parametrize(
    ("events", "why"),
    [
        ([home(), abroad(asn=64500)], "one autonomous system (a VPN hop)"),
        ([home(), signin("10:20:00", NEW_YORK, asn=64999)], "306 km: under 500 km, fast"),
        ([home(), signin("18:00:00", FRANKFURT, asn=64999)], "far but slow: 737 km/h"),
        ([home(), signin("10:30:00", (0.0, 0.0, "?"), asn=None)], "no coordinates"),
        ([home(), abroad(interactive=False)], "non-interactive"),
        ([home(), abroad(result="Failure")], "a failed sign-in"),
        ([home(), abroad(actor="bob@contoso-health.example")], "two users"),
    ],
)
def test_look_alikes_stay_quiet(events, why):
    if events[1].src_geo_city == "?":
        events[1] = events[1].model_copy(
            update={"src_geo_latitude": None, "src_geo_longitude": None}
        )
    assert RuleHarness(RULE).feed(*events).finish().alerts == [], why


def test_trusted_ranges_are_never_judged():
    rule = RuleHarness(RULE, {"trusted_ranges": ["198.51.100.0/24"]})
    assert rule.feed(home(), abroad()).finish().alerts == []


def test_thresholds_are_parameters():
    hop = [home(), signin("10:45:00", CHICAGO, asn=64999)]  # 1,366 km in 45 min
    assert len(RuleHarness(RULE).feed(*hop).finish().alerts) == 1
    assert RuleHarness(RULE, {"min_distance_km": 1500}).feed(*hop).finish().alerts == []
    assert RuleHarness(RULE, {"max_speed_kmh": 2000}).feed(*hop).finish().alerts == []


@pytest.mark.parametrize(
    "params",
    [{"max_speed_kmh": 10}, {"min_distance_km": 0}, {"trusted_ranges": ["not-a-cidr"]}, {"x": 1}],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(detections.RegistryError, match="bad parameters"):
        RuleHarness(RULE, params)


def test_a_late_signin_between_two_known_ones_is_judged_on_both_sides():
    # Boston 10:00 and Boston 10:40 are fine; Frankfurt at 10:30 arrives last, in time.
    rule = RuleHarness(RULE).feed(home(), signin("10:40:00", BOSTON))
    assert rule.alerts == []
    late = abroad("10:30:00")
    (alert,) = rule.feed(late).finish().alerts
    assert alert.alert_id == alert_id(RULE, actor_key(late), late.event_uid)
    assert alert.event_count == 3  # both neighbours and the late sign-in
    assert "2 impossible pairs of sign-ins within a day." in alert.reasons


def test_the_way_back_enriches_the_same_alert():
    events = [home(), abroad(), signin("13:00:00", BOSTON)]  # back in 2.5 h: 2,359 km/h
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.event_count == 3


def test_redelivery_restarts_and_batch_splits_change_nothing():
    events = [home(), abroad(), phi_read("10:50:00"), signin("13:00:00", BOSTON)]
    (once,) = RuleHarness(RULE).feed(*events).finish().alerts
    split = RuleHarness(RULE)
    for event in events:
        split.feed(event, event).restart()
    (again,) = split.finish().alerts
    assert again == once


def test_state_is_dropped_once_no_pair_can_be_impossible():
    rule = RuleHarness(RULE).feed(home(), phi_read("10:05:00", ip="203.0.113.10"))
    assert rule.rule.state_size() == 2
    rule.advance_to(f"{DAY}T23:59:00+00:00").advance_to("2026-03-03T12:00:00+00:00")
    assert rule.rule.state_size() == 0


# ---------------------------------------------------------------- from raw records

FAR = {"ip": "198.51.100.99", "latitude": 50.1109, "longitude": 8.6821, "city": "Frankfurt"}


def test_raw_signins_and_a_fhir_read_raise_one_high_alert(tmp_path):
    user = "33333333-aaaa-4bbb-8ccc-000000000003"
    raw = [
        records.signin(0, user_id=user, asn=64500, country="US"),
        records.signin(1200, user_id=user, asn=64999, country="DE", **FAR),
        records.signin(1260, user_id=user, asn=64999, country="DE", interactive=False, **FAR),
        records.fhir(1500, oid=user, ip="198.51.100.99"),
    ]
    (alert,) = run(raw, tmp_path, per_body=1, bodies_per_batch=1).alerts.values()
    assert alert.rule_id == RULE
    assert alert.severity == "High"
    assert alert.actor_user_id == user
    assert alert.title.startswith("Impossible travel by carol.doctor@contoso-health.org: ")
    assert alert.title.endswith("Seattle, US to Frankfurt, DE, then PHI accessed")
    assert alert.event_count == 2  # the non-interactive refresh is not judged
