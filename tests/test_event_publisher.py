"""EventHubsPublisher over an in-memory stand-in for `EventHubProducerClient`.

The stand-in hands out real `EventDataBatch` objects (the SDK builds them offline from
`max_size_in_bytes` and `partition_key`), so whether an event fits is decided by the SDK's own
AMQP size accounting, key annotation included, not by a model of it.
"""

from __future__ import annotations

import inspect
import json
import random
import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError

from phiwatch.eventhubs.names import EventHubsConfigError
from phiwatch.eventhubs.publisher import (
    EventHubsPublisher,
    KeyedMessage,
    MessageRejected,
    PublishError,
    PublishReport,
)

LIMIT = 1024


class RecordingBatch(EventDataBatch):
    """A real EventDataBatch that also keeps the events it accepted, for the assertions."""

    def __init__(
        self, max_size_in_bytes: int, partition_key: str | None, partition_id: str | None = None
    ) -> None:
        super().__init__(
            max_size_in_bytes=max_size_in_bytes,
            partition_key=partition_key,
            partition_id=partition_id,
        )
        self.key = partition_key
        self.partition = partition_id
        self.events: list[EventData] = []

    def add(self, event_data: Any) -> None:
        super().add(event_data)
        self.events.append(event_data)

    @property
    def bodies(self) -> list[bytes]:
        return [b"".join(event.body) for event in self.events]


class FakeProducerClient:
    """What EventHubsPublisher uses of EventHubProducerClient: create_batch, send_batch, close.
    `fail_send_at=n` makes the n-th send (0-based) raise; `fail_create` makes create_batch
    raise, as the real one does when the first link cannot be opened."""

    def __init__(
        self,
        max_size_in_bytes: int = LIMIT,
        *,
        fail_send_at: int | None = None,
        fail_create: Exception | None = None,
        send_seconds: float = 0.0,
    ) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.fail_send_at = fail_send_at
        self.fail_create = fail_create
        self.send_seconds = send_seconds
        self.sent: list[RecordingBatch] = []
        self.send_attempts = 0
        self.in_flight = self.max_in_flight = 0
        self.closed = False

    def create_batch(
        self,
        *,
        partition_id: str | None = None,
        partition_key: str | None = None,
        max_size_in_bytes: int | None = None,
    ) -> RecordingBatch:
        assert max_size_in_bytes is None  # the hub decides
        assert (partition_id is None) != (partition_key is None)  # one addressing, never both
        if self.fail_create is not None:
            raise self.fail_create
        return RecordingBatch(self.max_size_in_bytes, partition_key, partition_id)

    def get_partition_ids(self) -> list[str]:
        return ["0", "1", "2", "3"]

    def send_batch(self, event_data_batch: RecordingBatch, **kwargs: Any) -> None:
        assert len(event_data_batch) > 0
        assert event_data_batch.size_in_bytes <= event_data_batch.max_size_in_bytes
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.send_seconds)
            attempt, self.send_attempts = self.send_attempts, self.send_attempts + 1
            if attempt == self.fail_send_at:
                raise ConnectionLostError("connection to the hub was lost (test outage)")
            self.sent.append(event_data_batch)
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        self.closed = True


def message(key: str, n: int, size: int = 60, **properties: str) -> KeyedMessage:
    body = json.dumps({"EventUid": f"{key}-{n}", "pad": "x" * size}).encode()
    return KeyedMessage(key, body, properties or {"arrival": f"2024-01-01T00:00:{n % 60:02d}Z"})


def sent_by_key(client: FakeProducerClient) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for batch in client.sent:
        assert batch.key is not None
        out.setdefault(batch.key, []).extend(batch.bodies)
    return out


# --------------------------------------------------------------------------- happy paths


def test_many_keys_each_in_order_on_its_own_batches():
    rng = random.Random(8)
    keys = [f"actor-{i:02d}" for i in range(40)]
    counts = dict.fromkeys(keys, 0)
    messages = []
    for _ in range(600):  # keys interleaved as normalize produces them
        key = rng.choice(keys)
        messages.append(message(key, counts[key], size=rng.randint(10, 300)))
        counts[key] += 1
    client = FakeProducerClient()

    report = EventHubsPublisher(client).publish(messages)

    expected: dict[str, list[bytes]] = {}
    for m in messages:
        expected.setdefault(m.key, []).append(m.body)
    assert sent_by_key(client) == expected  # every message once, in order within its key
    first_seen = list(dict.fromkeys(m.key for m in messages))
    assert list(dict.fromkeys(b.key for b in client.sent)) == first_seen
    # A key's batches are consecutive: its events never interleave with another key's.
    runs = [
        k for i, k in enumerate(b.key for b in client.sent) if i == 0 or client.sent[i - 1].key != k
    ]
    assert runs == first_seen
    assert report == PublishReport(
        messages=600,
        batches=len(client.sent),
        keys=40,
        body_bytes=sum(len(m.body) for m in messages),
    )


