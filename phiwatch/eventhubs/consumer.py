"""Receiving from an Event Hub without the Functions host (`phiwatch consume`).

`ConsumerSource` hands batches `(partition_id, [EventHubMessage])` to a callback and takes
`checkpoint(partition_id, last_message)`; `EventHubsConsumer` is the adapter over
`EventHubConsumerClient.receive_batch` with a `BlobCheckpointStore`. The loop that processes
and checkpoints is the host's (phiwatch/hosts/consumer.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.exceptions import AuthenticationError
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.identity import DefaultAzureCredential

from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.eventhubs.names import check_hub_name, fully_qualified_namespace, one_line

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


log = structlog.get_logger("phiwatch.eventhubs")

DEFAULT_CONSUMER_GROUP = "phiwatch"

# receive_batch: at most this many events per callback, and at most this long to fill one.
MAX_BATCH_SIZE = 100

MAX_WAIT_SECONDS = 5.0

# Without a checkpoint, start at the beginning of the retained stream ("-1"), as the Functions
# Event Hubs extension does by default: an audit pipeline must not skip what is already there.
# "@latest" reads only what arrives after start-up.
START_POSITIONS = {"earliest": "-1", "latest": "@latest"}

BatchCallback = Callable[[str, list[EventHubMessage]], None]


class ConsumerSource(Protocol):
    """Delivers one partition's batch at a time, in order, to a callback."""

    hub: str

    def receive(self, on_batch: BatchCallback) -> None:
        """Deliver batches until `stop()`. An exception from `on_batch` stops receiving and
        propagates from `receive`; that batch is not checkpointed."""
        ...

    def checkpoint(self, partition_id: str, last_event: EventHubMessage) -> None:
        """Record that the partition is done up to and including `last_event` (the last
        message of the batch being delivered)."""
        ...

    def stop(self) -> None: ...


def message_from_event(event: Any, partition_id: str) -> EventHubMessage:
    """An `EventHubMessage` from a received `EventData`, body bytes exactly as sent."""
    if event.body_type == AmqpMessageBodyType.DATA:
        body = event.body
        data = body if isinstance(body, bytes) else b"".join(body)
    else:  # not what diagnostic settings send; the pipeline dead-letters what is not JSON
        data = event.body_as_str().encode("utf-8")
    return EventHubMessage(
        body=data,
        sequence_number=event.sequence_number,
        enqueued_time=event.enqueued_time,
        partition_id=partition_id,
    )


class EventHubsConsumer:
    """`ConsumerSource` over `EventHubConsumerClient.receive_batch` with a checkpoint store.

    The SDK balances partitions between instances through the checkpoint store's ownership
    blobs and, for a partition without a checkpoint, starts at `starting_position`.
    """

    def __init__(
        self,
        client: EventHubConsumerClient,
        hub: str,
        *,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_wait_time: float = MAX_WAIT_SECONDS,
        starting_position: str = START_POSITIONS["earliest"],
    ) -> None:
        self._client = client
        self.hub = hub
        self._max_batch_size = max_batch_size
        self._max_wait_time = max_wait_time
        self._starting_position = starting_position
        self._in_flight: dict[str, tuple[Any, Any]] = {}  # partition → (context, last event)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def connect(
        cls,
        namespace: str,
        hub: str,
        store: BlobCheckpointStore,
        consumer_group: str = DEFAULT_CONSUMER_GROUP,
        credential: TokenCredential | None = None,
        *,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_wait_time: float = MAX_WAIT_SECONDS,
        starting_position: str = START_POSITIONS["earliest"],
        **client_kwargs: Any,
    ) -> EventHubsConsumer:
        if credential is None:
            credential = DefaultAzureCredential()
        client = EventHubConsumerClient(
            fully_qualified_namespace=fully_qualified_namespace(namespace),
            eventhub_name=check_hub_name(hub),
            consumer_group=consumer_group,
            credential=credential,
            checkpoint_store=store,
            **client_kwargs,
        )
        return cls(
            client,
            hub,
            max_batch_size=max_batch_size,
            max_wait_time=max_wait_time,
            starting_position=starting_position,
        )

    def partition_ids(self) -> list[str]:
        """One management call: fails fast on a wrong namespace, hub or missing rights."""
        return list(self._client.get_partition_ids())

    def receive(self, on_batch: BatchCallback) -> None:
        self._error = None

        def on_event_batch(context: Any, events: list[Any]) -> None:
            if not events:
                return
            partition_id = str(context.partition_id)
            messages = [message_from_event(e, partition_id) for e in events]
            self._in_flight[partition_id] = (context, events[-1])
            try:
                on_batch(partition_id, messages)
            except Exception as exc:
                # The SDK would close this partition's receiver and re-open it from the last
                # checkpoint after its load-balancing interval; we stop everything instead
                # so the failure is seen (exit status), and the next run resumes there.
                self._error = exc
                self.stop()
                raise
            finally:
                self._in_flight.pop(partition_id, None)

        def on_error(context: Any, error: Exception) -> None:
            if error is self._error:
                return  # our own callback's failure, already logged and recorded
            partition = getattr(context, "partition_id", None)
            log.warning(
                "event hubs error",
                hub=self.hub,
                partition=partition,
                error=f"{type(error).__name__}: {one_line(error)}",
            )
            if _is_fatal(error):
                self._error = error
                self.stop()

        self._client.receive_batch(
            on_event_batch=on_event_batch,
            max_batch_size=self._max_batch_size,
            max_wait_time=self._max_wait_time,
            starting_position=self._starting_position,
            on_error=on_error,
        )
        if self._error is not None:
            raise self._error

    def checkpoint(self, partition_id: str, last_event: EventHubMessage) -> None:
        try:
            context, event = self._in_flight[partition_id]
        except KeyError:
            raise RuntimeError(
                f"checkpoint for partition {partition_id} outside the batch being delivered"
            ) from None
        if event.sequence_number != last_event.sequence_number:
            raise RuntimeError(
                f"checkpoint for partition {partition_id} at seq {last_event.sequence_number}, "
                f"but the batch being delivered ends at seq {event.sequence_number}"
            )
        context.update_checkpoint(event)

    def stop(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()


def _is_fatal(error: BaseException) -> bool:
    """Errors retrying will not cure: stop and say so rather than log them forever."""
    return isinstance(
        error, ClientAuthenticationError | ResourceNotFoundError | AuthenticationError
    )
