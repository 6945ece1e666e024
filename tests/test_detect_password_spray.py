"""password-spray on events and from raw sign-in records: distinct users failing passwords
from one address within 20 minutes, the busy-NAT guard, High on a following success."""

from __future__ import annotations

import pytest

import detections
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import signins
from tests import records
from tests.harness import run

RULE = "password-spray"
DAY = "2026-03-02"
SPRAYER = "45.155.205.99"
NAT = "203.0.113.10"
AADIAM = "/tenants/t-1/providers/microsoft.aadiam"


def oid(n: int) -> str:
    return f"5a5a5a5a-aaaa-4bbb-8ccc-{n:012d}"


def signin(
    clock: str,
    user: int,
    *,
    code: str | None = "50126",
    ip: str = SPRAYER,
    interactive: bool = True,
) -> AccessEvent:
    ok = code is None
    return access(
        f"{DAY} {clock}+00:00",
        actor=f"user{user}@contoso-health.org",
        actor_id=oid(user),
        product=signins.PRODUCT,
        event_type="Logon",
        sub_type="Interactive" if interactive else "NonInteractive",
        operation="Sign-in activity",
        result="Success" if ok else "Failure",
        details="0" if ok else code,
        ip=ip,
        target=AADIAM,
    )


def spray(users: range, *, start_minute: int = 0, step_seconds: int = 60, **kw) -> list:
    out = []
    for i, user in enumerate(users):
        t = start_minute * 60 + i * step_seconds
        out.append(signin(f"10:{t // 60:02d}:{t % 60:02d}", user, **kw))
    return out


def test_five_users_failing_from_one_address_fire_medium():
    events = spray(range(1, 6))
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"ip:{SPRAYER}", events[0].event_uid)
    assert alert.severity == "Medium"
    assert alert.title == f"Password spray from {SPRAYER} against 5 accounts"
    assert alert.reasons[0] == (
        f"5 distinct accounts failed password sign-ins from {SPRAYER} between "
        "2026-03-02 10:00:00 UTC and 2026-03-02 10:04:00 UTC (5 failures; error codes "
        "50126 x5); the rule fires at 5 accounts within 20 minutes."
    )
    assert "0 distinct accounts signed in successfully" in alert.reasons[1]
    assert alert.reasons[2].startswith("Accounts tried: " + oid(1))
    assert alert.reasons[-1].startswith("Check first: block the address")
    # The accounts tried are victims, not the actor; the address is the entity.
    assert (alert.actor_user_id, alert.src_ip_addr) == (None, SPRAYER)
    assert alert.event_count == 5
    assert (alert.tactics, alert.techniques) == (["CredentialAccess"], ["T1110.003"])


def test_a_success_after_the_spray_raises_the_same_alert_to_high():
    events = [*spray(range(1, 13)), signin("10:30:00", 7, code=None)]
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"ip:{SPRAYER}", events[0].event_uid)
    assert alert.severity == "High"
    assert alert.title == (
        f"Password spray from {SPRAYER} against 12 accounts, then user7@contoso-health.org "
        "signed in"
    )
    assert any(
        "signed in successfully from the same address at 2026-03-02 10:30:00" in r
        for r in alert.reasons
    )
    assert (alert.actor_user_id, alert.actor_username) == (oid(7), "user7@contoso-health.org")
    assert alert.event_count == 13


def test_a_success_seen_before_the_alert_opened_still_raises_it():
    """A guess works mid-spray: the success is known before the fifth user fails."""
    events = [
        *spray(range(1, 4)),
        signin("10:03:30", 2, code=None),
        *spray(range(4, 7), start_minute=4),
    ]
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.severity == "High" and alert.actor_user_id == oid(2)


def test_accounts_tried_again_are_counted_once_past_the_named_ones():
    """25 accounts, then the last five tried again: 25 distinct, 30 failures."""
    events = [*spray(range(1, 26), step_seconds=20), *spray(range(21, 26), start_minute=9)]
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.title.endswith("against 25 accounts")
    assert "(30 failures;" in alert.reasons[0]
    assert "and 5 more" in alert.reasons[2]


def test_later_failures_enrich_the_one_alert():
    events = [*spray(range(1, 6)), *spray(range(6, 30), start_minute=20, step_seconds=30)]
    (alert,) = RuleHarness(RULE).feed(*events).finish().alerts
    assert alert.title.endswith("against 29 accounts")
    assert "and 9 more" in alert.reasons[2]  # 20 named, the rest counted


