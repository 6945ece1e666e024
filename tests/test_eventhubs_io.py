"""`phiwatch send` / `phiwatch consume`: Event Hubs in and out without the Functions host.

No Event Hubs broker runs here (shared/notes/local-azure.md §5), so the SDK clients sit behind
`Producer` / `ConsumerSource` and the tests drive:

* the real `BlobCheckpointStore` against Azurite, through `consume()` and an in-memory hub
  (`FakeHubSource`) that claims ownership and reads the checkpoints to decide where to start,
  as the SDK's event processor does;
* the real `EventHubBatchProcessor` (the Function App's code path) archiving to a directory,
  with an archive that fails once to prove the checkpoint waits for the archive write;
* the real adapters (`EventHubsProducer`, `EventHubsConsumer`) over in-memory fakes of the
  SDK objects they call (`create_batch`/`add`/`send_batch`, `receive_batch`/`update_checkpoint`).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from typer.testing import CliRunner

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.signer import Ed25519Signer, load_public_key
from phiwatch.archive.store import LocalStore, ObjectStore, PutOutcome
from phiwatch.archive.verify import verify_archive
from phiwatch.batch import BatchResult, Counts
from phiwatch.commands import eventhubs as eventhubs_cli
from phiwatch.commands.app import app
from phiwatch.config import Settings
from phiwatch.envelope import discover, read_file_bodies
from phiwatch.eventhubs.checkpoints import check_checkpoint_store, checkpoint_store
from phiwatch.eventhubs.consumer import EventHubsConsumer, message_from_event
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.eventhubs.names import (
    EventHubsConfigError,
    fully_qualified_namespace,
    split_container_url,
)
from phiwatch.eventhubs.producer import BatchOutcome, EventHubsProducer, send_files
from phiwatch.hosts import functions
from phiwatch.hosts.consumer import BatchNotProcessed, consume
from phiwatch.hosts.functions import EventHubBatchProcessor
from tests.azurite import Azurite
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.records import keyvault

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "logs"
NS = "phiwatch-test.servicebus.windows.net"
HUB = "diagnostics"
CG = "phiwatch"
SIGNER = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))
TRUSTED = {SIGNER.key_id: load_public_key(SIGNER.public_key_pem())}
ENQUEUED = datetime(2026, 11, 2, 8, 0, 30, tzinfo=UTC)
# After the last record of the 140-record FHIR burst (08:07:20): detect refuses event times
# beyond their arrival plus the allowed clock skew.
AFTER_BURST = ENQUEUED + timedelta(seconds=450)
FIRST_SEQ = 1000
runner = CliRunner()


# ------------------------------------------------------------------------------ the hub


def record_bytes(partition: int, index: int, n: int) -> bytes:
    """A unique Key Vault record, serialised once: its exact bytes are what gets archived."""
    seconds = partition * 1000 + index * 10 + n
    return json.dumps(keyvault(seconds, secret=f"s-{partition}-{index}-{n}")).encode()


def hub_data(partitions: int = 2, per_partition: int = 7, records_per_body: int = 2):
    """Partition id → its messages (sequence numbers from FIRST_SEQ), like a hub's log."""
    data: dict[str, list[EventHubMessage]] = {}
    for p in range(partitions):
        messages = []
        for i in range(per_partition):
            records = [record_bytes(p, i, n) for n in range(records_per_body)]
            messages.append(
                EventHubMessage(
                    body=b'{"records": [' + b", ".join(records) + b"]}",
                    sequence_number=FIRST_SEQ + i,
                    # Enqueued after its records' own times, as Azure Monitor delivers them.
                    enqueued_time=ENQUEUED + timedelta(seconds=p * 1000 + i * 10),
                    partition_id=str(p),
                )
            )
        data[str(p)] = messages
    return data


def hub_records(data: dict[str, list[EventHubMessage]], records_per_body: int = 2) -> Counter[str]:
    """Every record the hub holds, as the exact text the raw archive must keep."""
    return Counter(
        record_bytes(int(pid), i, n).decode()
        for pid, messages in data.items()
        for i in range(len(messages))
        for n in range(records_per_body)
    )


