"""mass-record-access: positive and negative fixtures, ids, reasons, entities, storms."""

from __future__ import annotations

import pytest

from phiwatch.detect import alert_book
from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.times import window_anchor
from phiwatch.model import MAX_EVIDENCE
from phiwatch.sinks.sentinel import sentinel_alert
from tests.harness import run
from tests.records import FHIR_ID, at, fhir

OID = "33333333-aaaa-4bbb-8ccc-000000000003"


def reads(n: int, *, start: float = 0, spacing: float = 5, first_patient: int = 0, **kw):
    return [fhir(start + i * spacing, path=f"Patient/p{first_patient + i}", **kw) for i in range(n)]


def test_burst_above_threshold_raises_one_explained_alert(tmp_path):
    sink = run(reads(60, spacing=5), tmp_path)  # 60 patients in 295 s
    (alert,) = sink.alerts.values()
    crossing = at(50 * 5).timestamp()  # the 51st distinct patient
    assert alert.alert_id == alert_id(
        "mass-record-access", f"oid:{OID}", window_anchor(crossing, 600)
    )
    assert alert.rule_id == "mass-record-access"
    assert alert.severity == "High"
    assert alert.title == (
        "Mass patient record access by alice.nurse@contoso-health.org: 60 patients in 5 min"
    )
    assert alert.reasons[0] == (
        "Opened 60 distinct patients' records between 2026-11-02 08:00:00 UTC and "
        "2026-11-02 08:04:55 UTC (5 min); the threshold is 50 patients in any "
        "10-minute window."
    )
    assert alert.reasons[2] == "Every read came from one source address, 10.20.30.40."
    assert (alert.actor_user_id, alert.actor_username, alert.src_ip_addr) == (
        OID,
        "alice.nurse@contoso-health.org",
        "10.20.30.40",
    )
    assert alert.target_resource_id == FHIR_ID.lower()
    assert (alert.event_count, alert.distinct_patient_count) == (60, 60)
    assert (alert.first_event_time, alert.last_event_time) == (at(0), at(295))
    # Complete: every counted read's EventUid (earliest first) and every patient's pseudonym.
    assert alert.evidence_event_uids == [e.event_uid for e in sink.events]
    assert alert.patient_refs == sorted({e.patient_ref for e in sink.events})
    assert alert.evidence_complete is None and alert.patient_refs_complete is None
    # Minimum necessary: patients appear as pseudonyms only, never their identifiers.
    assert "Patient/p" not in alert.to_json().decode()
    assert alert.detected_at == at(250)  # event-time arrival of the 51st patient


def test_exactly_the_threshold_does_not_alert(tmp_path):
    assert run(reads(50, spacing=10), tmp_path).alerts == {}


def test_failed_reads_do_not_count(tmp_path):
    records = reads(45) + reads(10, start=300, first_patient=100, result="Failed", status=403)
    assert run(records, tmp_path).alerts == {}


def test_reads_spread_beyond_the_window_do_not_alert(tmp_path):
    # 90 patients, but one every 15 s for 22 minutes: at most 40 in any 10 minutes.
    assert run(reads(90, spacing=15), tmp_path).alerts == {}


def test_repeat_reads_of_the_same_patients_count_once(tmp_path):
    records = [fhir(i, path=f"Patient/p{i % 30}/Observation") for i in range(300)]
    assert run(records, tmp_path).alerts == {}


def test_duplicates_do_not_inflate_the_count(tmp_path):
    records = reads(40)
    redelivered = records + records[::-1] + records
    sink = run(redelivered, tmp_path)
    assert sink.alerts == {}
    assert len(sink.events) == 40