def test_a_full_batch_is_sent_and_the_next_one_started():
    messages = [message("actor-1", n, size=150) for n in range(40)]
    client = FakeProducerClient()

    report = EventHubsPublisher(client).publish(messages)

    assert report.batches == len(client.sent) > 5
    assert [b for batch in client.sent for b in batch.bodies] == [m.body for m in messages]
    for batch in client.sent:
        assert batch.size_in_bytes <= LIMIT and batch.max_size_in_bytes == LIMIT
    # Filled until the SDK said no: each batch plus the next batch's first event is too big.
    for batch, following in zip(client.sent, client.sent[1:], strict=False):
        probe = EventDataBatch(max_size_in_bytes=LIMIT, partition_key="actor-1")
        for event in [*batch.events, following.events[0]]:
            try:
                probe.add(event)
            except ValueError:
                break
        else:
            pytest.fail("a batch was sent while the next event still fitted")


def test_properties_content_type_and_key_are_carried():
    messages = [
        message("actor-1", 0, arrival="2024-05-01T10:00:00Z", source="keyvault"),
        message("resource-9", 1, arrival="2024-05-01T10:00:01Z"),
    ]
    client = FakeProducerClient()

    EventHubsPublisher(client).publish(messages)

    events = [(batch.key, event) for batch in client.sent for event in batch.events]
    assert [key for key, _ in events] == ["actor-1", "resource-9"]
    for (key, event), sent in zip(events, messages, strict=True):
        assert b"".join(event.body) == sent.body
        assert event.content_type == "application/json"
        assert event.properties == dict(sent.properties)
        assert event.partition_key == key  # the SDK stamps the batch's key on each event


def test_the_publisher_is_reusable_and_close_closes_the_client():
    client = FakeProducerClient()
    publisher = EventHubsPublisher(client)
    assert publisher.publish([]) == PublishReport()
    assert client.sent == []
    first = publisher.publish([message("a", 0), message("b", 0)])
    second = publisher.publish([message("a", 1)])
    assert (first.messages, first.keys, second.messages, second.keys) == (2, 2, 1, 1)
    assert [b.key for b in client.sent] == ["a", "b", "a"]
    publisher.close()
    assert client.closed