class FakeHubSource:
    """A `ConsumerSource` over in-memory partitions with a real checkpoint store.

    Like the SDK's event processor: claims ownership of the partitions (etag-guarded), starts
    each one after its checkpoint (exclusive, as the SDK does with a checkpoint offset) or at
    the beginning, delivers batches round-robin over partitions, and releases ownership when
    it stops. An exception from the callback stops receiving and propagates.
    """

    def __init__(
        self,
        data: dict[str, list[EventHubMessage]],
        store: BlobCheckpointStore,
        owner: str,
        batch_size: int = 3,
    ) -> None:
        self.hub = HUB
        self.data = data
        self.store = store
        self.owner = owner
        self.batch_size = batch_size
        self.delivered: list[tuple[str, list[int]]] = []
        self.checkpointed: list[tuple[str, int]] = []
        self.started_at: dict[str, int | None] = {}
        self.ownership_while_receiving: list[dict[str, Any]] = []
        self._in_flight: dict[str, EventHubMessage] = {}
        self._stopped = False

    def _claim(self) -> list[str]:
        existing = {o["partition_id"]: o for o in self.store.list_ownership(NS, HUB, CG)}
        wanted = []
        for pid in sorted(self.data):
            current = existing.get(pid)
            # A released partition reads back with owner None (empty metadata) from Azurite.
            if current is not None and current["owner_id"] not in ("", None, self.owner):
                continue  # another live consumer holds it
            claim = {
                "fully_qualified_namespace": NS,
                "eventhub_name": HUB,
                "consumer_group": CG,
                "partition_id": pid,
                "owner_id": self.owner,
            }
            if current is not None:
                claim["etag"] = current["etag"]
            wanted.append(claim)
        return sorted(o["partition_id"] for o in self.store.claim_ownership(wanted))

    def _release(self) -> None:
        mine = [o for o in self.store.list_ownership(NS, HUB, CG) if o["owner_id"] == self.owner]
        for ownership in mine:
            ownership["owner_id"] = ""
        self.store.claim_ownership(mine)

    def receive(self, on_batch: Callable[[str, list[EventHubMessage]], None]) -> None:
        claimed = self._claim()
        self.ownership_while_receiving = list(self.store.list_ownership(NS, HUB, CG))
        done = {
            c["partition_id"]: c["sequence_number"]
            for c in self.store.list_checkpoints(NS, HUB, CG)
        }
        cursor = {}
        for pid in claimed:
            after = done.get(pid)
            messages = self.data[pid]
            cursor[pid] = next(
                (i for i, m in enumerate(messages) if after is None or m.sequence_number > after),
                len(messages),
            )
            start = cursor[pid]
            self.started_at[pid] = (
                messages[start].sequence_number if start < len(messages) else None
            )
        try:
            while not self._stopped and any(cursor[p] < len(self.data[p]) for p in claimed):
                for pid in claimed:
                    if self._stopped:
                        break
                    batch = self.data[pid][cursor[pid] : cursor[pid] + self.batch_size]
                    if not batch:
                        continue
                    cursor[pid] += len(batch)
                    self.delivered.append((pid, [m.sequence_number for m in batch]))
                    self._in_flight[pid] = batch[-1]
                    try:
                        on_batch(pid, list(batch))
                    finally:
                        del self._in_flight[pid]
        finally:
            self._release()

    def checkpoint(self, partition_id: str, last_event: EventHubMessage) -> None:
        assert self._in_flight.get(partition_id) is last_event, "checkpoint outside its batch"
        seq = last_event.sequence_number
        self.store.update_checkpoint(
            {
                "fully_qualified_namespace": NS,
                "eventhub_name": HUB,
                "consumer_group": CG,
                "partition_id": partition_id,
                "offset": str(seq * 4096),
                "sequence_number": seq,
            }
        )
        self.checkpointed.append((partition_id, seq))

    def stop(self) -> None:
        self._stopped = True


class FailOnce:
    """An archive store whose first write matching `when` raises (an outage), then recovers."""

    def __init__(self, inner: ObjectStore, when: Callable[[str], bool]) -> None:
        self.inner = inner
        self.location = inner.location
        self.when = when
        self.failed: str | None = None

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        if self.failed is None and self.when(name):
            self.failed = name
            raise OSError("archive storage unavailable (test outage)")
        return self.inner.put_if_absent(name, data)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)


def make_processor(archive: Path) -> EventHubBatchProcessor:
    # The Function App's processor, archive-only (no Sentinel sink).
    return EventHubBatchProcessor(Settings(archive_dir=archive), sinks=[])


def azurite_store(azurite: Azurite, container: str) -> BlobCheckpointStore:
    # The full connection string: the vendored storage client refuses UseDevelopmentStorage.
    return checkpoint_store(container, azurite.connection_string, retry_total=0)


def checkpoints(store: BlobCheckpointStore) -> dict[str, int]:
    return {c["partition_id"]: c["sequence_number"] for c in store.list_checkpoints(NS, HUB, CG)}


def archived_records(root: Path) -> Counter[str]:
    store = LocalStore(root)
    raws = Counter()
    for name in store.list("raw/"):
        for line in decode_lines(store.get(name)):
            raws[orjson.loads(line)["Raw"]] += 1
    return raws


def seqs(messages: list[EventHubMessage]) -> list[int]:
    return [m.sequence_number for m in messages]


# ------------------------------------------------------ (a) checkpoint store in Azurite


