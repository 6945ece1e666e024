"""Publish normalised events to the `phi-events` hub, keyed by routing key.

`normalize` hands over a batch of `KeyedMessage`s; every message of one key must land on one
partition, in order, because `detect` keeps all state for a key on the partition it reads.
Event Hubs does the key → partition hashing itself when a batch carries a `partition_key`, so:

* messages are grouped by key (keys in order of first appearance, messages in order within a
  key) and each key gets its own batches (`create_batch(partition_key=key)`); a batch is
  filled until the SDK refuses the next event (ValueError), sent, and the next one started.
  Batches of one key are sent one after another, so their order on the partition holds.
* the batch size is the SDK's own (`EventDataBatch.add` measures the encoded AMQP message),
  so no batch ever exceeds the hub's limit.
* nothing is dropped silently. A message that does not fit even an empty batch, or has an
  empty key (the SDK would then spread it round-robin over all partitions), raises
  `MessageRejected`; a failed send raises `PublishError`. Both carry what was sent before.
  The caller lets the host retry the whole normalize batch: the duplicates that follow are
  harmless because detections dedupe by EventUid.

One `EventHubsPublisher` per process, reused across calls (the client keeps its AMQP
connection); `publish` holds a lock, so concurrent callers take turns.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from azure.eventhub import EventData, EventHubProducerClient

from phiwatch.eventhubs.producer import producer_client

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.eventhub import EventDataBatch

log = structlog.get_logger("phiwatch.eventhubs.publisher")

CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class KeyedMessage:
    key: str  # routing key → Event Hubs partition_key (all events of one key on one partition)
    body: bytes  # the event's JSON
    properties: Mapping[str, str]  # application properties (e.g. arrival time)


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What one `publish` call sent (or, inside a `PublishError`, sent before failing)."""

    messages: int = 0
    batches: int = 0  # Event Hubs batches sent, i.e. send round trips
    keys: int = 0  # distinct keys whose messages were all sent
    body_bytes: int = 0


