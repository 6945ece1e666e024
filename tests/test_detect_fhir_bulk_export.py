"""fhir-bulk-export on events: $export by a principal not allowed (system High, Patient and
Group Medium) enriched by its status polls, $everything over many patients, one alert per
actor; and through the pipeline from raw FHIR audit records."""

from __future__ import annotations

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import fhir
from tests import records
from tests.harness import run

RULE = "fhir-bulk-export"
SVC = "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.healthcareapis/services/fhir-prod"
BOB = "bob@contoso-health.example"
EXPORTER_APP = "77777777-aaaa-4bbb-8ccc-000000000007"


def fhir_event(at: str, sub_type: str, obj: str, **kw) -> AccessEvent:
    event = access(at, product=fhir.PRODUCT, sub_type=sub_type, target=SVC, **kw)
    return event.model_copy(update={"object": obj})


def kickoff(at: str, obj: str = "$export?_type", **kw) -> AccessEvent:
    return fhir_event(at, "export", obj, **kw)


def poll(at: str, **kw) -> AccessEvent:
    return fhir_event(at, "export-status", "_operations/export/{id}", event_type="Other", **kw)


def everything(at: str, patient: str, **kw) -> AccessEvent:
    return fhir_event(at, "everything", f"Patient/{patient}/$everything", patient=patient, **kw)


def test_system_export_with_polls_is_one_high_alert():
    start = kickoff("2026-03-02 22:00:00+00:00", actor=BOB)
    polls = [poll(f"2026-03-02 22:0{i}:30+00:00", actor=BOB) for i in range(1, 4)]
    rule = RuleHarness(RULE).feed(start, *polls[:1]).feed(*polls[1:]).finish()
    (alert,) = rule.alerts
    key = f"oid:{start.actor_user_id}"
    assert alert.alert_id == alert_id(RULE, key, start.event_uid)
    assert alert.severity == "High"
    assert alert.title == f"System-level FHIR bulk export by {BOB} on fhir-prod"
    assert alert.event_count == 4
    assert "system-level x1" in alert.reasons[0]
    assert "not on the export allow-list (0 principal(s) configured)" in alert.reasons[0]
    assert "every resource of every patient" in alert.reasons[1]
    assert "polled the export job's status 3 time(s)" in alert.reasons[2]
    assert alert.target_resource_id == SVC
    assert alert.src_ip_addr == "10.0.0.1"


def test_patient_and_group_exports_are_medium_and_a_system_one_raises_it():
    first = kickoff("2026-03-02 10:00:00+00:00", obj="Group/{id}/$export?_type", actor=BOB)
    rule = RuleHarness(RULE).feed(first)
    (alert,) = rule.alerts
    assert alert.severity == "Medium" and alert.title.startswith("FHIR bulk export by")
    assert "Group-level x1" in alert.reasons[0]
    rule.feed(kickoff("2026-03-02 10:20:00+00:00", actor=BOB)).finish()
    (alert,) = rule.alerts  # the same AlertId, raised in place
    assert alert.alert_id == alert_id(RULE, f"oid:{first.actor_user_id}", first.event_uid)
    assert alert.severity == "High"
    assert "system-level x1, Group-level x1" in alert.reasons[0]


def test_allowed_exporter_and_its_polls_are_quiet_by_object_or_app_id():
    by_app = kickoff("2026-03-02 10:00:00+00:00", actor=None, app_id=EXPORTER_APP)
    by_oid = kickoff("2026-03-02 11:00:00+00:00", obj="Patient/$export?_type", actor=BOB)
    rule = RuleHarness(RULE, {"export_allow": [EXPORTER_APP, by_oid.actor_user_id]})
    rule.feed(by_app, poll("2026-03-02 10:01:00+00:00", actor=None, app_id=EXPORTER_APP))
    rule.feed(by_oid, poll("2026-03-02 11:01:00+00:00", actor=BOB)).finish()
    assert rule.alerts == []


def test_polls_alone_failed_exports_and_redelivery_raise_nothing_new():
    rule = RuleHarness(RULE)
    rule.feed(poll("2026-03-02 10:00:00+00:00", actor=BOB))
    rule.feed(kickoff("2026-03-02 10:05:00+00:00", actor=BOB, result="Failure"))
    assert rule.alerts == []
    start = kickoff("2026-03-02 10:10:00+00:00", actor=BOB)
    rule.feed(start, start).restart().feed(start).finish()
    (alert,) = rule.alerts
    assert alert.event_count == 1


def test_everything_over_five_patients_in_an_hour_is_medium():
    events = [everything(f"2026-03-02 09:{10 * i:02d}:00+00:00", f"p{i}") for i in range(5)]
    rule = RuleHarness(RULE).feed(*events[:2]).restart().feed(*events[2:]).finish()
    (alert,) = rule.alerts
    key = f"oid:{events[0].actor_user_id}"
    assert alert.alert_id == alert_id(RULE, key, "2026-03-02T09:00:00+00:00")
    assert alert.severity == "Medium"
    assert (
        alert.title
        == "FHIR $everything over 5 patients by alice@contoso-health.example on fhir-prod"
    )
    assert alert.distinct_patient_count == 5
    assert "the threshold is 5 patients within 60 minutes" in alert.reasons[0]


def test_everything_near_misses_stay_quiet():
    # four patients (one twice) within the hour, and a fifth 61 minutes after the first
    patients = ("p0", "p1", "p2", "p3", "p1")
    events = [everything(f"2026-03-02 09:{10 * i:02d}:00+00:00", p) for i, p in enumerate(patients)]
    late = everything("2026-03-02 10:01:00+00:00", "p9")
    failed = everything("2026-03-02 09:55:00+00:00", "p8", result="Failure")
    rule = RuleHarness(RULE).feed(*events, failed, late).finish()
    assert rule.alerts == []


def test_export_then_everything_by_one_actor_is_one_alert():
    rule = RuleHarness(RULE).feed(kickoff("2026-03-02 10:00:00+00:00", actor=BOB))
    rule.feed(everything("2026-03-02 10:05:00+00:00", "p1", actor=BOB)).finish()
    (alert,) = rule.alerts
    assert alert.event_count == 2 and alert.distinct_patient_count == 1


def test_pipeline_system_export_and_polls_from_raw_records(tmp_path):
    raw = [
        records.fhir(0, path="$export?_type=Patient,Observation", interaction="export", status=202),
        records.fhir(30, path="_operations/export/4711", interaction="export", status=202),
        records.fhir(60, path="_operations/export/4711", interaction="export", status=200),
        records.fhir(90, path="Patient/$export", interaction="export", status=202, ip="10.9.9.9"),
    ]
    sink = run(raw, tmp_path, per_body=2, bodies_per_batch=1)
    alerts = [a for a in sink.alerts.values() if a.rule_id == RULE]
    (alert,) = alerts
    assert alert.severity == "High" and alert.event_count == 4
    assert (
        alert.title
        == "System-level FHIR bulk export by alice.nurse@contoso-health.org on fhir-prod"
    )
    assert "system-level x1, Patient-level x1" in alert.reasons[0]
    assert "2 time(s)" in alert.reasons[2]