def test_checkpoint_store_in_azurite_and_a_second_consumer_resumes(
    azurite, blob_container, tmp_path
):
    store = azurite_store(azurite, blob_container.container_name)
    assert check_checkpoint_store(store, NS, HUB, CG) == []
    data = hub_data()
    archive = tmp_path / "archive"

    first = FakeHubSource(data, store, "worker-A")
    report = consume(first, make_processor(archive), stop_after=3)

    assert report.batches == 3 and report.messages == 9 and report.records == 18
    assert report.events == 18 and report.dead_letters == 0
    # Both partitions were claimed by worker-A while it received, and released on stop.
    owners = {o["partition_id"]: o["owner_id"] for o in first.ownership_while_receiving}
    assert owners == {"0": "worker-A", "1": "worker-A"}
    assert not any(o["owner_id"] for o in store.list_ownership(NS, HUB, CG))
    # Round robin: p0[0:3], p1[0:3], p0[3:6]; each checkpointed after it was processed.
    assert first.delivered == [
        ("0", seqs(data["0"][0:3])),
        ("1", seqs(data["1"][0:3])),
        ("0", seqs(data["0"][3:6])),
    ]
    assert first.checkpointed == [("0", 1002), ("1", 1002), ("0", 1005)]
    listed = store.list_checkpoints(NS, HUB, CG)
    assert {(c["partition_id"], c["sequence_number"], c["offset"]) for c in listed} == {
        ("0", 1005, str(1005 * 4096)),
        ("1", 1002, str(1002 * 4096)),
    }

    # A second consumer (a restart: new process, new processor) resumes after the checkpoints.
    second = FakeHubSource(data, store, "worker-B")
    consume(second, make_processor(archive))

    assert second.started_at == {"0": 1006, "1": 1003}
    delivered = [s for _, batch in first.delivered + second.delivered for s in batch]
    assert len(delivered) == 14 and Counter(delivered) == Counter(
        s for messages in data.values() for s in seqs(messages)
    )
    assert checkpoints(store) == {"0": 1006, "1": 1006}
    assert verify_archive(LocalStore(archive), TRUSTED).problems == []
    assert archived_records(archive) == hub_records(data)


def test_ownership_claims_are_etag_guarded(azurite, blob_container):
    store = azurite_store(azurite, blob_container.container_name)
    owned = {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": CG,
        "partition_id": "0",
        "owner_id": "worker-A",
    }
    (claimed,) = store.claim_ownership([owned])
    assert claimed["etag"]
    # A claim with a stale etag is refused; one with the current etag moves the partition.
    # (Azurite does not enforce the If-None-Match: * of an etag-less claim on an existing
    # ownership blob, so that case is not asserted here.)
    assert list(store.claim_ownership([claimed | {"owner_id": "worker-B", "etag": '"0x1"'}])) == []
    (moved,) = store.claim_ownership([claimed | {"owner_id": "worker-B"}])
    assert [o["owner_id"] for o in store.list_ownership(NS, HUB, CG)] == ["worker-B"]
    assert moved["etag"] != claimed["etag"]


def test_missing_checkpoint_container_is_a_clear_error(azurite):
    store = azurite_store(azurite, "no-such-container")
    with pytest.raises(EventHubsConfigError, match="checkpoint container does not exist"):
        check_checkpoint_store(store, NS, HUB, CG)


def test_development_storage_shortcut_is_refused_clearly():
    with pytest.raises(EventHubsConfigError, match="UseDevelopmentStorage=true"):
        checkpoint_store("checkpoints", "UseDevelopmentStorage=true")


# ---------------------------------------------- (b) checkpoint only after the archive


def _raw_of_second_p0_batch(name: str) -> bool:
    return name.startswith("raw/") and f"-p0-{1003:012d}-" in name


def _manifest_of_second_p0_batch(name: str) -> bool:
    return name.startswith("manifests/diagnostics-p0/") and name.endswith(f"{1:012d}.json")


@pytest.mark.parametrize(
    "when",
    [_raw_of_second_p0_batch, _manifest_of_second_p0_batch],
    ids=["raw-write-fails", "manifest-write-fails"],
)
@pytest.mark.parametrize("retry", ["restarted-process", "same-process"])
def test_checkpoint_waits_for_the_archive_write(
    azurite, blob_container, tmp_path, monkeypatch, when, retry
):
    store = azurite_store(azurite, blob_container.container_name)
    data = hub_data()
    archive = tmp_path / "archive"
    flaky = FailOnce(LocalStore(archive), when)
    monkeypatch.setattr(functions, "archive_store", lambda settings: flaky)
    processor = make_processor(archive)

    first = FakeHubSource(data, store, "worker-A")
    with pytest.raises(BatchNotProcessed) as failure:
        consume(first, processor)

    assert flaky.failed is not None
    assert (failure.value.partition_id, failure.value.first, failure.value.last) == (
        "0",
        1003,
        1005,
    )
    assert isinstance(failure.value.__cause__, OSError)
    assert "not checkpointed" in str(failure.value)
    # p0's 2nd batch was delivered, failed, and stopped everything: its checkpoint is still
    # the 1st batch's; p1's 1st batch (processed before) is checkpointed; nothing later ran.
    assert first.delivered[-1] == ("0", [1003, 1004, 1005])
    assert checkpoints(store) == {"0": 1002, "1": 1002}
    assert first.checkpointed == [("0", 1002), ("1", 1002)]

    again = processor if retry == "same-process" else make_processor(archive)
    second = FakeHubSource(data, store, "worker-B")
    consume(second, again)

    assert second.started_at == {"0": 1003, "1": 1003}
    assert second.delivered[0] == ("0", [1003, 1004, 1005])
    assert checkpoints(store) == {"0": 1006, "1": 1006}
    report = verify_archive(LocalStore(archive), TRUSTED)
    assert report.problems == [] and report.streams == 2
    assert archived_records(archive) == hub_records(data)  # every record exactly once
    assert not [n for n in LocalStore(archive).list() if ".conflict-" in n]


