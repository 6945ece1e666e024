"""break-glass-sign-in on events, from raw records, and on a generated scenario with the
emergency account configured (the demo runs with defaults, where the rule is off)."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

import detections
from phiwatch.config import Settings
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.hosts.replay import replay
from phiwatch.model import AccessEvent
from phiwatch.samplegen import generate
from phiwatch.sources import entra_audit, signins
from tests import records
from tests.harness import run

RULE = "break-glass-sign-in"
DAY = "2026-03-02"
BG = "0b0b0b0b-aaaa-4bbb-8ccc-00000000b9a5"
OTHER = "55555555-aaaa-4bbb-8ccc-000000000005"
PARAMS = {"object_ids": [BG.upper()]}  # configured in any case
AADIAM = "/tenants/t-1/providers/microsoft.aadiam"


def signin(clock: str, *, who: str = BG, result: str = "Success", code: str | None = None):
    return access(
        f"{DAY} {clock}+00:00",
        actor="emergency.admin1@contoso-health.org",
        actor_id=who,
        product=signins.PRODUCT,
        event_type="Logon",
        sub_type="Interactive",
        operation="Sign-in activity",
        result=result,
        details=code,
        ip="198.51.100.70",
        target=AADIAM,
    )


def change(clock: str, *, target: str = BG, activity: str = "Reset user password") -> AccessEvent:
    event = access(
        f"{DAY} {clock}+00:00",
        actor="mallory.admin@contoso-health.org",
        product=entra_audit.PRODUCT,
        event_type="Other",
        operation=activity,
        ip="203.0.113.50",
        target=AADIAM,
    )
    return event.model_copy(
        update={"target_user_id": target, "target_username": "emergency.admin1@contoso-health.org"}
    )


def test_a_sign_in_of_the_account_fires_high():
    first = signin("10:00:00")
    (alert,) = RuleHarness(RULE, PARAMS).feed(first).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"oid:{BG}", first.event_uid)
    assert alert.severity == "High"
    assert alert.title == ("Emergency-access account emergency.admin1@contoso-health.org signed in")
    assert alert.reasons[0] == (
        f"emergency.admin1@contoso-health.org (object id {BG}) is a configured "
        "emergency-access account: 1 successful sign-in between 2026-03-02 10:00:00 UTC and "
        "2026-03-02 10:00:00 UTC."
    )
    assert alert.reasons[-1].startswith("Check first:")
    assert (alert.actor_user_id, alert.src_ip_addr) == (BG, "198.51.100.70")
    assert (alert.tactics, alert.techniques) == (
        ["InitialAccess", "Persistence"],
        ["T1078", "T1098"],
    )


def test_failures_a_reset_and_a_success_within_the_hour_are_one_alert():
    events = [
        signin("10:00:00", result="Failure", code="50126"),
        signin("10:01:00", result="Failure", code="50126"),
        change("10:20:00"),
        signin("10:40:00"),
    ]
    (alert,) = RuleHarness(RULE, PARAMS).feed(*events).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"oid:{BG}", events[0].event_uid)
    assert alert.event_count == 4
    assert alert.title.endswith("signed in")
    assert "2 failed sign-ins" in alert.reasons[0] and "1 directory change" in alert.reasons[0]
    assert "Failed sign-ins (error codes): 50126 x2; password guessing?" in alert.reasons
    assert (
        "Directory changes to the account by mallory.admin@contoso-health.org: "
        "Reset user password x1." in alert.reasons
    )


def test_a_change_alone_names_the_account_changed():
    (alert,) = RuleHarness(RULE, PARAMS).feed(change("10:00:00")).finish().alerts
    assert alert.title == (
        "Emergency-access account emergency.admin1@contoso-health.org was changed"
    )
    assert alert.actor_username == "mallory.admin@contoso-health.org"  # who changed it


def test_past_the_hour_is_a_new_alert():
    rule = RuleHarness(RULE, PARAMS).feed(signin("10:00:00"), signin("11:30:00")).finish()
    assert len(rule.alerts) == 2


@pytest.mark.parametrize(
    "event",
    [
        signin("10:00:00", who=OTHER),  # another user
        change("10:00:00", target=OTHER),  # a change to another user
        access(f"{DAY} 10:00:00+00:00", actor_id=BG, patient="p1"),  # not a sign-in
    ],
)
def test_other_events_are_quiet(event):
    assert RuleHarness(RULE, PARAMS).feed(event).finish().alerts == []


def test_with_no_object_ids_the_rule_is_off_and_says_so_once():
    from detections import break_glass_sign_in

    break_glass_sign_in._say_off.cache_clear()
    with capture_logs() as logs:
        rule = RuleHarness(RULE)
        RuleHarness(RULE)
    assert [entry["rule"] for entry in logs if "off until configured" in entry["event"]] == [RULE]
    assert rule.feed(signin("10:00:00")).finish().alerts == []


@pytest.mark.parametrize("ids", [["emergency.admin1@contoso-health.org"], ["not-a-guid"]])
def test_object_ids_must_be_object_ids(ids):
    with pytest.raises(detections.RegistryError, match="not Entra object ids"):
        RuleHarness(RULE, {"object_ids": ids})


def test_redelivery_restarts_and_batch_splits_change_nothing():
    events = [signin("10:00:00", result="Failure", code="50126"), change("10:05:00")]
    (once,) = RuleHarness(RULE, PARAMS).feed(*events).finish().alerts
    split = RuleHarness(RULE, PARAMS)
    for event in events:
        split.feed(event, event).restart()
    (again,) = split.finish().alerts
    assert again == once


# ---------------------------------------------------------------- from raw records


def test_raw_records_match_the_object_id_not_the_renamed_upn(tmp_path):
    raw = [
        # renamed since it was configured: the id still matches
        records.signin(0, user_id=BG, upn="renamed.admin@contoso-health.org", result="50126"),
        records.signin(60, user_id=BG, upn="renamed.admin@contoso-health.org"),
        records.signin(90, upn="emergency.admin1@contoso-health.org"),  # another id, old UPN
        records.entra_audit(300, activity="Update user", target_id=BG),
    ]
    (alert,) = run(raw, tmp_path, params={RULE: PARAMS}).alerts.values()
    assert alert.rule_id == RULE
    assert alert.title == "Emergency-access account renamed.admin@contoso-health.org signed in"
    assert alert.event_count == 3
    assert run(raw, tmp_path / "off").alerts == {}  # not configured: off


def test_a_generated_scenario_with_the_account_configured(tmp_path):
    """The demo's emergency account fails a sign-in, then signs in (samplegen); the demo
    runs with defaults, where the rule is off. With its id configured the rule raises
    exactly that, once, and nothing else changes."""
    generate(tmp_path / "gen", seed=11, records=3_000)
    truth = json.loads((tmp_path / "gen" / "ground_truth.json").read_text())
    (configured,) = [b for b in truth["benign_lookalikes"] if b["resembles_rule_id"] == RULE]
    settings = Settings(detection_params=configured["configure"])
    summary = replay([tmp_path / "gen" / "logs"], tmp_path / "out", settings)
    found = [a for a in summary.alerts if a.rule_id == RULE]
    (alert,) = found
    assert alert.actor_user_id == configured["actor_user_id"]
    assert alert.severity == "High"
    assert alert.event_count == 2
    others = {a.alert_id for a in summary.alerts if a.rule_id != RULE}
    default = replay([tmp_path / "gen" / "logs"], tmp_path / "default", Settings())
    assert {a.alert_id for a in default.alerts} == others
