"""fhir-integrity-operation on events: $import, $bulk-delete and $purge-history (High), one
alert per actor; their job status polls, failed attempts and other writes stay quiet."""

from __future__ import annotations

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.testing import RuleHarness, access
from phiwatch.model import AccessEvent
from phiwatch.sources import fhir
from tests import records
from tests.harness import run

RULE = "fhir-integrity-operation"
SVC = "/subscriptions/sub-1/resourcegroups/rg/providers/microsoft.healthcareapis/services/fhir-prod"


def op(at: str, sub_type: str, **kw) -> AccessEvent:
    return access(
        at, product=fhir.PRODUCT, sub_type=sub_type, target=SVC, event_type="Delete", **kw
    )


def test_bulk_delete_then_purge_is_one_high_alert():
    first = op("2026-03-02 23:00:00+00:00", "bulk-delete")
    rule = RuleHarness(RULE).feed(first).restart()
    rule.feed(op("2026-03-02 23:10:00+00:00", "purge-history"), first).finish()
    (alert,) = rule.alerts
    assert alert.alert_id == alert_id(RULE, f"oid:{first.actor_user_id}", first.event_uid)
    assert alert.severity == "High" and alert.event_count == 2
    assert alert.title == (
        "FHIR $bulk-delete, $purge-history by alice@contoso-health.example on fhir-prod"
    )
    assert alert.reasons[0].startswith(
        "alice@contoso-health.example ran $bulk-delete (removes every matching resource), "
        "$purge-history (erases earlier versions) on fhir-prod; 2 accepted request(s)"
    )
    assert "change ticket" in alert.reasons[2]


def test_status_polls_failures_and_single_deletes_are_quiet():
    rule = RuleHarness(RULE).feed(
        op("2026-03-02 10:00:00+00:00", "bulk-delete-status"),
        op("2026-03-02 10:01:00+00:00", "import-status"),
        op("2026-03-02 10:02:00+00:00", "import", result="Failure"),
        op("2026-03-02 10:03:00+00:00", "delete"),
    )
    assert rule.finish().alerts == []


def test_two_actors_two_alerts():
    rule = RuleHarness(RULE).feed(
        op("2026-03-02 10:00:00+00:00", "import"),
        op("2026-03-02 10:00:00+00:00", "import", actor="bob@contoso-health.example"),
    )
    assert sorted(a.title for a in rule.finish().alerts) == [
        "FHIR $import by alice@contoso-health.example on fhir-prod",
        "FHIR $import by bob@contoso-health.example on fhir-prod",
    ]


def test_pipeline_from_raw_records(tmp_path):
    raw = [
        records.fhir(0, path="$import", interaction="import", status=202),
        records.fhir(30, path="_operations/import/12", interaction="import", status=202),
    ]
    sink = run(raw, tmp_path, per_body=1, bodies_per_batch=1)
    (alert,) = [a for a in sink.alerts.values() if a.rule_id == RULE]
    assert alert.event_count == 1
    assert alert.title == "FHIR $import by alice.nurse@contoso-health.org on fhir-prod"