# ------------------------------------------------- (c) producer adapter over fake SDK


class FakeSdkBatch:
    """Like `EventDataBatch`: `add` raises ValueError when the event would not fit."""

    OVERHEAD = 8

    def __init__(self, max_size_in_bytes: int) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.size_in_bytes = 0
        self.bodies: list[bytes] = []

    def add(self, event: EventData) -> None:
        body = b"".join(event.body)
        size = self.size_in_bytes + len(body) + self.OVERHEAD
        if size > self.max_size_in_bytes:
            raise ValueError(f"EventDataBatch has reached its size limit: {self.max_size_in_bytes}")
        self.size_in_bytes = size
        self.bodies.append(body)


class FakeSdkProducer:
    def __init__(self, make_batch: Callable[[], Any]) -> None:
        self.make_batch = make_batch
        self.sent: list[Any] = []
        self.closed = False

    def create_batch(self) -> Any:
        return self.make_batch()

    def send_batch(self, batch: Any) -> None:
        assert (len(batch) if isinstance(batch, EventDataBatch) else len(batch.bodies)) > 0
        self.sent.append(batch)

    def close(self) -> None:
        self.closed = True


def test_producer_packs_batches_under_the_limit_in_order_and_reports_oversized(caplog):
    client = FakeSdkProducer(lambda: FakeSdkBatch(1000))
    producer = EventHubsProducer(client)
    bodies = [b"a" * 300, b"b" * 300, b"c" * 300, b"X" * 1200, b"d" * 50, b"e" * 990, b"f"]

    assert producer.max_batch_bytes == 1000
    outcome = producer.send_batch(bodies)

    assert outcome == BatchOutcome(batches=4, bodies=6, bytes=1941, oversized=(3,))
    assert [batch.bodies for batch in client.sent] == [
        [b"a" * 300, b"b" * 300, b"c" * 300],
        [b"d" * 50],
        [b"e" * 990],
        [b"f"],
    ]
    assert all(batch.size_in_bytes <= 1000 for batch in client.sent)
    producer.close()
    assert client.closed


def test_producer_over_real_event_data_batches():
    # The SDK's own EventDataBatch works offline: real AMQP sizing, no connection.
    client = FakeSdkProducer(lambda: EventDataBatch(max_size_in_bytes=4096))
    bodies = [bytes([65 + i % 26]) * (100 + 37 * i) for i in range(40)] + [b"Z" * 5000]

    outcome = EventHubsProducer(client).send_batch(bodies)

    assert outcome.oversized == (40,) and outcome.bodies == 40
    assert outcome.bytes == sum(len(b) for b in bodies[:40])
    assert outcome.batches == len(client.sent) > 1
    assert sum(len(batch) for batch in client.sent) == 40
    assert all(batch.size_in_bytes <= 4096 for batch in client.sent)


def test_producer_and_consumer_clients_are_built_without_network():
    class NoToken:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no token may be requested")

    producer = EventHubsProducer.connect("phiwatch-test", HUB, NoToken(), retry_total=0)
    assert producer._client._address.hostname == NS
    store = checkpoint_store("https://acct.blob.core.windows.net/checkpoints", None, NoToken())
    consumer = EventHubsConsumer.connect("phiwatch-test", HUB, store, CG, NoToken(), retry_total=0)
    assert consumer._client._address.hostname == NS and consumer.hub == HUB
    producer.close()
    consumer.stop()


# ------------------------------------------------------------ (d) send_files, samples


class RecordingProducer:
    """A `Producer` that packs by body bytes and remembers every batch."""

    def __init__(self, max_batch_bytes: int) -> None:
        self.max_batch_bytes = max_batch_bytes
        self.batches: list[list[bytes]] = []

    def send_batch(self, bodies: list[bytes]) -> BatchOutcome:
        sent_before = len(self.batches)
        oversized = []
        current: list[bytes] = []
        for index, body in enumerate(bodies):
            if len(body) > self.max_batch_bytes:
                oversized.append(index)
                continue
            if sum(map(len, current)) + len(body) > self.max_batch_bytes:
                self.batches.append(current)
                current = []
            current.append(body)
        if current:
            self.batches.append(current)
        new = self.batches[sent_before:]
        return BatchOutcome(
            len(new), sum(map(len, new)), sum(len(b) for x in new for b in x), tuple(oversized)
        )


