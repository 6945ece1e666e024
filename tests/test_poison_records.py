"""Issue #12 item 1: one record must not stall its partition (surrogates, impossible times,
a batch that fails the same way on every attempt) nor stop a replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.signer import Ed25519Signer, load_public_key
from phiwatch.archive.store import LocalStore
from phiwatch.archive.verify import verify_archive
from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.envelope import Body, decode_body
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.hosts.functions import EventHubBatchProcessor
from phiwatch.hosts.replay import replay
from phiwatch.quarantine import BatchPoisoned
from phiwatch.sources.fields import parse_event_time, parse_time
from tests import records
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.harness import make_pipeline

SIGNER = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))
TRUSTED = {SIGNER.key_id: load_public_key(SIGNER.public_key_pem())}
ENQUEUED = datetime(2026, 11, 2, 8, 5, tzinfo=UTC)


def verify_problems(root: Path) -> list[str]:
    return verify_archive(LocalStore(root), TRUSTED).problems


def read_kind(root: Path, kind: str) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((root / kind).rglob("*.jsonl.gz"))
        for line in decode_lines(path.read_bytes())
    ]


def body_of(*texts: str) -> bytes:
    return ('{"records":[' + ",".join(texts) + "]}").encode()


def run_one(tmp_path: Path, data: bytes):
    pipeline, sink = make_pipeline(tmp_path)
    result = pipeline.process(Batch("t", 0, 0, [Body(data, "t", "b0")]))
    pipeline.finish()
    return pipeline, sink, result


# ------------------------------------------------------------------ lone surrogates

KV = json.dumps(records.keyvault())
FHIR = json.dumps(records.fhir(1))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (KV.replace("azsdk-python-keyvault-secrets/4.8.0", "\\ud800"), "HttpUserAgent"),
        (KV.replace('"SecretGet"', '"Secret\\udfffGet"'), "Operation"),
        (FHIR.replace("alice.nurse@", "alice\\udc00@"), "ActorUsername"),
        (
            FHIR.replace('"fhirResourceType"', '"userAgent": "curl/\\udbff", "fhirResourceType"'),
            "HttpUserAgent",
        ),
    ],
)
def test_a_lone_surrogate_becomes_u_fffd_and_the_batch_goes_through(tmp_path, record, field):
    good = json.dumps(records.keyvault(2, operation="SecretList"))
    pipeline, sink, result = run_one(tmp_path, body_of(record, good))
    assert result.counts.event_records == 2 and result.counts.accounted
    assert "\ufffd" in sink.events[0].to_wire()[field]
    # The raw archive keeps the exact bytes (the escape), and verify passes.
    raw = read_kind(pipeline.archive.store.root, "raw")
    assert raw[0]["Raw"] == record
    assert verify_problems(pipeline.archive.store.root) == []


def test_a_surrogate_in_a_category_is_a_dead_letter_that_serialises(tmp_path):
    record = '{"category":"Audit\\ud800","time":"2026-11-02T08:00:00Z"}'
    _, sink, result = run_one(tmp_path, body_of(record))
    assert dict(result.counts.dead_letters) == {"unknown-category": 1}
    (dead,) = sink.dead
    assert dead.source_category == "Audit\ufffd"
    assert "\ufffd" in dead.to_json().decode()
    assert json.dumps(result.counts.as_dict())  # the replay summary prints these


def test_a_surrogate_inside_properties_text_is_repaired_too(tmp_path):
    # properties as a JSON string: the surrogate only appears when the normaliser parses it.
    value = records.keyvault()
    props = json.dumps(value["properties"]).replace(
        "azsdk-python-keyvault-secrets/4.8.0", "\\ud800"
    )
    value["properties"] = props
    _, sink, result = run_one(tmp_path, body_of(json.dumps(value)))
    assert result.counts.event_records == 1
    assert sink.events[0].http_user_agent == "\ufffd"


def test_the_event_uid_of_a_surrogate_record_is_not_that_of_its_repair():
    escaped, replaced = decode_body(Body(body_of('{"v":"\\ud800"}', '{"v":"\ufffd"}'), "t", "b0"))
    assert escaped.value == replaced.value == {"v": "\ufffd"}
    assert escaped.content_uid() != replaced.content_uid()
    (other,) = decode_body(Body(body_of('{"v":"\\udc00"}'), "t", "b0"))
    assert other.content_uid() != escaped.content_uid()


# ------------------------------------------------------------------ impossible times

OUT_OF_RANGE = [
    '"0001-01-01T00:00:30Z"',
    '"0001-01-01T00:00:00+05:00"',
    '"9999-12-31T23:59:59-05:00"',
    '"9999-12-31T23:59:59Z"',
    '"1999-12-31T23:59:59Z"',
    '"2100-01-01T00:00:00Z"',
    "1" + "0" * 400,
    "-" + "1" + "0" * 400,
    "1e300",
    "NaN",
    "Infinity",
    "-Infinity",
    "0",
]


@pytest.mark.parametrize("when", OUT_OF_RANGE)
@pytest.mark.parametrize("first", [True, False])
def test_an_out_of_range_time_is_a_dead_letter_and_the_rest_goes_through(tmp_path, when, first):
    bad = FHIR.replace('"2026-11-02 08:00:01Z"', when)
    good = json.dumps(records.fhir(2, path="Patient/2"))
    pipeline, sink, result = run_one(tmp_path, body_of(*([bad, good] if first else [good, bad])))
    assert dict(result.counts.dead_letters) == {"time-out-of-range": 1}
    assert result.counts.event_records == 1 and result.counts.accounted
    (dead,) = sink.dead
    assert dead.reason == "timestamp is outside 2000-01-01..2100-01-01"
    # The batch's hour folder comes from the good record, never from year 1 or 9999.
    (raw_object,) = list((pipeline.archive.store.root / "raw").rglob("*.jsonl.gz"))
    assert "2026/11/02/08" in str(raw_object)
    assert verify_problems(pipeline.archive.store.root) == []


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        10**400,
        -(10**400),
        float("nan"),
        float("inf"),
        1e300,
        -1e300,
        "\ud800",
        "x" * 10_000,
    ],
)
def test_parse_time_never_raises(value):
    assert parse_time(value) is None


def test_the_accepted_range_is_half_open():
    assert parse_event_time("2000-01-01T00:00:00Z") == datetime(2000, 1, 1, tzinfo=UTC)
    assert parse_event_time("2099-12-31T23:59:59Z") is not None
    assert parse_event_time(1_700_000_000_000) == datetime.fromtimestamp(1_700_000_000, UTC)
    assert parse_event_time("not a time") is None


# ------------------------------------------------------------------ quarantine


def messages(body: bytes, seq: int) -> list[EventHubMessage]:
    return [EventHubMessage(body, seq, ENQUEUED, "0")]


POISON_ACTOR = "66666666-aaaa-4bbb-8ccc-000000000006"


@pytest.fixture
def engine_bug(monkeypatch):
    """A detection bug one record triggers (what the record-level defences cannot catch)."""
    real = DetectionEngine.process

    def process(self, event, arrival):
        if event.actor_user_id == POISON_ACTOR:
            raise ZeroDivisionError("a bug a crafted record triggers")
        real(self, event, arrival)

    monkeypatch.setattr(DetectionEngine, "process", process)


def test_a_batch_failing_the_same_way_is_quarantined_after_n_attempts(tmp_path, engine_bug):
    archive = tmp_path / "archive"
    processor = EventHubBatchProcessor(
        Settings(archive_dir=archive, poison_batch_attempts=3), sinks=[]
    )
    poison = body_of(
        json.dumps(records.fhir(0, oid=POISON_ACTOR)), json.dumps(records.fhir(1, path="Patient/9"))
    )
    for _ in range(2):
        with pytest.raises(BatchPoisoned, match="ZeroDivisionError"):
            processor.process("diagnostics", messages(poison, 7))
    result = processor.process("diagnostics", messages(poison, 7))  # the third: set aside

    assert dict(result.counts.dead_letters) == {"batch-quarantined": 2}
    assert result.counts.accounted and result.counts.events == 0
    (alert,) = result.alerts
    assert alert.rule_id == "batch-quarantined"
    # The name ends with the first message's enqueued time (the hub's incarnation).
    assert alert.title.startswith("Batch diagnostics-p0-000000000007-000000000007-t")
    assert alert.title.endswith(" was set aside unprocessed after 3 failed attempts")
    assert "ZeroDivisionError" in alert.reasons[0]
    dead = read_kind(archive, "deadletter")
    assert [d["ReasonCode"] for d in dead] == ["batch-quarantined"] * 2
    assert [d["RawRecordRef"].split("#")[1] for d in dead] == ["0", "1"]
    assert read_kind(archive, "alerts")[0]["AlertId"] == alert.alert_id
    assert verify_problems(archive) == []

    # The partition moves on: the next batch is processed as usual, and chains on.
    after = processor.process("diagnostics", messages(body_of(json.dumps(records.fhir(5))), 8))
    assert after.counts.event_records == 1
    assert verify_problems(archive) == []


def test_the_quarantine_alert_id_is_the_same_on_every_instance(tmp_path, engine_bug):
    poison = body_of(json.dumps(records.fhir(0, oid=POISON_ACTOR)))
    ids = []
    for name in ("a", "b"):
        processor = EventHubBatchProcessor(
            Settings(archive_dir=tmp_path / name, poison_batch_attempts=1), sinks=[]
        )
        ids.append(processor.process("diagnostics", messages(poison, 3)).alerts[0].alert_id)
    assert ids[0] == ids[1]


class FlakyStore(LocalStore):
    """The archive is down: every write fails until `up`."""

    up = False

    def put_if_absent(self, name, data):
        if not self.up:
            raise OSError("archive unreachable")
        return super().put_if_absent(name, data)


@pytest.mark.parametrize("down_after_raw", [False, True])
def test_an_archive_outage_stalls_and_never_quarantines(tmp_path, monkeypatch, down_after_raw):
    archive = tmp_path / "archive"
    store = FlakyStore(archive)
    if down_after_raw:
        # Up for the raw put only: the failure comes later in the batch, still an outage.
        real = LocalStore.put_if_absent

        def put(self, name, data):
            if name.startswith("raw/"):
                return real(self, name, data)
            raise OSError("archive unreachable")

        monkeypatch.setattr(FlakyStore, "put_if_absent", put)
    monkeypatch.setattr("phiwatch.hosts.functions.archive_store", lambda settings: store)
    processor = EventHubBatchProcessor(
        Settings(archive_dir=archive, poison_batch_attempts=2), sinks=[]
    )
    body = body_of(json.dumps(records.fhir(0)))
    for _ in range(6):
        with pytest.raises(OSError, match="archive unreachable"):
            processor.process("diagnostics", messages(body, 1))
    monkeypatch.undo()  # the processor keeps its store: bring the archive back
    store.up = True
    result = processor.process("diagnostics", messages(body, 1))
    assert result.counts.event_records == 1 and not result.counts.dead_letters
    assert verify_problems(archive) == []


def test_a_success_resets_the_count(tmp_path, monkeypatch):
    failing = {"on": True}
    real = DetectionEngine.process

    def process(self, event, arrival):
        if failing["on"]:
            raise ValueError("transient")
        real(self, event, arrival)

    monkeypatch.setattr(DetectionEngine, "process", process)
    processor = EventHubBatchProcessor(
        Settings(archive_dir=tmp_path / "a", poison_batch_attempts=2), sinks=[]
    )
    first = body_of(json.dumps(records.fhir(0)))
    with pytest.raises(BatchPoisoned):
        processor.process("diagnostics", messages(first, 1))
    failing["on"] = False
    assert processor.process("diagnostics", messages(first, 1)).counts.event_records == 1
    failing["on"] = True
    second = body_of(json.dumps(records.fhir(9)))
    with pytest.raises(BatchPoisoned):  # a first failure of its own: not quarantined yet
        processor.process("diagnostics", messages(second, 2))


# ------------------------------------------------------------------ replay


def test_replay_of_a_poison_file_processes_every_other_record_and_every_later_file(
    tmp_path, settings
):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = [json.dumps(records.fhir(i, path=f"Patient/{i}")) for i in range(4)]
    surrogate = FHIR.replace("alice.nurse@", "alice\\ud800@")
    year_one = FHIR.replace('"2026-11-02 08:00:01Z"', '"0001-01-01T00:00:30Z"')
    huge = FHIR.replace('"2026-11-02 08:00:01Z"', "1" + "0" * 400)
    offset = FHIR.replace('"2026-11-02 08:00:01Z"', '"9999-12-31T23:59:59-05:00"')
    (logs / "a.jsonl").write_bytes(
        body_of(good[0], surrogate, year_one) + b"\n" + body_of(huge, good[1], offset) + b"\n"
    )
    (logs / "b.jsonl").write_bytes(body_of(good[2], good[3]) + b"\n")
    summary = replay([logs], tmp_path / "out", settings)
    counts = summary.counts
    assert summary.files == 2 and counts.records == 8 and counts.accounted
    assert counts.event_records == 5  # four good ones and the repaired surrogate
    assert dict(counts.dead_letters) == {"time-out-of-range": 3}
    assert verify_problems(tmp_path / "out" / "archive") == []


def test_replay_quarantines_a_poison_batch_and_reads_on(tmp_path, settings, engine_bug):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_bytes(body_of(json.dumps(records.fhir(0, oid=POISON_ACTOR))) + b"\n")
    (logs / "b.jsonl").write_bytes(body_of(json.dumps(records.fhir(60))) + b"\n")
    summary = replay([logs], tmp_path / "out", settings)
    assert dict(summary.counts.dead_letters) == {"batch-quarantined": 1}
    assert summary.counts.event_records == 1 and summary.counts.accounted
    assert any("set aside" in p for p in summary.problems)
    assert "batch-quarantined" in {a.rule_id for a in summary.alerts}
    assert verify_problems(tmp_path / "out" / "archive") == []


def test_a_file_name_that_is_not_utf8_does_not_stop_the_replay(tmp_path, settings):
    logs = tmp_path / "logs"
    logs.mkdir()
    name = b"\xff-logs.jsonl".decode("utf-8", "surrogateescape")
    (logs / name).write_bytes(body_of(json.dumps(records.fhir(0))) + b"\n")
    summary = replay([logs], tmp_path / "out", settings)
    assert summary.counts.event_records == 1


def test_a_quarantine_alert_is_timed_by_the_batch_not_by_the_clock(tmp_path, engine_bug):
    # Without enqueued times (a file) the batch's time is its first record's.
    pipeline, _ = make_pipeline(tmp_path)
    data = body_of(json.dumps(records.fhir(0, oid=POISON_ACTOR)))
    batch = Batch("t", 0, 0, [Body(data, "t", "b0")])
    with pytest.raises(BatchPoisoned) as failure:
        pipeline.process(batch)
    result = pipeline.quarantine(batch, failure.value, attempts=1)
    assert result.alerts[0].last_event_time == records.at(0)


class OneBatchSource:
    """A ConsumerSource delivering one partition's batch once (no checkpoint store needed)."""

    hub = "diagnostics"

    def __init__(self, messages: list[EventHubMessage]) -> None:
        self.messages = messages
        self.checkpointed: list[int | None] = []

    def receive(self, on_batch) -> None:
        on_batch("0", self.messages)

    def checkpoint(self, partition_id, last_event) -> None:
        self.checkpointed.append(last_event.sequence_number)

    def stop(self) -> None:
        pass


def test_the_standalone_consumer_quarantines_instead_of_stopping_every_run(tmp_path, engine_bug):
    from phiwatch.hosts.consumer import consume

    processor = EventHubBatchProcessor(
        Settings(archive_dir=tmp_path / "archive", poison_batch_attempts=3), sinks=[]
    )
    source = OneBatchSource(messages(body_of(json.dumps(records.fhir(0, oid=POISON_ACTOR))), 4))
    report = consume(source, processor)
    assert source.checkpointed == [4]
    assert (report.batches, report.dead_letters) == (1, 1)
