"""The Functions bindings and the Event Hubs host glue, driven with real `func.EventHubEvent`s.

`app.get_functions()` may be called only once per process (shared/notes/local-azure.md §2),
so the functions are indexed once and cached.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import io
import json
import re
import time
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import azure.functions as func
import pytest
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.meta import Datum

import detections
from phiwatch.archive.archive import Archive
from phiwatch.config import Settings
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts import functions as host
from phiwatch.hosts import health
from phiwatch.hosts.functions import DetectBatchProcessor, EventHubBatchProcessor
from phiwatch.hosts.health import health_status
from phiwatch.logs import configure_logging
from phiwatch.phievents.message import encode_event
from phiwatch.phievents.routing import Router
from phiwatch.wiring import ConfigurationError
from tests.conftest import TEST_KEY_HEX
from tests.harness import batches_of, make_pipeline
from tests.records import SUB, activity, fhir, keyvault

ROOT = Path(__file__).resolve().parent.parent
ENQUEUED = datetime(2026, 11, 2, 8, 0, 30, tzinfo=UTC)
FIRST_SEQ = 101
# A batch name ends with the first message's enqueued time (the hub's incarnation).
AT = "t20261102T080030000Z"

# Byte-exact records: odd spacing and a non-ASCII character, as re-serialising would lose.
KV_RECORD = json.dumps(
    keyvault(0) | {"resultDescription": "Zugriff geprüft"}, ensure_ascii=False
).encode()
NO_TIME = keyvault(5)
del NO_TIME["time"]
NO_TIME_RECORD = json.dumps(NO_TIME, separators=(",", ":")).encode()
BODIES = [
    b'{"records": [ ' + KV_RECORD + b" ]}",
    b"not json",
    b'{"records":[' + NO_TIME_RECORD + b"]}",
]


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory):
    """The environment the Function App reads, set before function_app is imported."""
    archive = tmp_path_factory.mktemp("archive")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHIWATCH_ARCHIVE_DIR", str(archive))
        mp.setenv("PHIWATCH_PSEUDONYM_KEY", TEST_KEY_HEX)
        mp.setenv("PHIWATCH_EVENTHUB_NAME", "diagnostics")
        mp.setenv("PHIWATCH_EVENTHUB_CONSUMER_GROUP", "phiwatch")
        yield archive


@pytest.fixture(scope="module")
def function_app(archive_dir: Path) -> ModuleType:
    return importlib.import_module("function_app")


@functools.cache
def _functions(module: ModuleType) -> dict[str, typing.Any]:
    return {fn.get_function_name(): fn for fn in module.app.get_functions()}


@pytest.fixture(scope="module")
def functions(function_app: ModuleType) -> dict[str, typing.Any]:
    return _functions(function_app)


def eventhub_events(bodies: list[bytes], first_seq: int = FIRST_SEQ) -> list[func.EventHubEvent]:
    context = {
        "FullyQualifiedNamespace": "ns.servicebus.windows.net",
        "EventHubName": "diagnostics",
        "ConsumerGroup": "phiwatch",
        "PartitionId": "0",
    }
    metadata = {"PartitionContext": Datum(json.dumps(context), "json")}
    return [
        func.EventHubEvent(
            body=body,
            trigger_metadata=metadata,
            enqueued_time=ENQUEUED,
            sequence_number=first_seq + i,
            offset=str(4096 * i),
        )
        for i, body in enumerate(bodies)
    ]


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_object(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def only(root: Path, kind: str, batch: str) -> Path:
    (path,) = (root / kind).rglob(f"{batch}.jsonl.gz")
    return path


# ------------------------------------------------------------------ bindings


def test_normalize_binding(functions):
    fn = functions["normalize"]
    spec = json.loads(fn.get_function_json())
    assert spec["bindings"] == [
        {
            "type": "eventHubTrigger",
            "direction": "IN",
            "name": "events",
            "connection": "EVENTHUB",
            "eventHubName": "%PHIWATCH_EVENTHUB_NAME%",
            "cardinality": "MANY",
            "consumerGroup": "%PHIWATCH_EVENTHUB_CONSUMER_GROUP%",
        }
    ]
    # The retry policy is a function setting, not a binding: the worker reads it with
    # get_settings_dict("retry_policy") into RpcRetryOptions (int count, "%H:%M:%S" intervals).
    retry = fn.get_settings_dict("retry_policy")
    assert retry == {
        "setting_name": "retry_policy",
        "strategy": "exponential_backoff",
        "max_retry_count": "-1",
        "minimum_interval": "00:00:05",
        "maximum_interval": "00:15:00",
    }
    assert int(retry["max_retry_count"]) == -1
    for key in ("minimum_interval", "maximum_interval"):
        time.strptime(retry[key], "%H:%M:%S")
    # The worker checks the parameter annotation against the binding before it loads.
    hints = typing.get_type_hints(fn.get_user_function())
    assert EventHubTriggerConverter.check_input_type_annotation(hints["events"])


def test_health_binding(functions):
    spec = json.loads(functions["health"].get_function_json())
    trigger, output = spec["bindings"]
    assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN"
    assert trigger["route"] == "health" and trigger["methods"] == ["GET"]
    # Behind a function key: the answer names the version, configuration and failing parts.
    assert trigger["authLevel"] == "FUNCTION"
    assert output == {"type": "http", "direction": "OUT", "name": "$return"}


def test_outbox_timer_binding(functions):
    (trigger,) = json.loads(functions["deliver_outbox"].get_function_json())["bindings"]
    assert trigger["type"] == "timerTrigger" and trigger["direction"] == "IN"
    assert trigger["schedule"] == "0 */5 * * * *"
    assert trigger["runOnStartup"] is True and trigger["useMonitor"] is True


def test_rules_timer_binding_and_no_op_without_a_workspace(functions):
    from azure.functions.timer import TimerRequest

    (trigger,) = json.loads(functions["run_rules"].get_function_json())["bindings"]
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "30 */5 * * * *"
    assert trigger["useMonitor"] is True
    host._cached_rule_runner.cache_clear()
    assert host.get_rule_runner() is None  # no workspace, no ADX: nothing to run
    functions["run_rules"].get_user_function()(TimerRequest(past_due=False))


def test_outbox_timer_without_sentinel_settings_is_a_no_op(functions):
    from azure.functions.timer import TimerRequest

    functions["deliver_outbox"].get_user_function()(TimerRequest(past_due=False))


def test_sentinel_sink_comes_from_settings_with_its_outbox(tmp_path: Path):
    from phiwatch.sinks.outbox import LocalOutbox
    from phiwatch.wiring import sentinel_sink

    assert sentinel_sink(Settings()) is None  # no DCR: archive only
    dcr = {
        "dcr_endpoint": "https://dcr.westeurope-1.ingest.monitor.azure.com",
        "dcr_immutable_id": "dcr-0123456789abcdef0123456789abcdef",
    }
    with pytest.raises(ConfigurationError, match="needs an outbox"):
        sentinel_sink(Settings(**dcr))
    sink = sentinel_sink(Settings(**dcr, outbox_dir=tmp_path / "outbox"))
    assert isinstance(sink.outbox, LocalOutbox)
    assert sink.streams == {
        "events": "Custom-PhiAccessEvents",
        "alerts": "Custom-PhiAlerts",
        "health": "Custom-PhiPipelineHealth",
    }


def test_blob_outbox_from_settings_needs_an_existing_container(azurite, blob_container):
    from phiwatch.wiring import outbox

    url = blob_container.url
    conn = azurite.connection_string
    assert outbox(Settings(outbox_url=url, outbox_connection_string=conn)) is not None
    with pytest.raises(ConfigurationError):
        outbox(Settings(outbox_url=url + "-missing", outbox_connection_string=conn))


# ------------------------------------------------------------------ normalize


def test_normalize_archives_and_is_idempotent(functions, archive_dir: Path):
    normalize = functions["normalize"].get_user_function()
    normalize(eventhub_events(BODIES))  # must not raise: bad records are dead-lettered

    batch = f"diagnostics-p0-{FIRST_SEQ:012d}-{FIRST_SEQ + 2:012d}-{AT}"
    raw = read_object(only(archive_dir, "raw", batch))
    assert [entry["Raw"].encode() for entry in raw] == [KV_RECORD, b"not json", NO_TIME_RECORD]
    assert [entry["Position"] for entry in raw] == ["seq 101#0", "seq 102", "seq 103#0"]
    assert all(e["RecordHash"] == hashlib.sha256(e["Raw"].encode()).hexdigest() for e in raw)

    dead = read_object(only(archive_dir, "deadletter", batch))
    assert {d["ReasonCode"] for d in dead} == {"body-malformed", "no-timestamp"}
    assert all(d["Reason"] and d["RawRecordRef"].startswith("raw/") for d in dead)
    (event,) = read_object(only(archive_dir, "events", batch))
    assert event["EventProduct"] == "Key Vault"

    before = snapshot(archive_dir)
    normalize(eventhub_events(BODIES))  # redelivery to the same instance
    assert snapshot(archive_dir) == before
    # Redelivery to another instance (partition moved, host restarted): a fresh pipeline.
    EventHubBatchProcessor(Settings()).process("diagnostics", messages(BODIES))
    assert snapshot(archive_dir) == before


def messages(bodies: list[bytes], partition: str = "0", first_seq: int | None = FIRST_SEQ):
    return [
        EventHubMessage(
            body=body,
            sequence_number=None if first_seq is None else first_seq + i,
            enqueued_time=ENQUEUED,
            partition_id=partition,
        )
        for i, body in enumerate(bodies)
    ]


def test_health_reports_configuration_without_values(functions):
    response = functions["health"].get_user_function()(
        func.HttpRequest(method="GET", url="/api/health", body=b"")
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    batches = body.pop("batches")
    assert body == {
        "status": "ok",
        "version": "0.1.0",
        "archive_configured": True,
        "pseudonym_key_configured": True,
        "detection": "in-process (one diagnostics partition only)",
        "state_configured": False,
        "checks": {"archive": {"status": "ok", "immutability": "local directory"}},
        "immutability": "local directory",
    }
    assert set(batches) >= {"canary_last_seen", "canary_age_seconds"}
    assert TEST_KEY_HEX not in response.get_body().decode()


def test_health_of_two_stages_needs_the_state_container(archive_dir, monkeypatch):
    monkeypatch.setenv("PHIWATCH_PHI_EVENTS_HUB", "phi-events")
    status, body = health_status()
    assert (status, body["detection"], body["status"]) == (503, "two-stage", "degraded")
    assert body["problem"] == "PHIWATCH_STATE_URL: detect needs a state container"
    monkeypatch.setenv("PHIWATCH_STATE_DIR", str(archive_dir.parent / "state"))
    status, body = health_status()
    assert (status, body["status"], body["state_configured"]) == (200, "ok", True)
    assert body["checks"]["state"] == {"status": "ok"}


def test_health_says_what_is_missing_or_invalid(archive_dir, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PHIWATCH_PSEUDONYM_KEY")
    status, body = health_status()
    assert status == 503 and body["status"] == "degraded"
    assert body["archive_configured"] is True and body["pseudonym_key_configured"] is False
    monkeypatch.setenv("PHIWATCH_ALLOWED_LATENESS_SECONDS", "-5")
    status, body = health_status()
    assert status == 503 and body["status"] == "misconfigured"
    assert "PHIWATCH_ALLOWED_LATENESS_SECONDS" in body["problem"] and "-5" not in body["problem"]


def test_health_says_when_the_key_vault_reference_did_not_resolve(archive_dir, monkeypatch):
    monkeypatch.setenv(
        "PHIWATCH_PSEUDONYM_KEY",
        "@Microsoft.KeyVault(VaultName=kv;SecretName=phiwatch-pseudonym-key)",
    )
    status, body = health_status()
    assert status == 503 and body["pseudonym_key_configured"] is False
    assert body["problem"] == "PHIWATCH_PSEUDONYM_KEY: the Key Vault reference did not resolve"


# ------------------------------------------------------------------ the processor


def test_blob_archive_must_be_immutable_unless_told_otherwise(azurite, blob_container):
    from phiwatch.wiring import archive_store

    url, conn = blob_container.url, azurite.connection_string
    with pytest.raises(ConfigurationError, match="immutab"):
        # Azurite reports no immutability policy, like an unprotected container would.
        archive_store(Settings(archive_url=url, archive_connection_string=conn))
    store = archive_store(
        Settings(
            archive_url=url, archive_connection_string=conn, archive_require_immutability=False
        )
    )
    assert store.location == url
    with pytest.raises(ConfigurationError, match="container"):
        archive_store(
            Settings(
                archive_url=url + "-missing",
                archive_connection_string=conn,
                archive_require_immutability=False,
            )
        )


def test_missing_archive_dir_is_a_clear_configuration_error(archive_dir):
    with pytest.raises(ConfigurationError, match="set PHIWATCH_ARCHIVE_URL"):
        EventHubBatchProcessor(Settings(archive_dir=None))


def test_retry_after_archive_failure_writes_what_a_clean_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    clean, failing = tmp_path / "clean", tmp_path / "failing"
    EventHubBatchProcessor(Settings(archive_dir=clean)).process("diagnostics", messages(BODIES))

    real_put = Archive.put
    failures = iter([OSError("archive unavailable")])

    def put(self, name, lines, **options):
        if name.startswith("deadletter/"):
            error = next(failures, None)
            if error is not None:
                raise error
        return real_put(self, name, lines, **options)

    monkeypatch.setattr(Archive, "put", put)
    processor = EventHubBatchProcessor(Settings(archive_dir=failing))
    with pytest.raises(OSError, match="archive unavailable"):
        processor.process("diagnostics", messages(BODIES))
    processor.process("diagnostics", messages(BODIES))  # the host's retry
    assert snapshot(failing) == snapshot(clean)


def test_partitions_and_missing_sequence_numbers(tmp_path: Path):
    processor = EventHubBatchProcessor(Settings(archive_dir=tmp_path))
    result = processor.process(
        "diagnostics", messages(BODIES[:1], "0") + messages(BODIES[2:], "3", first_seq=7)
    )
    assert result.counts.records == 2 and result.counts.accounted
    names = sorted(p.name for p in (tmp_path / "raw").rglob("*.gz"))
    assert names == [
        f"diagnostics-p0-{FIRST_SEQ:012d}-{FIRST_SEQ:012d}-{AT}.jsonl.gz",
        f"diagnostics-p3-{7:012d}-{7:012d}-{AT}.jsonl.gz",
    ]
    # Without sequence numbers, two different batches must not collide on one name.
    processor.process("diagnostics", messages([BODIES[1]], "5", first_seq=None))
    processor.process("diagnostics", messages([b"{}"], "5", first_seq=None))
    noseq = [p for p in (tmp_path / "raw").rglob("diagnostics-p5-noseq-*")]
    assert len(noseq) == 2
    assert all(read_object(p) for p in noseq)


def test_batch_log_line_has_counts_and_no_record_content(tmp_path: Path):
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        EventHubBatchProcessor(Settings(archive_dir=tmp_path)).process(
            "diagnostics", messages(BODIES)
        )
    finally:
        configure_logging("WARNING", stream=io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [entry for entry in lines if entry["event"] == "eventhub batch processed"]
    assert line["records"] == 3 and line["events"] == 1 and line["dead_letters"] == 2
    assert line["batches"] == [f"diagnostics-p0-{FIRST_SEQ:012d}-{FIRST_SEQ + 2:012d}-{AT}"]
    output = stream.getvalue()
    for content in ("10.1.2.3", "fhir-client-secret", "11111111-aaaa", "not json"):
        assert content not in output


# ------------------------------------------------------------------ settings sample


def test_sample_settings_name_every_setting_the_app_reads():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    assert sample["IsEncrypted"] is False
    values: dict[str, str] = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert "AzureWebJobsStorage" in values

    source = (ROOT / "function_app.py").read_text()
    read = set(re.findall(r"%([A-Za-z0-9_]+)%", source))
    read |= set(re.findall(r"os\.(?:environ\.get|getenv)\(\s*\"([A-Za-z0-9_]+)\"", source))
    read |= set(re.findall(r"os\.environ\[\s*\"([A-Za-z0-9_]+)\"", source))
    read |= {f"PHIWATCH_{name.upper()}" for name in Settings.model_fields}
    assert Settings.model_config["env_prefix"] == "PHIWATCH_"
    missing = sorted(name for name in read if name not in values)
    assert not missing, f"local.settings.sample.json lacks {missing}"

    # An identity-based connection is a prefix plus `__fullyQualifiedNamespace`.
    for connection in re.findall(r"connection=\"([A-Za-z0-9_]+)\"", source):
        assert f"{connection}__fullyQualifiedNamespace" in values

    # Placeholders only: the key is a Key Vault reference, and no secret material anywhere.
    assert values["PHIWATCH_PSEUDONYM_KEY"].startswith("@Microsoft.KeyVault(")
    text = json.dumps(values).lower()
    for secret_marker in ("accountkey=", "sharedaccesskey", "password"):
        assert secret_marker not in text


# ------------------------------------------------------------------ two stages


def test_detect_binding(functions):
    fn = functions["detect"]
    spec = json.loads(fn.get_function_json())
    assert spec["bindings"] == [
        {
            "type": "eventHubTrigger",
            "direction": "IN",
            "name": "events",
            # phi-events is in its own namespace (local auth off): its own identity connection.
            "connection": "PHIEVENTS",
            "eventHubName": "%PHIWATCH_PHI_EVENTS_HUB%",
            "cardinality": "MANY",
            "consumerGroup": "%PHIWATCH_PHI_EVENTS_CONSUMER_GROUP%",
        }
    ]
    assert fn.get_settings_dict("retry_policy")["max_retry_count"] == "-1"
    hints = typing.get_type_hints(fn.get_user_function())
    assert EventHubTriggerConverter.check_input_type_annotation(hints["events"])


def phi_events(events, first_seq: int, partition: str = "3") -> list[func.EventHubEvent]:
    context = {"EventHubName": "phi-events", "ConsumerGroup": "phiwatch", "PartitionId": partition}
    metadata = {"PartitionContext": Datum(json.dumps(context), "json")}
    return [
        func.EventHubEvent(
            # After the event itself: detect refuses times beyond arrival plus the skew.
            body=encode_event(event, event.time_generated + timedelta(seconds=30)),
            trigger_metadata=metadata,
            enqueued_time=event.time_generated + timedelta(seconds=30),
            sequence_number=first_seq + i,
            offset=str(i),
        )
        for i, event in enumerate(events)
    ]


def test_normalize_hands_every_event_to_the_forwarder(tmp_path: Path):
    sent: list = []

    class Forwarder:
        def forward(self, events, stream):
            sent.extend(events)

    records = [fhir(i, path=f"Patient/p{i}") for i in range(3)] + [activity(5)]
    body = json.dumps({"records": records}).encode()
    settings = Settings(archive_dir=tmp_path / "archive")
    result = EventHubBatchProcessor(settings, sinks=[], forwarder=Forwarder()).process(
        "diagnostics", messages([body])
    )
    assert [event for event, _ in sent] == result.events and len(sent) == 4
    assert {arrival for _, arrival in sent} == {ENQUEUED}  # DetectedAt comes from here
    assert result.alerts == []  # detection is detect's job now
    # The shipped rules need the reads by actor and by patient (curious-access), and the
    # settings change by subscription.
    router = Router(detections.load_detections())
    reads = [e for e, _ in sent if e.patient_ref]
    assert {route for e, _ in sent for route in router.routes(e)} == {
        ("actor", "oid:33333333-aaaa-4bbb-8ccc-000000000003"),
        ("subscription", f"sub:{SUB.lower()}"),
        *(("patient", f"pat:{e.patient_ref}") for e in reads),
    }
    assert len(reads) == 3


def test_detect_raises_alerts_keeps_state_and_skips_what_it_covers(
    functions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PHIWATCH_ARCHIVE_DIR", str(tmp_path / "archive"))
    monkeypatch.setenv("PHIWATCH_PHI_EVENTS_HUB", "phi-events")
    monkeypatch.setenv("PHIWATCH_STATE_DIR", str(tmp_path / "state"))
    host._cached_detector.cache_clear()
    detect = functions["detect"].get_user_function()
    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(i * 2, path=f"Patient/p{i}") for i in range(60)]
    records += [fhir(200 + i * 3, path="metadata", interaction="capabilities") for i in range(80)]
    events = [e for b in batches_of(records) for e in pipeline.process(b).events]
    try:
        detect(phi_events(events[:70], 1000))
        detect(phi_events(events[70:], 1070))
        alerts_dir = tmp_path / "archive" / "alerts"
        (alert_file,) = alerts_dir.rglob("phi-events-p3-*.jsonl.gz")
        (alert,) = read_object(alert_file)
        assert alert["RuleId"] == "mass-record-access" and alert["DistinctPatientCount"] == 60
        # The arrival of the 51st patient's read, the one that crossed the threshold.
        crossed = events[50].time_generated + timedelta(seconds=30)
        assert alert["DetectedAt"] == crossed.isoformat().replace("+00:00", "Z")
        assert [p.name for p in (tmp_path / "state").rglob("*.json.gz")] == ["3.json.gz"]

        # A new instance (the partition moved) restores the snapshot and skips the batch it
        # covers: nothing is counted twice, no alert is raised again.
        host._cached_detector.cache_clear()
        before = snapshot(tmp_path)
        (result,) = host.get_detector().process_partitions(
            [m for m in _messages_of(phi_events(events[70:], 1070))]
        )
        assert result.restored and result.covered == len(events) - 70 and result.events == 0
        assert snapshot(tmp_path) == before
    finally:
        host._cached_detector.cache_clear()


def _messages_of(events: list[func.EventHubEvent]) -> list[EventHubMessage]:
    return [EventHubMessage(e.get_body(), e.sequence_number, e.enqueued_time, "3") for e in events]


def test_detect_without_a_hub_or_state_is_a_clear_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="PHIWATCH_PHI_EVENTS_HUB"):
        DetectBatchProcessor(Settings(archive_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="PHIWATCH_STATE_URL"):
        DetectBatchProcessor(Settings(archive_dir=tmp_path, phi_events_hub="phi-events"))
    with pytest.raises(ConfigurationError, match="PHIWATCH_PHI_EVENTS_NAMESPACE"):
        EventHubBatchProcessor(Settings(archive_dir=tmp_path, phi_events_hub="phi-events"))


# ------------------------------------------------------------------ health checks


class _Props:
    def __init__(self, immutable: bool) -> None:
        self.immutable_storage_with_versioning_enabled = immutable
        self.has_immutability_policy = immutable
        self.has_legal_hold = False


class _ContainerStandIn:
    """The immutability seam's stand-in (Azurite reports no immutability at all)."""

    url = "https://acct.blob.core.windows.net/phiwatch-archive"

    def __init__(self, immutable: bool) -> None:
        self.props = _Props(immutable)

    def get_container_properties(self, **kwargs):
        return self.props


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch):
    """The process-wide activity record, emptied and on a fake clock."""
    from phiwatch.hosts.activity import ACTIVITY

    now = [datetime(2026, 11, 2, 9, 0, tzinfo=UTC)]
    monkeypatch.setattr(ACTIVITY, "clock", lambda: now[0])
    monkeypatch.setattr(ACTIVITY, "_partitions", {})
    monkeypatch.setattr(ACTIVITY, "_canary", None)
    return now