def test_send_files_sends_every_body_of_the_samples_once_in_order():
    files = discover([SAMPLES])
    expected = [body.data for path in files for body in read_file_bodies(path)]
    producer = RecordingProducer(256 * 1024)

    report = send_files([SAMPLES], producer)

    sent = [body for batch in producer.batches for body in batch]
    assert sent == expected
    assert report.files == len(files) == 24
    assert report.bodies == len(expected) and report.bytes == sum(map(len, expected))
    assert report.batches == len(producer.batches)
    assert all(sum(map(len, batch)) <= 256 * 1024 for batch in producer.batches)
    assert report.skipped == []
    assert f"sent {len(expected):,} bodies" in report.summary()


def test_send_files_reports_a_body_too_large_for_any_batch(tmp_path):
    small = json.dumps({"records": [keyvault(1)]})
    huge = json.dumps({"records": [keyvault(2) | {"padding": "x" * 3000}]})
    (tmp_path / "logs.jsonl").write_text(f"{small}\n{huge}\n{small}\n")
    (tmp_path / "one.json.gz").write_bytes(gzip.compress(small.encode()))
    client = FakeSdkProducer(lambda: FakeSdkBatch(2048))

    report = send_files([tmp_path], EventHubsProducer(client))

    assert report.files == 2 and report.bodies == 3 and report.batches == 2
    (problem,) = report.skipped
    assert problem.startswith("logs.jsonl:2: body of ") and "limit 2,048 bytes" in problem
    assert "NOT sent" in report.summary()
    assert [b for batch in client.sent for b in batch.bodies] == [small.encode()] * 3


# -------------------------------------------- the consumer adapter over a fake SDK client


class FakeContext:
    def __init__(self, partition_id: str, calls: list[tuple]) -> None:
        self.partition_id = partition_id
        self.calls = calls

    def update_checkpoint(self, event: Any = None) -> None:
        self.calls.append(("checkpoint", self.partition_id, event.sequence_number, id(event)))


class FakeEvent:
    """What `receive_batch` hands over: a DATA body (possibly several sections)."""

    body_type = AmqpMessageBodyType.DATA

    def __init__(self, sections: list[bytes], seq: int) -> None:
        self._sections = sections
        self.sequence_number = seq
        self.enqueued_time = ENQUEUED
        self.offset = str(seq * 4096)

    @property
    def body(self) -> Iterator[bytes]:
        return iter(self._sections)


class FakeSdkConsumer:
    """`EventHubConsumerClient.receive_batch` as the SDK behaves: a callback exception goes
    to on_error and that partition's receiver closes; close() ends receive_batch."""

    def __init__(self, script: list[tuple[str, list[Any]]], calls: list[tuple]) -> None:
        self.script = script
        self.calls = calls
        self.kwargs: dict[str, Any] = {}
        self.closed = False
        self.errors_to_report: list[Exception] = []

    def receive_batch(self, on_event_batch: Callable, **kwargs: Any) -> None:
        self.kwargs = kwargs
        for error in self.errors_to_report:
            kwargs["on_error"](None, error)
        dead: set[str] = set()
        for pid, events in self.script:
            if self.closed:
                return
            if pid in dead:
                continue
            try:
                on_event_batch(FakeContext(pid, self.calls), events)
            except Exception as exc:
                kwargs["on_error"](FakeContext(pid, self.calls), exc)
                dead.add(pid)

    def close(self) -> None:
        self.closed = True


class RecordingProcessor:
    def __init__(self, calls: list[tuple], fail_on: int | None = None) -> None:
        self.calls = calls
        self.fail_on = fail_on

    def process(self, hub: str, messages: list[EventHubMessage]):
        self.calls.append(("process", messages[0].partition_id, seqs(messages)))
        if self.fail_on is not None and messages[0].sequence_number == self.fail_on:
            raise OSError("archive storage unavailable (test outage)")
        return BatchResult(Counts(records=len(messages)), [], [], [], 0)


def script() -> list[tuple[str, list[Any]]]:
    return [
        ("0", [FakeEvent([b'{"records":', b"[]}"], 1), FakeEvent([b"{}"], 2)]),
        ("1", []),  # max_wait_time passed with nothing new
        ("1", [FakeEvent([b"x"], 7)]),
        ("0", [FakeEvent([b"y"], 3)]),
    ]


def test_consumer_adapter_checkpoints_the_last_event_after_processing():
    calls: list[tuple] = []
    steps = script()
    client = FakeSdkConsumer(steps, calls)
    source = EventHubsConsumer(client, HUB, max_wait_time=2.5)

    report = consume(source, RecordingProcessor(calls))

    assert client.kwargs["max_batch_size"] == 100
    assert client.kwargs["max_wait_time"] == 2.5
    assert client.kwargs["starting_position"] == "-1"  # no checkpoint: oldest retained event
    last_0, last_1, last_0b = steps[0][1][-1], steps[2][1][-1], steps[3][1][-1]
    assert calls == [
        ("process", "0", [1, 2]),
        ("checkpoint", "0", 2, id(last_0)),
        ("process", "1", [7]),
        ("checkpoint", "1", 7, id(last_1)),
        ("process", "0", [3]),
        ("checkpoint", "0", 3, id(last_0b)),
    ]
    assert report.batches == 3 and report.messages == 4


