"""Event Hubs in and out without the Functions host: `phiwatch send` and `phiwatch consume`.

Two narrow interfaces keep the SDK at the edge, so everything else is testable in memory
(no Event Hubs emulator runs without Docker):

* `Producer`: sends bodies as Event Hubs batches. `EventHubsProducer` is the adapter over
  `EventHubProducerClient`: `create_batch()`, then `add(EventData)` until the SDK says the
  batch is full (ValueError), send, start a new batch. A body too big for an empty batch is
  reported and skipped, never dropped silently.
* `ConsumerSource`: hands batches `(partition_id, [EventHubMessage])` to a callback and takes
  `checkpoint(partition_id, last_message)`. `EventHubsConsumer` is the adapter over
  `EventHubConsumerClient.receive_batch` with a `BlobCheckpointStore`.

`consume` runs the same code path as the Function App (`EventHubBatchProcessor.process`, one
call per partition batch) and checkpoints a batch only once `process` has returned, i.e. once
the batch is in the archive. If processing raises, nothing is checkpointed and receiving
stops with that error: the next run resumes from the last checkpoint and gets the batch again
(the archive is create-only, so a redelivered batch adds nothing twice).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.exceptions import AuthenticationError
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.identity import DefaultAzureCredential

from phiwatch.envelope import Body, discover, read_file_bodies
from phiwatch.eventhub_host import EventHubMessage
from phiwatch.quarantine import BatchPoisoned

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from phiwatch.pipeline import BatchResult

log = structlog.get_logger("phiwatch.eventhubs")

DEFAULT_CONSUMER_GROUP = "phiwatch"
SERVICEBUS_SUFFIX = ".servicebus.windows.net"
# receive_batch: at most this many events per callback, and at most this long to fill one.
MAX_BATCH_SIZE = 100
MAX_WAIT_SECONDS = 5.0
# Without a checkpoint, start at the beginning of the retained stream ("-1"), as the Functions
# Event Hubs extension does by default: an audit pipeline must not skip what is already there.
# "@latest" reads only what arrives after start-up.
START_POSITIONS = {"earliest": "-1", "latest": "@latest"}
# send_files hands the producer up to this many batches' worth of bodies per call: memory
# stays bounded and the producer packs them into as few Event Hubs batches as fit.
SEND_CHUNK_BATCHES = 4

_NAMESPACE_NAME = re.compile(r"^[a-z][a-z0-9-]{4,48}[a-z0-9]$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CONTAINER_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class EventHubsConfigError(ValueError):
    """A namespace, hub or checkpoint-store setting that cannot work; meant for the user."""


# ----------------------------------------------------------------------------- settings


def fully_qualified_namespace(namespace: str) -> str:
    """`myns` → `myns.servicebus.windows.net`; a host name is kept (lower-cased).

    Accepts what people paste: `sb://myns.servicebus.windows.net/` or `myns.servicebus.windows.net`.
    """
    text = namespace.strip().lower()
    for prefix in ("sb://", "amqps://", "https://"):
        text = text.removeprefix(prefix)
    text = text.rstrip("/")
    if "." not in text:
        if not _NAMESPACE_NAME.match(text):
            raise EventHubsConfigError(
                f"--namespace {namespace!r}: not an Event Hubs namespace name (6-50 letters, "
                "digits and hyphens, starting with a letter) or host name "
                "(NAME.servicebus.windows.net)"
            )
        return text + SERVICEBUS_SUFFIX
    labels = text.split(".")
    if len(text) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise EventHubsConfigError(
            f"--namespace {namespace!r}: not a valid host name (expected NAME or "
            "NAME.servicebus.windows.net)"
        )
    return text


def check_hub_name(hub: str) -> str:
    if not hub or len(hub) > 256 or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", hub):
        raise EventHubsConfigError(
            f"--hub {hub!r}: not an Event Hub name (letters, digits, '.', '_', '-')"
        )
    return hub


def producer_client(
    namespace: str, hub: str, credential: TokenCredential | None = None, **client_kwargs: Any
) -> EventHubProducerClient:
    """A sync producer for `hub`, signed in with the given credential or
    DefaultAzureCredential; names are checked first, nothing touches the network yet."""
    return EventHubProducerClient(
        fully_qualified_namespace=fully_qualified_namespace(namespace),
        eventhub_name=check_hub_name(hub),
        credential=credential or DefaultAzureCredential(),
        **client_kwargs,
    )


def split_container_url(url: str) -> tuple[str, str]:
    """`https://acct.blob.core.windows.net/checkpoints` → (account URL, container name)."""
    parts = urlsplit(url.strip())
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not parts.netloc or len(segments) != 1:
        raise EventHubsConfigError(
            f"--checkpoint-store {url!r}: expected a Blob container URL, "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER (or, with "
            "--checkpoint-connection-string, the container name)"
        )
    if parts.query:
        raise EventHubsConfigError(
            "--checkpoint-store: a SAS token in the URL is not accepted (it would show in "
            "process lists); grant the identity 'Storage Blob Data Contributor' on the container"
        )
    return f"https://{parts.netloc}", _check_container(segments[0])


def _check_container(name: str) -> str:
    if not _CONTAINER_NAME.match(name):
        raise EventHubsConfigError(
            f"checkpoint container {name!r}: not a Blob container name (3-63 lower-case "
            "letters, digits and single hyphens)"
        )
    return name


def checkpoint_store(
    location: str,
    connection_string: str | None = None,
    credential: TokenCredential | None = None,
    **client_kwargs: Any,
) -> BlobCheckpointStore:
    """The Blob checkpoint store: a container URL reached with DefaultAzureCredential, or
    (Azurite, local tests) a connection string plus the container name. The container must
    exist; `check_checkpoint_store` says so clearly when it does not."""
    if connection_string:
        if "usedevelopmentstorage=true" in connection_string.replace(" ", "").lower():
            raise EventHubsConfigError(
                "--checkpoint-connection-string: the checkpoint store does not accept "
                "UseDevelopmentStorage=true; pass Azurite's full connection string "
                "(DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=...;"
                "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;)"
            )
        container = _check_container(location.rstrip("/").rsplit("/", 1)[-1])
        try:
            return BlobCheckpointStore.from_connection_string(
                connection_string, container, **client_kwargs
            )
        except ValueError as exc:
            # The SDK's message never echoes the key; keep it to one line anyway.
            raise EventHubsConfigError(
                f"--checkpoint-connection-string: {str(exc).splitlines()[0]}"
            ) from None
    account_url, container = split_container_url(location)
    if credential is None:
        credential = DefaultAzureCredential()
    return BlobCheckpointStore(account_url, container, credential=credential, **client_kwargs)


def check_checkpoint_store(
    store: BlobCheckpointStore, namespace: str, hub: str, consumer_group: str
) -> list[dict[str, Any]]:
    """Read the checkpoints once before receiving: a missing container or missing rights
    fail here with a clear message instead of as warnings every 30 s from the SDK's
    load-balancing loop. Returns the checkpoints found."""
    try:
        return list(store.list_checkpoints(namespace, hub, consumer_group))
    except ResourceNotFoundError:
        raise EventHubsConfigError(
            "the checkpoint container does not exist; create it first (infra creates it; "
            "for Azurite, create the container)"
        ) from None
    except ClientAuthenticationError as exc:
        raise EventHubsConfigError(
            f"cannot read the checkpoint container: {one_line(exc)} (the identity needs "
            "'Storage Blob Data Contributor' on it)"
        ) from None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """First meaningful line of an SDK error (DefaultAzureCredential's are many lines)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- producer


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one `Producer.send_batch` call did."""

    batches: int  # Event Hubs batches sent
    bodies: int  # bodies sent
    bytes: int  # body bytes sent
    oversized: tuple[int, ...] = ()  # indexes (into the call's bodies) skipped: too big alone


class Producer(Protocol):
    """Sends bodies to one Event Hub."""

    @property
    def max_batch_bytes(self) -> int:
        """The hub's batch size limit (1 MiB on Standard, 256 KiB on Basic)."""
        ...

    def send_batch(self, bodies: list[bytes]) -> BatchOutcome:
        """Send `bodies` in order, in as few batches under the limit as they fit in. A body
        that does not fit even in an empty batch is skipped and listed in `oversized`."""
        ...


class EventHubsProducer:
    """`Producer` over `EventHubProducerClient` (sync)."""

    def __init__(self, client: EventHubProducerClient) -> None:
        self._client = client
        self._max: int | None = None

    @classmethod
    def connect(
        cls,
        namespace: str,
        hub: str,
        credential: TokenCredential | None = None,
        **client_kwargs: Any,
    ) -> EventHubsProducer:
        """Build the client (no network yet; the first batch connects)."""
        return cls(producer_client(namespace, hub, credential, **client_kwargs))

    @property
    def max_batch_bytes(self) -> int:
        if self._max is None:
            self._max = int(self._client.create_batch().max_size_in_bytes)
        return self._max

    def send_batch(self, bodies: list[bytes]) -> BatchOutcome:
        batches = sent = sent_bytes = 0
        oversized: list[int] = []
        batch = self._client.create_batch()
        self._max = int(batch.max_size_in_bytes)
        in_batch: list[int] = []
        for index, body in enumerate(bodies):
            try:
                batch.add(EventData(body))
            except ValueError:
                if not in_batch:  # an empty batch cannot take it: no batch ever will
                    oversized.append(index)
                    self._report_oversized(body)
                    continue
                self._client.send_batch(batch)
                batches += 1
                sent += len(in_batch)
                sent_bytes += sum(len(bodies[i]) for i in in_batch)
                batch, in_batch = self._client.create_batch(), []
                try:
                    batch.add(EventData(body))
                except ValueError:
                    oversized.append(index)
                    self._report_oversized(body)
                    continue
            in_batch.append(index)
        if in_batch:
            self._client.send_batch(batch)
            batches += 1
            sent += len(in_batch)
            sent_bytes += sum(len(bodies[i]) for i in in_batch)
        return BatchOutcome(batches, sent, sent_bytes, tuple(oversized))

    def _report_oversized(self, body: bytes) -> None:
        log.warning(
            "body too large for one Event Hubs batch; skipped",
            body_bytes=len(body),
            max_batch_bytes=self._max,
        )

    def close(self) -> None:
        self._client.close()


@dataclass
class SendReport:
    files: int = 0
    bodies: int = 0  # bodies sent
    batches: int = 0  # Event Hubs batches sent
    bytes: int = 0  # body bytes sent
    skipped: list[str] = field(default_factory=list)  # one message per body not sent

    def summary(self) -> str:
        text = (
            f"sent {self.bodies:,} bodies ({self.bytes:,} bytes) from {self.files:,} file(s) "
            f"in {self.batches:,} batch(es)"
        )
        if self.skipped:
            text += f"; {len(self.skipped):,} body(ies) NOT sent (too large)"
        return text


def send_files(
    paths: Iterable[Path],
    producer: Producer,
    *,
    on_file: Callable[[Path, SendReport], None] | None = None,
    report: SendReport | None = None,
) -> SendReport:
    """Publish every body of every local file (`read_file_bodies`: .json, .jsonl, .ndjson,
    optionally .gz; directories are searched) in file order. Raises `InputError` for a path
    that does not exist (checked for all paths before anything is sent) or a file that
    cannot be read. Pass `report` to see what was sent before an exception."""
    files = discover(list(paths))
    report = report if report is not None else SendReport()
    report.files = len(files)
    limit = producer.max_batch_bytes
    pending: list[Body] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        if not pending:
            return
        outcome = producer.send_batch([b.data for b in pending])
        report.batches += outcome.batches
        report.bodies += outcome.bodies
        report.bytes += outcome.bytes
        for index in outcome.oversized:
            body = pending[index]
            report.skipped.append(
                f"{body.position}: body of {len(body.data):,} bytes does not fit in one Event "
                f"Hubs batch (limit {limit:,} bytes); not sent"
            )
        pending, pending_bytes = [], 0

    for path in files:
        for body in read_file_bodies(path):
            pending.append(body)
            pending_bytes += len(body.data)
            if pending_bytes >= SEND_CHUNK_BATCHES * limit:
                flush()
        if on_file is not None:
            on_file(path, report)
    flush()
    return report


# ----------------------------------------------------------------------------- consumer

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


class BatchProcessor(Protocol):
    def process(self, hub: str, messages: Sequence[EventHubMessage]) -> BatchResult: ...


@dataclass
class ConsumeReport:
    batches: int = 0
    messages: int = 0
    records: int = 0
    events: int = 0
    dead_letters: int = 0
    alerts: int = 0

    def summary(self) -> str:
        return (
            f"{self.batches:,} batch(es), {self.messages:,} event(s) received, "
            f"{self.records:,} records, {self.events:,} access events, "
            f"{self.dead_letters:,} dead-letters, {self.alerts:,} alert update(s); "
            "all checkpointed after the archive write"
        )


class BatchNotProcessed(Exception):
    """A batch failed in the pipeline (or could not be checkpointed); receiving stopped.

    The batch was not checkpointed, so the next run receives it again."""

    def __init__(self, partition_id: str, messages: Sequence[EventHubMessage], stage: str):
        super().__init__(partition_id, stage)
        self.partition_id = partition_id
        self.stage = stage  # "processing" (nothing archived for sure) or "checkpoint"
        seqs = [m.sequence_number for m in messages if m.sequence_number is not None]
        self.first = min(seqs) if seqs else None
        self.last = max(seqs) if seqs else None

    def __str__(self) -> str:
        cause = self.__cause__
        where = describe_seqs(self.first, self.last)
        if self.stage == "checkpoint":
            what = "was archived but its checkpoint could not be written"
        else:
            what = "failed in the pipeline"
        detail = f" ({type(cause).__name__}: {one_line(cause)})" if cause else ""
        return (
            f"partition {self.partition_id} batch {where} {what}{detail}; not checkpointed, "
            "so the next run receives it again"
        )


def describe_seqs(first: int | None, last: int | None) -> str:
    if first is None or last is None:
        return "(no sequence numbers)"
    return f"seq {first}" if first == last else f"seq {first}-{last}"


# A processor counts a poison batch's attempts in memory and quarantines it at its own limit
# (PHIWATCH_POISON_BATCH_ATTEMPTS), so its retries happen here, in this process: stopping
# would restart the count with the next run, and the batch would stop every run. This only
# bounds a processor that has no limit of its own.
MAX_POISON_RETRIES = 100


def _process(
    processor: BatchProcessor, hub: str, messages: Sequence[EventHubMessage]
) -> BatchResult:
    for _ in range(MAX_POISON_RETRIES):
        try:
            return processor.process(hub, messages)
        except BatchPoisoned:
            continue
    return processor.process(hub, messages)


def consume(
    source: ConsumerSource,
    processor: BatchProcessor,
    stop_after: int | None = None,
    *,
    on_batch: Callable[[str, list[EventHubMessage], BatchResult], None] | None = None,
    report: ConsumeReport | None = None,
) -> ConsumeReport:
    """Run `processor` over every batch `source` delivers; checkpoint each batch only after
    `processor.process` returned (the archive write is part of it). Stops after
    `stop_after` non-empty batches, when the source ends, or on the first failure, which
    propagates as `BatchNotProcessed` (nothing of that batch is checkpointed). Pass
    `report` to keep the counts when something (Ctrl-C) interrupts."""
    report = report if report is not None else ConsumeReport()

    def handle(partition_id: str, messages: list[EventHubMessage]) -> None:
        if not messages:  # max_wait_time passed with nothing new: nothing to checkpoint
            return
        try:
            result = _process(processor, source.hub, messages)
        except Exception as exc:
            log.error(
                "batch failed; not checkpointed, stopping so it is received again",
                hub=source.hub,
                partition=partition_id,
                messages=len(messages),
                error=type(exc).__name__,
            )
            raise BatchNotProcessed(partition_id, messages, "processing") from exc
        try:
            source.checkpoint(partition_id, messages[-1])
        except Exception as exc:
            log.error(
                "batch archived but checkpoint failed; stopping, it will be received again",
                hub=source.hub,
                partition=partition_id,
                error=type(exc).__name__,
            )
            raise BatchNotProcessed(partition_id, messages, "checkpoint") from exc
        counts = result.counts
        report.batches += 1
        report.messages += len(messages)
        report.records += counts.records
        report.events += counts.events
        report.dead_letters += sum(counts.dead_letters.values())
        report.alerts += len(result.alerts)
        if on_batch is not None:
            on_batch(partition_id, messages, result)
        if stop_after is not None and report.batches >= stop_after:
            source.stop()

    source.receive(handle)
    return report


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
