"""The standalone consumer loop (`phiwatch consume`): the same code path as the Function
App (`EventHubBatchProcessor.process`, one call per partition batch), checkpointing a batch
only once `process` has returned, i.e. once the batch is in the archive. If processing
raises, nothing is checkpointed and receiving stops with that error: the next run resumes
from the last checkpoint and gets the batch again (the archive is create-only, so a
redelivered batch adds nothing twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from phiwatch.eventhubs.consumer import ConsumerSource
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.eventhubs.names import one_line
from phiwatch.hosts import collector
from phiwatch.quarantine import BatchPoisoned

if TYPE_CHECKING:
    from phiwatch.batch import BatchResult

log = structlog.get_logger("phiwatch.consume")


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
    collector.tune()

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