def test_consumer_adapter_does_not_checkpoint_a_failed_batch_and_stops():
    calls: list[tuple] = []
    client = FakeSdkConsumer(script(), calls)
    source = EventHubsConsumer(client, HUB)

    with pytest.raises(BatchNotProcessed) as failure:
        consume(source, RecordingProcessor(calls, fail_on=7))

    assert calls == [
        ("process", "0", [1, 2]),
        ("checkpoint", "0", 2, calls[1][3]),
        ("process", "1", [7]),
    ]
    assert client.closed  # receiving stopped: partition 0's next batch was never delivered
    assert str(failure.value).startswith("partition 1 batch seq 7 failed in the pipeline")


def test_consumer_adapter_stops_on_authentication_errors():
    calls: list[tuple] = []
    client = FakeSdkConsumer(script(), calls)
    client.errors_to_report = [ClientAuthenticationError("DefaultAzureCredential failed\nmore")]
    source = EventHubsConsumer(client, HUB)

    with pytest.raises(ClientAuthenticationError):
        consume(source, RecordingProcessor(calls))
    assert client.closed and calls == []


def test_received_bodies_are_kept_byte_exact():
    message = message_from_event(FakeEvent([b'{"records": [', b"{}]}"], 42), "3")
    assert message == EventHubMessage(b'{"records": [{}]}', 42, ENQUEUED, "3")


# ------------------------------------------------------------------- settings parsing


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("phiwatch-prod", "phiwatch-prod.servicebus.windows.net"),
        ("PhiWatch-Prod.servicebus.windows.net", "phiwatch-prod.servicebus.windows.net"),
        ("sb://phiwatch-prod.servicebus.windows.net/", "phiwatch-prod.servicebus.windows.net"),
    ],
)
def test_namespace_forms(given, expected):
    assert fully_qualified_namespace(given) == expected


@pytest.mark.parametrize("bad", ["ns", "bad ns", "-leading", "a..b.servicebus.windows.net", ""])
def test_bad_namespaces_are_refused(bad):
    with pytest.raises(EventHubsConfigError, match="--namespace"):
        fully_qualified_namespace(bad)


def test_checkpoint_container_urls():
    assert split_container_url("https://acct.blob.core.windows.net/checkpoints/") == (
        "https://acct.blob.core.windows.net",
        "checkpoints",
    )
    for bad in (
        "http://acct.blob.core.windows.net/c1x",
        "https://acct.blob.core.windows.net",
        "https://acct.blob.core.windows.net/a/b",
        "https://acct.blob.core.windows.net/Upper",
    ):
        with pytest.raises(EventHubsConfigError):
            split_container_url(bad)
    with pytest.raises(EventHubsConfigError, match="SAS"):
        split_container_url("https://acct.blob.core.windows.net/ckpt?sv=1&sig=x")


# ---------------------------------------------------------------------------- (e) CLI


def test_send_with_a_missing_path_fails_cleanly(tmp_path):
    result = runner.invoke(
        app,
        ["send", str(tmp_path / "nope"), "--allow-synthetic", "--namespace", "phiwatch-test"]
        + ["--hub", HUB],
    )
    assert result.exit_code == 2
    assert "nope: no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_send_with_a_bad_namespace_fails_cleanly():
    result = runner.invoke(
        app, ["send", str(SAMPLES), "--allow-synthetic", "--namespace", "bad ns", "--hub", HUB]
    )
    assert result.exit_code == 2
    assert "--namespace 'bad ns': not an Event Hubs namespace" in result.output


@pytest.mark.parametrize("command", ["send", "consume"])
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--namespace" in result.output and "--hub" in result.output


def test_send_prints_a_one_line_summary(monkeypatch):
    producer = RecordingProducer(1024 * 1024)
    seen = []
    monkeypatch.setattr(
        eventhubs_cli, "make_producer", lambda ns, hub: seen.append((ns, hub)) or producer
    )
    result = runner.invoke(
        app,
        ["send", str(SAMPLES), "--allow-synthetic", "--namespace", "phiwatch-test", "--hub", HUB],
    )
    assert result.exit_code == 0, result.output
    assert seen == [(NS, HUB)]
    (line,) = result.output.strip().splitlines()
    assert line.startswith("sent ") and line.endswith(
        f"from 24 file(s) in {len(producer.batches)} batch(es) to {NS}/{HUB}"
    )


def test_send_of_files_is_refused_without_allow_synthetic(monkeypatch):
    sent = []
    monkeypatch.setattr(eventhubs_cli, "make_producer", lambda ns, hub: sent.append(hub))
    result = runner.invoke(
        app, ["send", str(SAMPLES), "--namespace", "phiwatch-test", "--hub", HUB]
    )
    assert result.exit_code == 2 and sent == []  # nothing was even connected to
    assert "without --allow-synthetic" in result.output
    assert "Sentinel" in result.output and "--canary" in result.output