def test_health_checks_the_blob_archive(azurite, blob_container, monkeypatch):
    monkeypatch.delenv("PHIWATCH_ARCHIVE_DIR", raising=False)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_URL", blob_container.url)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_CONNECTION_STRING", azurite.connection_string)
    # Azurite: reachable, the container exists, no immutability: refused when required.
    status, body = health_status()
    assert status == 503 and body["immutability"] == "none"
    assert body["problem"].startswith("archive: the container is not immutable")
    monkeypatch.setenv("PHIWATCH_ARCHIVE_REQUIRE_IMMUTABILITY", "false")
    status, body = health_status()
    assert status == 200 and body["checks"]["archive"]["status"] == "ok"
    assert body["warnings"][0].startswith("archive: the container is not immutable")
    monkeypatch.setenv("PHIWATCH_ARCHIVE_URL", blob_container.url + "-missing")
    status, body = health_status()
    assert status == 503 and body["problem"] == "archive: the container does not exist"


def test_health_and_startup_say_the_immutability_policy_is_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from phiwatch.archive.blob_store import BlobStore
    from phiwatch.wiring import archive_store, immutability_state

    stand_in = _ContainerStandIn(immutable=True)
    from phiwatch import wiring

    for module in (health, wiring):  # the health check and the host build it alike
        monkeypatch.setattr(module, "blob_archive", lambda settings, **kw: BlobStore(stand_in))
    monkeypatch.delenv("PHIWATCH_ARCHIVE_DIR", raising=False)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_URL", stand_in.url)
    status, body = health_status()
    assert (status, body["immutability"]) == (200, "unlocked")
    assert "immutability policy is unlocked" in body["warnings"][0]

    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        archive_store(Settings())
    finally:
        configure_logging("WARNING", stream=io.StringIO())
    assert "archive immutability policy is unlocked" in stream.getvalue()

    monkeypatch.setenv("PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED", "true")
    status, body = health_status()
    assert (status, body["immutability"], "warnings" in body) == (200, "locked", False)
    unprotected = BlobStore(_ContainerStandIn(False), require_immutability=False)
    assert immutability_state(Settings(), unprotected) == "none"


