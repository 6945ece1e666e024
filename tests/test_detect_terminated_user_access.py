"""terminated-user-access on stamped events: any data-plane access by an identity the
roster records as terminated at the event's time, explained or not, one alert per actor
and UTC day."""

from __future__ import annotations

import pytest

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.testing import RuleHarness
from phiwatch.sources import keyvault, signins, sql, storage
from tests.privacy_stamps import NURSE, stamped

RULE = "terminated-user-access"
DAY = "2026-03-02"
VAULT = "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"


def by_leaver(clock: str, *, day: str = DAY, status: str | None = "terminated", **kw):
    kw.setdefault("explanation", None)
    return stamped(f"{day} {clock}+00:00", status=status, **kw)


def test_a_read_after_termination_fires_high_per_actor_and_day():
    first = by_leaver("09:00:00", patient="pr_1", explanation="unexplained")
    (alert,) = RuleHarness(RULE).feed(first).finish().alerts
    assert alert.alert_id == alert_id(RULE, f"{actor_key(first)}|{DAY}", DAY)
    assert alert.severity == "High"
    assert alert.title == f"Terminated identity {NURSE} accessed data"
    assert alert.reasons[0] == (
        f"The workforce roster records {NURSE} as terminated at the time of these accesses: "
        f"1 data-plane access on {DAY} UTC, between 2026-03-02 09:00:00 UTC and "
        "2026-03-02 09:00:00 UTC (FHIR x1); it succeeded."
    )
    assert "1 patient record opened; accesses 1 unexplained." in alert.reasons
    assert (alert.tactics, alert.techniques) == (
        ["InitialAccess", "Collection"],
        ["T1078", "T1213"],
    )


def test_every_source_and_explanation_counts_into_one_alert_that_day():
    events = [
        by_leaver("09:00:00", patient="pr_1", explanation="care-team"),
        by_leaver("09:01:00", patient="pr_2", explanation="allowed-application"),
        by_leaver("09:02:00", patient="pr_3", explanation="unexplained"),
        by_leaver("09:03:00", product=keyvault.PRODUCT, operation="SecretGet", target=VAULT),
        by_leaver("09:04:00", product=sql.PRODUCT, operation="BATCH COMPLETED"),
        by_leaver("09:05:00", product=storage.PRODUCT, operation="GetBlob", result="Failure"),
    ]
    harness = RuleHarness(RULE).feed(*events)
    (alert,) = harness.alerts
    assert (alert.event_count, alert.distinct_patient_count) == (6, 3)
    assert alert.reasons[0].endswith(
        "(FHIR x3, Blob storage x1, Key Vault x1, SQL x1); 5 succeeded and 1 was refused."
    )
    assert (
        "3 patient records opened; accesses 1 unexplained, 1 by a member of the patient's care "
        "team, 1 by an allow-listed application, 3 with no patient explanation known."
        in alert.reasons
    )
    harness.feed(by_leaver("00:00:00", day="2026-03-03", patient="pr_1"))
    assert [a.event_count for a in harness.alerts] == [6, 1]  # the next UTC day: a new alert


@pytest.mark.parametrize(
    "event",
    [
        # Terminated tomorrow: at the event's time the roster says active (the stamp is
        # taken at the event's time, so yesterday's termination is "terminated").
        by_leaver("09:00:00", status="active", patient="pr_1"),
        by_leaver("09:00:00", status="leave", patient="pr_1"),
        by_leaver("09:00:00", status=None, patient="pr_1"),  # no roster, or not on it
        # A sign-in is not a data access.
        by_leaver("09:00:00", product=signins.PRODUCT, event_type="Logon", operation="Sign-in"),
    ],
    ids=["terminated-tomorrow", "on-leave", "unknown", "sign-in"],
)
def test_active_unknown_or_sign_in_is_quiet(event):
    assert RuleHarness(RULE).feed(event).finish().alerts == []


def test_terminated_yesterday_fires_terminated_tomorrow_does_not():
    # The same person, stamped at normalise time against a termination date of 2026-03-02:
    # the day after, terminated; the day before, still active.
    before = by_leaver("12:00:00", day="2026-03-01", status="active", patient="pr_1")
    after = by_leaver("12:00:00", day="2026-03-03", patient="pr_1")
    (alert,) = RuleHarness(RULE).feed(before, after).finish().alerts
    assert alert.evidence_event_uids == [after.event_uid]


def test_a_redelivery_counts_once_and_state_survives_a_restart():
    first = by_leaver("09:00:00", patient="pr_1")
    harness = RuleHarness(RULE).feed(first, first).restart()
    (alert,) = harness.feed(first, by_leaver("10:00:00", patient="pr_2")).alerts
    assert alert.event_count == 2