def test_send_canary_sends_one_canary_record(monkeypatch):
    producer = RecordingProducer(1024 * 1024)
    monkeypatch.setattr(eventhubs_cli, "make_producer", lambda ns, hub: producer)
    result = runner.invoke(app, ["send", "--canary", "--namespace", "phiwatch-test", "--hub", HUB])
    assert result.exit_code == 0, result.output
    ((body,),) = producer.batches
    (record,) = json.loads(body)["records"]
    assert record["category"] == "PhiwatchCanary"
    assert record["time"].endswith("Z") and record["properties"]["canaryId"]
    assert record["properties"]["canaryId"] in result.output
    with_files = runner.invoke(
        app, ["send", str(SAMPLES), "--canary", "--namespace", "phiwatch-test", "--hub", HUB]
    )
    assert with_files.exit_code == 2 and "no files" in with_files.output


def test_send_auth_failure_is_one_line(monkeypatch):
    class Refused:
        max_batch_bytes = 1024

        def send_batch(self, bodies):
            raise ClientAuthenticationError(
                "DefaultAzureCredential failed to retrieve a token from the included "
                "credentials.\nAttempted credentials:\n\tEnvironmentCredential: ..."
            )

    monkeypatch.setattr(eventhubs_cli, "make_producer", lambda ns, hub: Refused())
    result = runner.invoke(
        app,
        ["send", str(SAMPLES), "--allow-synthetic", "--namespace", "phiwatch-test", "--hub", HUB],
    )
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == (
        f"error: cannot send to {NS}/{HUB}: ClientAuthenticationError: DefaultAzureCredential "
        "failed to retrieve a token from the included credentials."
    )


def test_consume_cli_runs_the_pipeline_and_checkpoints(
    azurite, blob_container, tmp_path, monkeypatch
):
    data = hub_data()
    sources = []

    def make_consumer(ns, hub, store, group, **kwargs):
        assert (ns, hub, group, kwargs["starting_position"]) == (NS, HUB, CG, "-1")
        sources.append(FakeHubSource(data, store, "cli"))
        return sources[-1]

    monkeypatch.setattr(eventhubs_cli, "make_consumer", make_consumer)
    monkeypatch.setenv("PHIWATCH_ARCHIVE_DIR", str(tmp_path / "archive"))
    args = ["consume", "--namespace", "phiwatch-test", "--hub", HUB]
    args += ["--checkpoint-store", blob_container.container_name, "--max-batches", "2"]
    monkeypatch.setenv("PHIWATCH_CHECKPOINT_CONNECTION_STRING", azurite.connection_string)

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[1:] == [
        "partition 0: 3 event(s) (seq 1000-1002), 6 records, 6 access events, 0 dead-letters, "
        "0 alert update(s); checkpointed",
        "partition 1: 3 event(s) (seq 1000-1002), 6 records, 6 access events, 0 dead-letters, "
        "0 alert update(s); checkpointed",
        "done: 2 batch(es), 6 event(s) received, 12 records, 12 access events, 0 dead-letters, "
        "0 alert update(s); all checkpointed after the archive write",
    ]
    assert lines[0].startswith(f"consuming {NS}/{HUB} (hub, consumer group {CG})")
    store = azurite_store(azurite, blob_container.container_name)
    assert checkpoints(store) == {"0": 1002, "1": 1002}


def test_consume_cli_missing_checkpoint_container(azurite, tmp_path, monkeypatch):
    monkeypatch.setenv("PHIWATCH_ARCHIVE_DIR", str(tmp_path / "archive"))
    result = runner.invoke(
        app,
        [
            "consume",
            "--namespace",
            "phiwatch-test",
            "--hub",
            HUB,
            "--checkpoint-store",
            "missing-container",
            "--checkpoint-connection-string",
            azurite.connection_string,
        ],
    )
    assert result.exit_code == 2
    assert "error: the checkpoint container does not exist" in result.output
    assert "Traceback" not in result.output


def test_consume_cli_without_an_archive_fails_before_connecting(monkeypatch):
    monkeypatch.delenv("PHIWATCH_ARCHIVE_DIR", raising=False)
    monkeypatch.delenv("PHIWATCH_ARCHIVE_URL", raising=False)
    monkeypatch.setattr(eventhubs_cli, "make_consumer", lambda *a, **k: pytest.fail("connected"))
    result = runner.invoke(
        app,
        [
            "consume",
            "--namespace",
            "phiwatch-test",
            "--hub",
            HUB,
            "--checkpoint-store",
            "https://acct.blob.core.windows.net/checkpoints",
        ],
    )
    assert result.exit_code == 2
    assert "no archive configured" in result.output