def test_health_checks_the_state_container(azurite, blob_container, archive_dir, monkeypatch):
    monkeypatch.setenv("PHIWATCH_PHI_EVENTS_HUB", "phi-events")
    monkeypatch.setenv("PHIWATCH_STATE_URL", blob_container.url)
    monkeypatch.setenv("PHIWATCH_STATE_CONNECTION_STRING", azurite.connection_string)
    status, body = health_status()
    assert status == 200, body
    assert body["checks"]["state"] == {"status": "ok"}
    monkeypatch.setenv("PHIWATCH_STATE_URL", blob_container.url + "-missing")
    status, body = health_status()
    assert status == 503 and body["problem"].startswith("state: ")


def test_each_health_check_is_bounded_in_time():
    import threading

    from phiwatch.hosts.activity import CheckResult, run_checks

    release = threading.Event()

    def hangs() -> CheckResult:
        release.wait()  # a dependency that never answers
        return CheckResult(True)

    try:
        results = run_checks({"archive": hangs, "state": lambda: CheckResult(True)}, 0.05)
    finally:
        release.set()
    assert results["archive"].problem == "archive: no answer within 0.05s"
    assert results["archive"].detail == {"status": "timeout"}
    assert results["state"].ok


def test_health_reports_the_age_of_the_last_batch_and_a_failing_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_clock
):
    monkeypatch.setenv("PHIWATCH_ARCHIVE_DIR", str(tmp_path))
    processor = EventHubBatchProcessor(Settings())
    processor.process("diagnostics", messages(BODIES))
    fake_clock[0] = fake_clock[0].replace(minute=2)  # two minutes later
    status, body = health_status()
    assert status == 200 and body["batches"]["normalize"]["0"] == {
        "last_success_age_seconds": 120.0
    }
    monkeypatch.setenv("PHIWATCH_HEALTH_MAX_BATCH_AGE_SECONDS", "60")
    status, body = health_status()
    assert status == 503
    assert body["problem"] == "normalize partition 0: no successful batch for over 60s"

    def put(self, name, lines, **options):
        raise OSError("archive unavailable")

    monkeypatch.setattr(Archive, "put", put)
    with pytest.raises(OSError):
        processor.process("diagnostics", messages([KV_RECORD], first_seq=500))
    status, body = health_status()
    assert status == 503 and body["batches"]["normalize"]["0"]["error"] == "OSError"
    assert body["problem"] == (
        "normalize partition 0: its batch keeps failing (OSError); the host retries it"
    )


def test_a_canary_is_archived_counted_as_a_skip_and_seen_by_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_clock
):
    from phiwatch.sources.canary import canary_record

    monkeypatch.setenv("PHIWATCH_ARCHIVE_DIR", str(tmp_path))
    body = json.dumps({"records": [canary_record(ENQUEUED, "c-1")]}).encode()
    result = EventHubBatchProcessor(Settings()).process("diagnostics", messages([body]))
    assert result.counts.skipped == {"canary": 1} and result.counts.accounted
    assert result.events == [] and result.dead_letters == [] and result.alerts == []
    batch = f"diagnostics-p0-{FIRST_SEQ:012d}-{FIRST_SEQ:012d}-{AT}"
    (raw,) = read_object(only(tmp_path, "raw", batch))
    assert json.loads(raw["Raw"])["properties"]["canaryId"] == "c-1"
    _, health = health_status()
    assert health["batches"]["canary_last_seen"] == fake_clock[0].isoformat()
    assert health["batches"]["canary_age_seconds"] == 0.0