def test_a_long_burst_is_one_alert_enriched_not_many(tmp_path):
    sink = run(reads(220, spacing=2), tmp_path)
    (alert,) = sink.alerts.values()
    assert (alert.event_count, alert.distinct_patient_count) == (220, 220)
    # The archived alert names every patient and cites every read (a breach notification
    # needs all 220); only Sentinel's row is cut, and says how many and where the rest are.
    assert len(alert.evidence_event_uids) == 220
    assert alert.patient_refs is not None and len(alert.patient_refs) == 220
    row = sentinel_alert(alert)
    assert len(row.evidence_event_uids) == MAX_EVIDENCE
    assert row.patient_refs is not None and len(row.patient_refs) == MAX_EVIDENCE
    assert row.evidence_event_count == 220 and row.distinct_patient_count == 220
    assert row.evidence_ref is not None and alert.alert_id in row.evidence_ref
    assert row.alert_id == alert.alert_id
    versions = [a for a in sink.alert_versions if a.alert_id == alert.alert_id]
    assert len(versions) >= 2  # emitted, then enriched under the same id
    assert versions[0].distinct_patient_count < versions[-1].distinct_patient_count


def test_two_bursts_an_hour_apart_are_two_alerts(tmp_path):
    records = reads(60) + reads(60, start=3600, first_patient=1000)
    sink = run(records, tmp_path)
    assert len(sink.alerts) == 2
    assert {a.first_event_time for a in sink.alerts.values()} == {at(0), at(3600)}


def test_other_actors_interleaved_do_not_mix(tmp_path):
    a = reads(30)
    b = reads(30, first_patient=500, oid="55555555-0000-0000-0000-000000000005", upn="bob@x.org")
    interleaved = [r for pair in zip(a, b, strict=True) for r in pair]
    assert run(interleaved, tmp_path).alerts == {}


@pytest.mark.parametrize(("per_body", "bodies_per_batch"), [(1, 1), (7, 3), (100, 10)])
def test_batch_split_and_replay_do_not_change_alerts(tmp_path, per_body, bodies_per_batch):
    records = reads(80, spacing=3) + reads(20, start=1000, first_patient=900)
    reference = run(records, tmp_path).alerts
    again = run(records, tmp_path, per_body=per_body, bodies_per_batch=bodies_per_batch).alerts
    assert reference and again == reference


def test_threshold_is_configurable(tmp_path):
    sink = run(reads(30), tmp_path, params={"mass-record-access": {"threshold": 20}})
    (alert,) = sink.alerts.values()
    assert "the threshold is 20 patients" in alert.reasons[0]


def test_late_events_beyond_lateness_are_counted_not_detected(tmp_path):
    fresh = [fhir(7200 + i, path=f"Patient/q{i}") for i in range(5)]
    stale = reads(60, start=0)  # two hours older than the watermark: beyond 15 min lateness
    sink = run(fresh + stale, tmp_path)
    assert sink.alerts == {}
    assert len(sink.events) == 65


def test_the_lists_are_bounded_and_say_so(tmp_path, monkeypatch):
    # A burst past MAX_ALERT_REFS (100,000 in production) keeps the earliest entries and
    # marks the alert's lists incomplete instead of growing without bound.
    monkeypatch.setattr(alert_book, "MAX_ALERT_REFS", 55)
    sink = run(reads(70), tmp_path)
    (alert,) = sink.alerts.values()
    assert alert.event_count == 70
    assert alert.evidence_event_uids == [e.event_uid for e in sink.events[:55]]
    assert alert.patient_refs is not None and len(alert.patient_refs) == 55
    assert alert.evidence_complete is False and alert.patient_refs_complete is False


def test_the_alert_gives_the_actors_usual_daily_volume(tmp_path):
    day = 86400
    usual = [reads(n, start=d * day, first_patient=1000 * d) for d, n in ((1, 8), (2, 12), (3, 10))]
    burst = reads(60, start=5 * day, first_patient=9000)
    sink = run([r for chunk in usual for r in chunk] + burst, tmp_path)
    (alert,) = sink.alerts.values()
    # The median of the 3 active days before (8, 12, 10), not counting the alert's own day.
    assert (alert.actor_usual_daily_events, alert.actor_baseline_days) == (10.0, 3)
    assert alert.reasons[-1] == (
        "Usually 10 of these events a day: the median of the 3 active day(s) in the 14 days before."
    )


def test_an_actor_without_history_says_so(tmp_path):
    (alert,) = run(reads(60), tmp_path).alerts.values()
    assert (alert.actor_usual_daily_events, alert.actor_baseline_days) == (None, 0)
    assert not alert.reasons[-1].startswith("Usually")
