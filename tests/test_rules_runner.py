"""The scheduled rule runner against the real LogsQueryClient and KustoClient, talking to local
stand-ins that execute the KQL with duckdb-kql (tests/kql_query_standin.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
from azure.monitor.query import LogsQueryClient

from phiwatch.archive.archive import Archive
from phiwatch.detect.alert_book import alert_id
from phiwatch.rules.loader import KQL_DIR, load_rule
from phiwatch.rules.runner import (
    AdxBackend,
    LogAnalyticsBackend,
    QueryError,
    run_due,
    to_alert,
    window_end,
)
from phiwatch.rules.template import PhiwatchSettings, RuleTemplate, RunSettings
from tests.https_standin import StaticToken
from tests.kql_query_standin import KqlQueryStandIn

OID = "33333333-aaaa-4bbb-8ccc-000000000003"
UPN = "alice.nurse@contoso-health.org"
FHIR = "/subscriptions/s/resourcegroups/rg/providers/microsoft.healthcareapis/services/fhir"
BURST = datetime(2026, 11, 2, 8, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 2, 8, 44, tzinfo=UTC)  # window end 08:30 (queryFrequency 30m)
END = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)


def twin(backend: str) -> RuleTemplate:
    rule = load_rule(KQL_DIR / "phiwatch-mass-record-access.yaml").template
    settings = PhiwatchSettings(rule_id=rule.rule_id, run=RunSettings(backend=backend))  # type: ignore[arg-type]
    return rule.model_copy(update={"phiwatch": settings})


def reads(start: datetime, n: int) -> list[dict[str, Any]]:
    return [
        {
            "TimeGenerated": (start + timedelta(seconds=5 * i)).isoformat(),
            "EventType": "Read",
            "EventResult": "Success",
            "PatientRef": f"p{i}",
            "ActorUserId": OID,
            "ActorUsername": UPN,
            "SrcIpAddr": "10.20.30.40",
            "TargetResourceId": FHIR,
        }
        for i in range(n)
    ]


ROWS = {"PhiAccessEvents_CL": reads(BURST, 60) + reads(BURST - timedelta(hours=5), 60)}


@pytest.fixture(scope="module")
def log_analytics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KqlQueryStandIn]:
    standin = KqlQueryStandIn(ROWS, NOW, tmp_path_factory.mktemp("la"), tls=True).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def adx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KqlQueryStandIn]:
    standin = KqlQueryStandIn(ROWS, NOW, tmp_path_factory.mktemp("adx"), tls=False).start()
    yield standin
    standin.stop()


def la_backend(standin: KqlQueryStandIn) -> LogAnalyticsBackend:
    client = LogsQueryClient(
        StaticToken("test-token"), endpoint=standin.endpoint, connection_verify=standin.ca_file
    )
    return LogAnalyticsBackend(client, standin.workspace_id)


def adx_backend(standin: KqlQueryStandIn) -> AdxBackend:
    builder = KustoConnectionStringBuilder.with_no_authentication(standin.endpoint)
    return AdxBackend(KustoClient(builder), "SecurityDb")


def assert_burst_alert(report_alerts: list, rule: RuleTemplate) -> None:
    (alert,) = report_alerts
    key = "\x1f".join(
        [
            f"Account.AadUserId={OID}",
            "Account.Name=alice.nurse",
            "Account.UPNSuffix=contoso-health.org",
            f"AzureResource.ResourceId={FHIR}",
            "IP.Address=10.20.30.40",
        ]
    )
    assert alert.alert_id == alert_id("mass-record-access", key, END.isoformat())
    assert alert.rule_id == "mass-record-access"
    assert alert.severity == "High"
    assert alert.actor_user_id == OID
    assert alert.actor_username == UPN
    assert alert.src_ip_addr == "10.20.30.40"
    assert alert.target_resource_id == FHIR
    assert alert.title == f"Mass patient record access by {UPN}: 60 patients"
    assert alert.description.startswith(f"{UPN} read the records of 60 distinct patients")
    assert alert.distinct_patient_count == 60
    assert alert.event_count == 60
    assert alert.first_event_time == BURST
    assert alert.window_start == END - timedelta(hours=1)
    assert alert.window_end == alert.detected_at == END
    assert alert.tactics == rule.tactics


def test_log_analytics_round_trip(log_analytics: KqlQueryStandIn) -> None:
    rule = twin("log-analytics")
    report = run_due([rule], {"log-analytics": la_backend(log_analytics)}, NOW)
    assert report.failed == {}
    assert report.ran == {str(rule.id): END}
    assert_burst_alert(report.alerts, rule)
    request = log_analytics.requests[-1]
    assert request["path"] == f"/v1/workspaces/{log_analytics.workspace_id}/query"
    assert request["headers"]["Authorization"] == "Bearer test-token"
    # The window travels as the timespan: only the burst at 08:01 is inside, not the one at 03:01.
    assert request["body"]["timespan"].startswith("2026-11-02T07:30:00")


def test_adx_round_trip_gives_the_same_alert(adx: KqlQueryStandIn) -> None:
    rule = twin("adx")
    report = run_due([rule], {"adx": adx_backend(adx)}, NOW)
    assert report.failed == {}
    assert_burst_alert(report.alerts, rule)
    request = adx.requests[-1]
    assert request["path"] == "/v2/rest/query"
    assert request["body"]["db"] == "SecurityDb"
    # The SDK sends the request properties as a JSON string.
    options = json.loads(request["body"]["properties"])["Options"]
    assert options["query_now"] == "2026-11-02T08:30:00Z"


def test_rerun_is_deterministic_and_not_due_twice(log_analytics: KqlQueryStandIn) -> None:
    rule = twin("log-analytics")
    backends = {"log-analytics": la_backend(log_analytics)}
    first = run_due([rule], backends, NOW)
    again = run_due([rule], backends, NOW + timedelta(minutes=10))
    assert [a.model_dump() for a in again.alerts] == [a.model_dump() for a in first.alerts]
    before = len(log_analytics.requests)
    skipped = run_due([rule], backends, NOW, last_runs=first.ran)
    assert skipped.alerts == [] and skipped.ran == {}
    assert len(log_analytics.requests) == before
    # The next window (ending 09:00) is due; the burst is still inside its hour.
    later = run_due([rule], backends, NOW + timedelta(minutes=20), last_runs=first.ran)
    assert later.ran == {str(rule.id): END + timedelta(minutes=30)}
    assert later.alerts[0].alert_id != first.alerts[0].alert_id


def test_quiet_window_raises_nothing(log_analytics: KqlQueryStandIn, adx: KqlQueryStandIn) -> None:
    quiet = NOW + timedelta(hours=3)
    for backend, backends in (
        ("log-analytics", {"log-analytics": la_backend(log_analytics)}),
        ("adx", {"adx": adx_backend(adx)}),
    ):
        report = run_due([twin(backend)], backends, quiet)
        assert report.failed == {} and report.alerts == []


def test_rules_not_marked_for_phiwatch_are_skipped(log_analytics: KqlQueryStandIn) -> None:
    rule = load_rule(KQL_DIR / "phiwatch-mass-record-access.yaml").template
    assert not rule.runs_in_phiwatch
    report = run_due([rule], {"log-analytics": la_backend(log_analytics)}, NOW)
    assert report.ran == {} and report.alerts == []


def test_a_failing_rule_does_not_stop_the_others(
    log_analytics: KqlQueryStandIn, tmp_path: Path
) -> None:
    broken = twin("log-analytics").model_copy(
        update={"query": "NoSuchTable | take 1", "id": "00000000-0000-4000-8000-000000000001"}
    )
    missing = twin("adx").model_copy(update={"id": "00000000-0000-4000-8000-000000000002"})
    good = twin("log-analytics")
    backends = {"log-analytics": la_backend(log_analytics)}
    report = run_due([broken, missing, good], backends, NOW)
    assert set(report.failed) == {str(broken.id), str(missing.id)}
    assert "HttpResponseError" in report.failed[str(broken.id)]
    assert report.failed[str(missing.id)] == "no adx backend configured"
    assert len(report.alerts) == 1


def test_partial_result_is_an_error() -> None:
    class Partial:
        status = "PARTIAL"
        partial_error = "PartialError"

    class Client:
        def query_workspace(self, *args: Any, **kwargs: Any) -> Partial:
            return Partial()

    with pytest.raises(QueryError, match="PartialError"):
        LogAnalyticsBackend(Client(), "ws").rows(twin("log-analytics"), END, END)


def test_window_end_and_severity_fallback() -> None:
    rule = twin("log-analytics")
    assert window_end(rule, datetime(2026, 11, 2, 8, 59, 59, tzinfo=UTC)) == END
    assert window_end(rule, END) == END
    row = {"ActorUserId": OID, "ActorLabel": "x", "DistinctPatientCount": 51}
    alert = to_alert(rule, row, END)
    assert alert.severity == "High"
    assert alert.actor_username is None and alert.src_ip_addr is None


def test_scheduled_rules_archive_emit_and_remember_their_windows(
    log_analytics: KqlQueryStandIn, tmp_path: Path
) -> None:
    """The Function App's timer path: rules from a directory, the real client against the
    stand-in, alerts archived and emitted, windows remembered in the state store."""
    import yaml

    from phiwatch.archive.archive import decode_lines
    from phiwatch.archive.signer import Ed25519Signer, load_public_key
    from phiwatch.archive.store import LocalStore
    from phiwatch.archive.verify import verify_archive
    from phiwatch.detect.state_store import LocalStateStore
    from phiwatch.rules.scheduled import LAST_RUNS_KEY, ScheduledRules
    from tests.conftest import TEST_SIGNING_SEED_HEX

    rules_dir = tmp_path / "kql"
    rules_dir.mkdir()
    source = KQL_DIR / "phiwatch-mass-record-access.yaml"
    document = yaml.safe_load(source.read_text())
    document["phiwatch"]["run"] = {"backend": "log-analytics"}
    (rules_dir / source.name).write_text(yaml.safe_dump(document, sort_keys=False))
    emitted: list = []

    class Sink:
        def emit(self, result):
            emitted.extend(result.alerts)

    store = LocalStore(tmp_path / "archive")
    signer = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))
    state = LocalStateStore(tmp_path / "state")

    def runner() -> ScheduledRules:
        return ScheduledRules(
            backends={"log-analytics": la_backend(log_analytics)},
            archive=Archive(store, signer),
            state_store=state,
            sinks=[Sink()],
            rules_dir=rules_dir,
        )

    first = runner()
    assert first.scheduled == [document["name"]]
    report = first.run(NOW)
    assert [a.rule_id for a in report.alerts] == ["mass-record-access"] and emitted
    (alerts_object,) = [n for n in store.list("alerts/") if n.endswith(".jsonl.gz")]
    (line,) = decode_lines(store.get(alerts_object))
    assert json.loads(line)["AlertId"] == report.alerts[0].alert_id
    assert json.loads(state.load(LAST_RUNS_KEY).data) == {document["id"]: END.isoformat()}
    trusted = {signer.key_id: load_public_key(signer.public_key_pem())}
    assert verify_archive(store, trusted).problems == []

    # A restarted app finds the window done: nothing runs, nothing is emitted twice.
    emitted.clear()
    again = runner().run(NOW + timedelta(minutes=5))
    assert again.ran == {} and again.alerts == [] and emitted == []
