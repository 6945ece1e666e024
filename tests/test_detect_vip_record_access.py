"""vip-record-access on stamped events: a restricted record opened without a care-team or
application explanation, one alert per actor, patient and UTC day, besides any
relationship rule."""

from __future__ import annotations

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.testing import RuleHarness
from phiwatch.privacy.directory import BASIS_WORDS
from tests.privacy_stamps import NURSE, stamped

RULE = "vip-record-access"
DAY = "2026-03-02"
VIP = "pr_9c0ffee0000000000000000000000001"


def opened(clock: str, *, day: str = DAY, **kw):
    kw.setdefault("patient", VIP)
    kw.setdefault("restricted", True)
    return stamped(f"{day} {clock}+00:00", **kw)


def test_an_unexplained_access_to_a_restricted_record_fires_high():
    event = opened("10:00:00")
    (alert,) = RuleHarness(RULE).feed(event).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"{actor_key(event)}|pat:{VIP}|{DAY}", DAY)
    assert alert.severity == "High"
    assert alert.title == f"{NURSE} opened a restricted patient record"
    assert alert.reasons[:3] == [
        f"{NURSE} accessed a restricted record (patient {VIP}) once on {DAY} UTC, between "
        "2026-03-02 10:00:00 UTC and 2026-03-02 10:00:00 UTC: it succeeded.",
        "The patient index marks the record restricted (VIP): it is opened by the "
        "patient's care team only.",
        "Unexplained accesses: 1 of 1; the actor is not on the patient's care team, and no "
        "allow-listed application made them.",
    ]
    assert alert.reasons[-1].startswith("Check first:")


def test_one_alert_per_actor_patient_and_day_refused_attempts_included():
    harness = RuleHarness(RULE).feed(
        opened("10:00:00"),
        opened("10:00:01", result="Failure", details="403"),
        opened("16:00:00"),
    )
    (alert,) = harness.alerts
    assert alert.event_count == 3
    assert alert.reasons[0].endswith(": 2 succeeded and 1 was refused.")
    harness.feed(opened("08:00:00", day="2026-03-03"))
    assert [a.event_count for a in harness.alerts] == [3, 1]


def test_a_related_actor_is_named_in_the_reasons_and_the_relationship_rule_fires_too():
    event = opened("10:00:00", relation="coworker", basis="patient-is-employee")
    (vip,) = RuleHarness(RULE).feed(event).finish().alerts
    (coworker,) = RuleHarness("coworker-record-access").feed(event).finish().alerts
    assert vip.alert_id != coworker.alert_id
    assert (
        f"The actor is also related to the patient ({BASIS_WORDS['patient-is-employee']}): "
        "the relationship rule raises its own alert." in vip.reasons
    )


@pytest.mark.parametrize(
    "event",
    [
        opened("10:00:00", explanation="care-team"),
        opened("10:00:00", explanation="allowed-application"),
        opened("10:00:00", explanation=None),  # no patient index: nothing is known
        opened("10:00:00", restricted=False),
        opened("10:00:00", restricted=None),
        opened("10:00:00", patient=None),
    ],
    ids=["care-team", "allowed-application", "no-index", "not-restricted", "unknown", "none"],
)
def test_explained_or_unrestricted_accesses_are_quiet(event):
    assert RuleHarness(RULE).feed(event).finish().alerts == []


def test_state_survives_a_restart():
    harness = RuleHarness(RULE).feed(opened("10:00:00")).restart()
    (alert,) = harness.feed(opened("11:00:00")).alerts
    assert alert.event_count == 2