def test_consume_runs_both_stages_and_detect_alerts_once(azurite, tmp_path, monkeypatch):
    """`consume --stage normalize` publishes keyed events, `consume --stage detect` reads
    them: the two-stage path of the Function App, with state in a directory."""
    import hashlib
    import uuid

    from phiwatch.eventhubs.publisher import PublishReport
    from tests.records import fhir

    records = [fhir(i * 2, path=f"Patient/p{i}") for i in range(60)]
    records += [fhir(200 + 3 * i, path="metadata", interaction="capabilities") for i in range(80)]
    raw: dict[str, list[EventHubMessage]] = {"0": [], "1": [], "2": []}
    for i in range(0, len(records), 5):  # bodies spread over partitions, as Azure Monitor does
        part = raw[str((i // 5) % 3)]
        part.append(
            EventHubMessage(
                json.dumps({"records": records[i : i + 5]}).encode(),
                FIRST_SEQ + len(part),
                AFTER_BURST + timedelta(seconds=i),
                str((i // 5) % 3),
            )
        )
    phi: dict[str, list[EventHubMessage]] = {"0": [], "1": []}

    class Publisher:  # the phi-events hub: partition = hash of the key, as Event Hubs does
        def publish(self, messages):
            for m in messages:
                pid = str(int(hashlib.sha256(m.key.encode()).hexdigest(), 16) % 2)
                phi[pid].append(EventHubMessage(m.body, len(phi[pid]), AFTER_BURST, pid))
            return PublishReport(messages=len(messages))

        def broadcast(self, body):
            for pid, part in phi.items():
                part.append(EventHubMessage(body, len(part), AFTER_BURST, pid))
            return len(phi)

        def close(self):
            pass

    monkeypatch.setattr(functions, "event_publisher", lambda settings: Publisher())
    for name, value in {
        "PHIWATCH_ARCHIVE_DIR": tmp_path / "archive",
        "PHIWATCH_STATE_DIR": tmp_path / "state",
        "PHIWATCH_PHI_EVENTS_HUB": "phi-events",
        "PHIWATCH_PHI_EVENTS_NAMESPACE": NS,
        "PHIWATCH_CHECKPOINT_CONNECTION_STRING": azurite.connection_string,
    }.items():
        monkeypatch.setenv(name, str(value))
    containers = []
    for _ in range(3):
        containers.append(f"cp-{uuid.uuid4().hex[:12]}")
        azurite.blob_service().create_container(containers[-1])

    def run_stage(stage: str, data, hub: str, container: str):
        def make_consumer(ns, hub_, store, group, **kwargs):
            source = FakeHubSource(data, store, stage)
            source.hub = hub_
            return source

        monkeypatch.setattr(eventhubs_cli, "make_consumer", make_consumer)
        args = ["consume", "--namespace", "phiwatch-test", "--hub", hub, "--stage", stage]
        return runner.invoke(app, [*args, "--checkpoint-store", container])

    normalize = run_stage("normalize", raw, HUB, containers[0])
    assert normalize.exit_code == 0, normalize.output
    from phiwatch.phievents.message import Tick, decode_message

    decoded = [decode_message(m.body) for part in phi.values() for m in part]
    ticks = [d for d in decoded if isinstance(d, Tick)]
    # The 60 patient reads, once by actor (mass-record-access) and once by patient
    # (curious-access); no rule needs the 80 capability reads but log-source-silent, and it
    # needs one record per minute of the service (its presence copies), so most are not
    # published (they are archived, and in Sentinel).
    copies = [d for d in decoded if not isinstance(d, Tick)]
    by_actor = [d for d in copies if d.grouping == "actor"]
    by_patient = [d for d in copies if d.grouping == "patient"]
    presence = [d for d in copies if d.grouping == "subscription"]
    assert len(by_actor) == len(by_patient) == 60
    assert {d.event.event_uid for d in by_actor} == {d.event.event_uid for d in by_patient}
    assert len(by_actor) + len(by_patient) + len(presence) == len(copies)

    def minutes(copies):
        return {int(d.event.time_generated.timestamp() // 60) for d in copies}

    assert minutes(by_actor) <= minutes(presence)
    assert len(presence) <= 2 * (len(records) // 5) < len(records)  # a body spans 2 minutes
    assert ticks and len(ticks) % 2 == 0  # and watermark ticks, to both partitions
    assert "140 access events" in normalize.output and "0 alert update(s)" in normalize.output

    wrong = run_stage("detect", phi, HUB, containers[1])
    assert wrong.exit_code == 2 and "reads the phi-events hub" in wrong.output

    detect = run_stage("detect", phi, "phi-events", containers[1])
    assert detect.exit_code == 0, detect.output
    assert detect.output.strip().splitlines()[-1].startswith("done: ")
    alert_files = list((tmp_path / "archive" / "alerts").rglob("phi-events-p*.jsonl.gz"))
    alerts = [
        json.loads(line)
        for f in alert_files
        for line in gzip.decompress(f.read_bytes()).splitlines()
    ]
    assert {a["RuleId"] for a in alerts} == {"mass-record-access"}
    assert max(a["DistinctPatientCount"] for a in alerts) == 60
    assert sorted(p.name for p in (tmp_path / "state").rglob("*.json.gz")) != []

    # Detect again with no checkpoints (a new consumer group's worth of redelivery): the
    # snapshots cover every message, so nothing is counted twice and nothing new is raised.
    again = run_stage("detect", phi, "phi-events", containers[2])
    assert again.exit_code == 0, again.output
    last = again.output.strip().splitlines()[-1]
    assert "received" in last and "0 access events" in last and "0 alert update(s)" in last
