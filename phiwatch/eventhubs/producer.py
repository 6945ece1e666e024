"""Sending bodies to an Event Hub (`phiwatch send`).

`Producer` is the narrow interface the rest is tested against in memory (no Event Hubs
emulator runs without Docker); `EventHubsProducer` is the adapter over
`EventHubProducerClient`: `create_batch()`, then `add(EventData)` until the SDK says the batch
is full (ValueError), send, start a new batch. A body too big for an empty batch is reported
and skipped, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from azure.eventhub import EventData, EventHubProducerClient
from azure.identity import DefaultAzureCredential

from phiwatch.envelope import Body, discover, read_file_bodies
from phiwatch.eventhubs.names import check_hub_name, fully_qualified_namespace

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


log = structlog.get_logger("phiwatch.eventhubs")

# send_files hands the producer up to this many batches' worth of bodies per call: memory
# stays bounded and the producer packs them into as few Event Hubs batches as fit.
SEND_CHUNK_BATCHES = 4


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