def test_concurrent_callers_take_turns():
    client = FakeProducerClient(send_seconds=0.002)
    publisher = EventHubsPublisher(client)
    per_thread = [[message(f"t{t}-k{i % 3}", i) for i in range(20)] for t in range(4)]
    reports: list[PublishReport] = []
    threads = [
        threading.Thread(target=lambda m=m: reports.append(publisher.publish(m)))
        for m in per_thread
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert client.max_in_flight == 1
    assert sum(r.messages for r in reports) == 80
    # One caller's batches are not interleaved with another's.
    owners = [batch.key.split("-")[0] for batch in client.sent if batch.key]
    assert owners == sorted(owners, key=owners.index)
    assert len(set(owners)) == 4


# --------------------------------------------------------------------------- failures


def test_a_message_too_large_for_an_empty_batch_is_rejected_with_its_size():
    huge = KeyedMessage("actor-2", b"x" * 5000, {})
    messages = [message("actor-1", 0), huge, message("actor-3", 0)]
    client = FakeProducerClient()

    with pytest.raises(MessageRejected) as failure:
        EventHubsPublisher(client).publish(messages)

    error = failure.value
    assert error.index == 1
    assert "message 1 (5,000 bytes of body" in str(error)
    assert "limit 1,024 bytes" in str(error)
    assert "1 of 3 message(s) were sent in 1 batch(es)" in str(error)
    assert "actor-2" not in str(error)  # a routing key is an actor id: never in errors
    assert error.sent == PublishReport(1, 1, 1, len(messages[0].body))
    assert error.unsent == 2
    assert [b.key for b in client.sent] == ["actor-1"]  # nothing after the bad message


def test_a_too_large_message_after_a_full_batch_is_still_rejected():
    messages = [message("actor-1", 0), KeyedMessage("actor-1", b"y" * 2000, {})]
    client = FakeProducerClient()

    with pytest.raises(MessageRejected) as failure:
        EventHubsPublisher(client).publish(messages)

    assert failure.value.index == 1 and "2,000 bytes of body" in str(failure.value)
    assert failure.value.sent.messages == 1 and failure.value.unsent == 1


@pytest.mark.parametrize("bad_key", ["", None])
def test_a_message_without_a_key_is_refused_before_anything_is_sent(bad_key):
    messages = [message("actor-1", 0), KeyedMessage(bad_key, b"{}", {})]  # type: ignore[arg-type]
    client = FakeProducerClient()

    with pytest.raises(MessageRejected, match="message 1 has no routing key") as failure:
        EventHubsPublisher(client).publish(messages)

    assert client.sent == [] and client.send_attempts == 0
    assert failure.value.sent == PublishReport() and failure.value.unsent == 2


def test_a_send_failure_midway_reports_what_was_sent():
    messages = [message(f"actor-{k}", n, size=200) for k in range(3) for n in range(6)]
    client = FakeProducerClient(fail_send_at=2)

    with pytest.raises(PublishError) as failure:
        EventHubsPublisher(client).publish(messages)

    error = failure.value
    assert not isinstance(error, MessageRejected)  # transient: the host should retry
    assert isinstance(error.__cause__, ConnectionLostError)
    sent = [b for batch in client.sent for b in batch.bodies]
    assert error.sent.messages == len(sent) and error.sent.batches == 2
    assert error.unsent == len(messages) - len(sent)
    assert sent == [m.body for m in messages[: len(sent)]]
    assert str(error).startswith("sending to Event Hubs failed (ConnectionLostError: ")
    assert f"{len(sent)} of 18 message(s) were sent in 2 batch(es)" in str(error)


def test_a_connection_failure_before_the_first_batch_is_a_publish_error():
    client = FakeProducerClient(
        fail_create=ClientAuthenticationError(
            "DefaultAzureCredential failed to retrieve a token\nAttempted credentials: ..."
        )
    )
    with pytest.raises(PublishError) as failure:
        EventHubsPublisher(client).publish([message("actor-1", 0)])
    assert failure.value.sent == PublishReport() and failure.value.unsent == 1
    assert "ClientAuthenticationError: DefaultAzureCredential failed" in str(failure.value)
    assert "Attempted credentials" not in str(failure.value)


# ----------------------------------------------------------------- the real client


def test_the_stand_in_matches_the_sdk_signatures():
    real = inspect.signature(EventHubProducerClient.create_batch).parameters
    ours = inspect.signature(FakeProducerClient.create_batch).parameters
    for name in ("partition_id", "partition_key", "max_size_in_bytes"):
        assert real[name].kind is ours[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_connect_builds_an_identity_client_without_network():
    class NoToken:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no token may be requested")

    publisher = EventHubsPublisher.connect("phiwatch-test", "phi-events", NoToken(), retry_total=0)
    client = publisher._client
    assert isinstance(client, EventHubProducerClient)
    assert client._address.hostname == "phiwatch-test.servicebus.windows.net"
    assert client.eventhub_name == "phi-events"
    publisher.close()


@pytest.mark.parametrize(("namespace", "hub"), [("bad ns", "phi-events"), ("phiwatch-test", "a/b")])
def test_connect_refuses_bad_names(namespace: str, hub: str):
    with pytest.raises(EventHubsConfigError):
        EventHubsPublisher.connect(namespace, hub, object())  # type: ignore[arg-type]


def test_broadcast_sends_one_tick_to_every_partition_by_id():
    client = FakeProducerClient()
    publisher = EventHubsPublisher(client)  # type: ignore[arg-type]
    assert publisher.broadcast(b'{"Tick":"2026-11-02T08:00:00+00:00"}') == 4
    assert [(b.partition, b.key, b.bodies) for b in client.sent] == [
        (p, None, [b'{"Tick":"2026-11-02T08:00:00+00:00"}']) for p in ("0", "1", "2", "3")
    ]
    assert all(b.events[0].content_type == "application/json" for b in client.sent)


def test_broadcast_failure_is_a_publish_error():
    client = FakeProducerClient(fail_send_at=2)
    with pytest.raises(PublishError, match="sending to Event Hubs failed"):
        EventHubsPublisher(client).broadcast(b"{}")  # type: ignore[arg-type]
