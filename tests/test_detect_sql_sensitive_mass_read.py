"""sql-sensitive-mass-read: the statement tier, the hourly tier, one alert for both, the
allow-lists, unlabelled reads, redelivery and batch splits; and one raw audit record."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detections import RegistryError
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access, instant
from phiwatch.detect.times import window_anchor
from phiwatch.model import AccessEvent
from phiwatch.sources import sql as sql_source
from tests.harness import run
from tests.records import SQL_DB_ID, at, sql

RULE = "sql-sensitive-mass-read"
WHO = "sql:sqlsrv-phi/analyst_ro"
DB = (
    "/SUBSCRIPTIONS/SUB-1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.SQL/SERVERS/SQLSRV-PHI"
    "/DATABASES/MASTER"
)
T0 = "2026-11-02 10:00:00+00:00"


def read(
    seconds: float,
    rows: int,
    *,
    category: str = "clinical",
    who: str = WHO,
    app: str = "Microsoft SQL Server Management Studio - Query",
    n: int = 0,
) -> AccessEvent:
    when = instant(T0) + timedelta(seconds=seconds)
    event = access(
        when,
        actor=None,
        actor_id=who,
        ip="10.20.0.7",
        product=sql_source.PRODUCT,
        operation="BCM",
        sub_type="SELECT",
        target=DB.lower(),
        uid=f"{who}-{seconds}-{n}",
    )
    labelled = category != "none"
    return event.model_copy(
        update={
            "record_count": rows,
            "phi_category": category,
            "sensitivity_labels": ["Highly Confidential - PHI"] if labelled else None,
            "sensitivity_rank": 40 if labelled else None,
            "acting_app_name": app,
        }
    )


def anchor(seconds: float) -> str:
    return window_anchor((instant(T0) + timedelta(seconds=seconds)).timestamp(), 3600)


def test_one_statement_of_1000_labelled_rows_is_high():
    rule = RuleHarness(RULE).feed(read(0, 3), read(60, 1_000), read(120, 2)).finish()
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id(RULE, f"oid:{WHO}", anchor(60))
    assert alert.severity == "High"
    assert alert.title == (
        f"Mass read of PHI-labelled SQL data by {WHO} on sqlsrv-phi: 1,000 rows in one statement"
    )
    assert alert.reasons == [
        "One statement at 2026-11-02 10:01:00 UTC returned 1,000 rows of data labelled "
        "Highly Confidential - PHI; the threshold is 1,000 rows per statement, whatever the "
        "principal's usual volume.",
        "2 labelled reads between 2026-11-02 10:01:00 UTC and 2026-11-02 10:02:00 UTC "
        "returned 1,002 rows in all (PHI categories: clinical x2). Reads without a PHI "
        "sensitivity label and allow-listed principals and applications are not counted.",
        "Client application: Microsoft SQL Server Management Studio - Query. Check first "
        f"whether {WHO} runs an approved report, extract or backup of this size; an "
        "interactive tool rather than the EHR's own service suggests copying PHI out.",
        "Every read came from one client address, 10.20.0.7.",
    ]
    assert (alert.actor_user_id, alert.src_ip_addr, alert.target_resource_id) == (
        WHO,
        "10.20.0.7",
        DB.lower(),
    )
    assert alert.event_count == 2


def test_999_rows_and_big_unlabelled_reads_stay_quiet():
    rule = RuleHarness(RULE).feed(read(0, 999), read(60, 50_000, category="none")).finish()
    assert rule.alerts == []


def test_hourly_tier_is_medium_then_a_statement_makes_the_same_alert_high():
    reads = [read(i * 300, 900, n=i) for i in range(12)]  # 10,800 rows in 55 minutes
    rule = RuleHarness(RULE).feed(*reads)
    (medium,) = rule.alerts
    assert medium.severity == "Medium"
    assert medium.alert_id == alert_id(RULE, f"oid:{WHO}", anchor(3300))
    assert medium.title == (
        f"Mass read of PHI-labelled SQL data by {WHO} on sqlsrv-phi: 10,800 rows within an hour"
    )
    assert medium.reasons[0] == (
        "10,800 PHI-labelled rows were read within one hour; the threshold is 10,000 rows "
        "per principal per hour across statements."
    )
    assert medium.event_count == 12
    rule.feed(read(3400, 5_000)).finish()
    (high,) = rule.alerts
    assert high.alert_id == medium.alert_id
    assert high.severity == "High"
    assert high.reasons[0].startswith("One statement at 2026-11-02 10:56:40 UTC returned 5,000")
    assert high.reasons[1].startswith("15,800 PHI-labelled rows were read within one hour")
    assert high.event_count == 13


def test_hourly_reads_just_under_the_threshold_stay_quiet():
    reads = [read(i * 300, 833, n=i) for i in range(12)]  # 9,996 rows
    assert RuleHarness(RULE).feed(*reads).finish().alerts == []
    spread = [read(i * 400, 950, n=i) for i in range(12)]  # never 10,000 within an hour
    assert RuleHarness(RULE).feed(*spread).finish().alerts == []


def test_allow_listed_principals_and_applications_never_fire():
    etl = RuleHarness(RULE, {"allow_principals": ["analyst_ro"]})
    assert etl.feed(read(0, 50_000)).finish().alerts == []
    backup = RuleHarness(RULE, {"allow_applications": ["Azure Data Factory"]})
    assert backup.feed(read(0, 50_000, app="Azure Data Factory")).finish().alerts == []
    other = RuleHarness(RULE, {"allow_principals": ["someone_else"]})
    assert len(other.feed(read(0, 50_000)).finish().alerts) == 1


def test_redelivery_batch_splits_and_restarts_change_nothing():
    reads = [read(i * 300, 900, n=i) for i in range(12)] + [read(3400, 5_000)]
    whole = RuleHarness(RULE).feed(*reads).finish().alerts
    split = RuleHarness(RULE)
    for event in reads:
        split.feed(event, event).restart()
    assert split.finish().alerts == whole


def test_params_are_bounded():
    with pytest.raises(RegistryError):
        RuleHarness(RULE, {"statement_rows": 0})
    with pytest.raises(RegistryError):
        RuleHarness(RULE, {"rows": 5})


def test_raw_sql_audit_records_labelled_and_unlabelled(tmp_path):
    labelled = sql(0, response_rows="1200")  # a number as a string, as exports re-type it
    unlabelled = sql(30, response_rows=40_000, sensitivity="", principal="bob@contoso-health.org")
    sink = run([labelled, unlabelled], tmp_path)
    (alert,) = sink.alerts.values()
    actor = alert.actor_user_id or ""
    assert actor.startswith("sql:")  # the principal key, its UPN pseudonymised
    assert alert.alert_id == alert_id(RULE, f"oid:{actor}", window_anchor(at(0).timestamp(), 3600))
    assert alert.severity == "High"
    assert alert.title == (
        "Mass read of PHI-labelled SQL data by alice.nurse@contoso-health.org on sql-phi: "
        "1,200 rows in one statement"
    )
    assert (alert.actor_username, alert.src_ip_addr, alert.target_resource_id) == (
        "alice.nurse@contoso-health.org",
        "10.40.1.7",
        SQL_DB_ID.lower(),
    )
    assert "labelled Confidential - GDPR, Highly Confidential;" in alert.reasons[0]
    assert "MRN" not in " ".join(alert.reasons) and "dbo.patients" not in alert.description