@pytest.mark.parametrize(
    ("events", "why"),
    [
        (spray(range(1, 5)), "four users: below the threshold"),
        (spray(range(1, 6), step_seconds=301), "five users spread over 20 min 4 s"),
        (spray(range(1, 6), code="50074"), "MFA interrupts are not password failures"),
        (spray(range(1, 6), code="53003"), "a conditional-access block is not a guess"),
        ([signin(f"10:0{i}:00", 1) for i in range(8)], "one user failing eight times"),
        (
            [signin("10:00:00", n, ip=f"198.51.100.{n}") for n in range(1, 9)],
            "eight users failing from eight addresses",
        ),
    ],
)
def test_near_misses_are_quiet(events, why):
    assert RuleHarness(RULE).feed(*events).finish().alerts == [], why


def test_a_busy_nat_whose_successful_users_outnumber_its_failures_is_quiet():
    ok = [
        signin(f"0{h}:{m:02d}:00", 100 + h * 60 + m, code=None, ip=NAT)
        for h in range(8, 10)
        for m in range(0, 60, 10)
    ]  # 12 staff signed in this morning
    failed = spray(range(1, 7), ip=NAT)  # 6 typos in 6 minutes
    assert RuleHarness(RULE).feed(*ok, *failed).finish().alerts == []
    # With fewer successful users than failing ones it is a spray.
    (alert,) = RuleHarness(RULE).feed(*ok[:3], *failed).finish().alerts
    assert "3 distinct accounts signed in successfully" in alert.reasons[1]


def test_non_interactive_and_nonexistent_users_count():
    events = [signin(f"10:0{n}:00", n, interactive=False) for n in range(1, 4)]
    ghosts = [
        access(
            f"{DAY} 10:0{n}:00+00:00",
            actor=f"ghost{n}@contoso-health.org",
            product=signins.PRODUCT,
            event_type="Logon",
            result="Failure",
            details="50034",
            ip=SPRAYER,
            target=AADIAM,
        )
        for n in (4, 5)
    ]
    (alert,) = RuleHarness(RULE).feed(*events, *ghosts).finish().alerts
    assert "50034 x2, 50126 x3" in alert.reasons[0]


def test_late_records_are_judged_in_event_time():
    events = spray(range(1, 6))
    shuffled = [events[4], events[0], events[3], events[1], events[2]]
    (ordered,) = RuleHarness(RULE).feed(*events).finish().alerts
    (late,) = RuleHarness(RULE).feed(*shuffled).finish().alerts
    assert late.alert_id == ordered.alert_id and late.reasons == ordered.reasons


def test_redelivery_restarts_and_batch_splits_change_nothing():
    events = [*spray(range(1, 8)), signin("10:25:00", 3, code=None)]
    (once,) = RuleHarness(RULE).feed(*events).finish().alerts
    split = RuleHarness(RULE)
    for event in events:
        split.feed(event, event).restart()
    (again,) = split.finish().alerts
    assert again == once


@pytest.mark.parametrize(
    "params",
    [{"distinct_users": 1}, {"window_minutes": 0}, {"failure_codes": ["abc"]}, {"threshold": 5}],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(detections.RegistryError):
        RuleHarness(RULE, params)


def test_parameters_move_the_threshold():
    events = spray(range(1, 4))
    assert len(RuleHarness(RULE, {"distinct_users": 3}).feed(*events).finish().alerts) == 1


# ---------------------------------------------------------------- from raw records


def test_raw_sign_in_records_from_both_logs(tmp_path):
    raw = [
        records.signin(
            n * 60,
            user_id=oid(n),
            upn=f"user{n}@contoso-health.org",
            ip=SPRAYER,
            result="50126",
            category="SignInLogs" if n % 2 else "NonInteractiveUserSignInLogs",
            interactive=bool(n % 2),
        )
        for n in range(1, 7)
    ]
    raw.append(records.signin(900, user_id=oid(4), upn="user4@contoso-health.org", ip=SPRAYER))
    (alert,) = run(raw, tmp_path).alerts.values()
    assert alert.rule_id == RULE and alert.severity == "High"
    assert alert.src_ip_addr == SPRAYER and alert.actor_user_id == oid(4)
    assert alert.title.startswith(f"Password spray from {SPRAYER} against 6 accounts")