class PublishError(Exception):
    """Not every message was sent. `sent` says what was; `unsent` counts the rest."""

    def __init__(self, message: str, sent: PublishReport, unsent: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.unsent = unsent


class MessageRejected(PublishError):
    """A message that can never be sent as it is (retrying will not help): too large for an
    Event Hubs batch, or without a routing key. `index` is its position in the call."""

    def __init__(self, message: str, sent: PublishReport, unsent: int, index: int) -> None:
        super().__init__(message, sent, unsent)
        self.index = index


class EventPublisher(Protocol):
    def publish(self, messages: Sequence[KeyedMessage]) -> PublishReport:
        """Send every message; raises PublishError when anything could not be sent."""
        ...

    def close(self) -> None: ...


class _Progress:
    """Running totals for one publish call, turned into a report or an error."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.messages = self.batches = self.keys = self.body_bytes = 0

    def sent_batch(self, bodies: list[bytes]) -> None:
        self.batches += 1
        self.messages += len(bodies)
        self.body_bytes += sum(map(len, bodies))

    def report(self) -> PublishReport:
        return PublishReport(self.messages, self.batches, self.keys, self.body_bytes)

    def describe(self) -> str:
        return (
            f"{self.messages:,} of {self.total:,} message(s) were sent "
            f"in {self.batches:,} batch(es) before this"
        )


class EventHubsPublisher:
    """`EventPublisher` over the SDK's sync `EventHubProducerClient`."""

    def __init__(self, client: EventHubProducerClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._partitions: list[str] | None = None  # learnt on the first broadcast

    @classmethod
    def connect(
        cls,
        namespace: str,
        hub: str,
        credential: TokenCredential | None = None,
        **client_kwargs: Any,
    ) -> EventHubsPublisher:
        """Build the client with the process's identity (DefaultAzureCredential unless one is
        given; it needs Azure Event Hubs Data Sender on the hub). No network until the first
        publish. Connection strings and SAS keys are deliberately not supported."""

        return cls(producer_client(namespace, hub, credential, **client_kwargs))

    def publish(self, messages: Sequence[KeyedMessage]) -> PublishReport:
        progress = _Progress(len(messages))
        groups = _group_by_key(messages, progress)
        with self._lock:
            for key, members in groups.items():
                self._publish_key(key, members, progress)
                progress.keys += 1
        report = progress.report()
        log.debug(
            "events published",
            messages=report.messages,
            batches=report.batches,
            keys=report.keys,
            body_bytes=report.body_bytes,
        )
        return report

    def _publish_key(
        self, key: str, members: list[tuple[int, KeyedMessage]], progress: _Progress
    ) -> None:
        batch = self._new_batch(key, progress)
        bodies: list[bytes] = []
        for index, message in members:
            try:
                batch.add(_event(message))
            except ValueError:
                if not bodies:  # an empty batch cannot take it: no batch ever will
                    raise self._too_large(index, message, batch, progress) from None
                self._send(batch, bodies, progress)
                batch, bodies = self._new_batch(key, progress), []
                try:
                    # A fresh EventData: add() stamps the one it is given (partition key,
                    # tracing properties), even when it then refuses it.
                    batch.add(_event(message))
                except ValueError:
                    raise self._too_large(index, message, batch, progress) from None
            bodies.append(message.body)
        if bodies:
            self._send(batch, bodies, progress)

    def _new_batch(self, key: str, progress: _Progress) -> EventDataBatch:
        # The first create_batch opens the link (to learn the hub's size limit): it can fail
        # like a send.
        try:
            return self._client.create_batch(partition_key=key)
        except Exception as exc:
            raise self._failed(exc, progress) from exc

    def _send(self, batch: EventDataBatch, bodies: list[bytes], progress: _Progress) -> None:
        try:
            self._client.send_batch(batch)
        except Exception as exc:
            # Whatever the SDK raises (EventHubError, AzureError, OSError, ...) means this
            # batch may or may not have landed; the caller retries the whole call.
            raise self._failed(exc, progress) from exc
        progress.sent_batch(bodies)

    @staticmethod
    def _failed(exc: Exception, progress: _Progress) -> PublishError:
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        log.error(
            "publishing events failed",
            error=type(exc).__name__,
            sent=progress.messages,
            unsent=progress.total - progress.messages,
        )
        return PublishError(
            f"sending to Event Hubs failed ({type(exc).__name__}: {first_line}); "
            + progress.describe(),
            progress.report(),
            progress.total - progress.messages,
        )

    @staticmethod
    def _too_large(
        index: int, message: KeyedMessage, batch: EventDataBatch, progress: _Progress
    ) -> MessageRejected:
        # Events are a few hundred bytes; one this large is a bug upstream, not a size to
        # tune. The error names sizes and the position, never the key (an actor id) or body.
        log.error(
            "event too large for an Event Hubs batch",
            index=index,
            body_bytes=len(message.body),
            max_batch_bytes=batch.max_size_in_bytes,
        )
        return MessageRejected(
            f"message {index} ({len(message.body):,} bytes of body, "
            f"{len(message.properties)} properties) does not fit in an empty Event Hubs batch "
            f"(limit {batch.max_size_in_bytes:,} bytes); " + progress.describe(),
            progress.report(),
            progress.total - progress.messages,
            index,
        )

    def broadcast(self, body: bytes) -> int:
        """One message per partition, addressed by partition id: how `normalize` tells a quiet
        partition that event time has moved on. Raises PublishError like `publish`."""
        progress = _Progress(0)
        with self._lock:
            try:
                if self._partitions is None:
                    self._partitions = list(self._client.get_partition_ids())
                for partition in self._partitions:
                    batch = self._client.create_batch(partition_id=partition)
                    event = EventData(body)
                    event.content_type = CONTENT_TYPE
                    batch.add(event)
                    self._client.send_batch(batch)
            except Exception as exc:
                raise self._failed(exc, progress) from exc
            return len(self._partitions)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def _group_by_key(
    messages: Sequence[KeyedMessage], progress: _Progress
) -> dict[str, list[tuple[int, KeyedMessage]]]:
    """Keys in order of first appearance, each with its messages in order (and their index in
    the call, for error messages). Refuses a message without a key before anything is sent."""
    groups: dict[str, list[tuple[int, KeyedMessage]]] = {}
    for index, message in enumerate(messages):
        if not isinstance(message.key, str) or not message.key:
            # The SDK treats a falsy partition_key as none and spreads the events
            # round-robin: the key's state would be split over partitions, silently.
            raise MessageRejected(
                f"message {index} has no routing key; nothing was sent",
                progress.report(),
                progress.total,
                index,
            )
        groups.setdefault(message.key, []).append((index, message))
    return groups


def _event(message: KeyedMessage) -> EventData:
    event = EventData(message.body)
    event.content_type = CONTENT_TYPE
    if message.properties:
        properties: dict[str | bytes, Any] = dict(message.properties.items())
        event.properties = properties
    return event
