"""Poison batches: a batch that fails after its raw put, the same way, attempt after attempt.

Records the pipeline cannot handle are dead-lettered one by one; what escapes that (a bug a
record triggers in detection, in serialisation, anywhere between the raw put and the seal)
would fail every retry, and the Functions retry policy is unbounded on purpose (an archive
outage must stall, never skip). So such a failure is raised as `BatchPoisoned`, the host
counts attempts per batch name, and after `PHIWATCH_POISON_BATCH_ATTEMPTS` the batch is set
aside whole: its raw records are archived already, each becomes a `batch-quarantined`
dead-letter sealed in the stream's chain like any batch (so `verify` passes and the
partition's positions stay contiguous), a `batch-quarantined` alert is raised, and the host's
call returns so the partition moves on. Failures of the archive or of the phi-events hub are
never `BatchPoisoned`: those stall and retry as before.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from phiwatch.detect.system_alert import system_alert
from phiwatch.model import Alert

RULE_ID = "batch-quarantined"
# Batch names whose attempts are remembered: a batch that failed and then moved to another
# instance is never retried here, so the oldest are forgotten.
MAX_TRACKED_BATCHES = 1024


class BatchPoisoned(Exception):
    """A batch failed after its raw records were archived, in its own content's handling
    (not in the archive or the forwarder): retrying may well fail the same way."""

    def __init__(self, batch: str, cause: BaseException) -> None:
        # The exception type only: a message may quote the record (PHI).
        self.batch = batch
        self.error = type(cause).__name__
        super().__init__(f"batch {batch} failed after its raw put ({self.error})")


class PoisonAttempts:
    """Failed attempts per batch name, in memory (one process). A restart or a partition
    moving starts again from zero, which only delays the quarantine by that many retries;
    nothing is set aside that has not failed `limit` times in a row on one instance."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._failures: OrderedDict[str, int] = OrderedDict()

    def failed(self, batch: str) -> int:
        """Count one more failure of `batch`; returns how many so far."""
        count = self._failures.pop(batch, 0) + 1
        self._failures[batch] = count
        while len(self._failures) > MAX_TRACKED_BATCHES:
            self._failures.popitem(last=False)
        return count

    def forget(self, batch: str) -> None:
        self._failures.pop(batch, None)


def quarantine_alert(
    batch: str, raw_object: str, records: int, error: str, attempts: int, when: datetime | None
) -> Alert:
    """One per batch (its id depends on the batch name only): a retry of the quarantine
    itself gives the same alert."""
    at = when or datetime.now(UTC)
    return system_alert(
        rule_id=RULE_ID,
        key=batch,
        anchor=raw_object,
        rule_name="Batch set aside after repeated failures",
        severity="High",
        tactics=["DefenseEvasion"],
        techniques=["T1562"],
        title=f"Batch {batch} was set aside unprocessed after {attempts} failed attempts",
        description=(
            "phiwatch could not process a batch of diagnostic records after archiving them, "
            "the same way on every attempt, so it set the batch aside to let the partition "
            "move on. Its records were not normalised, sent to Sentinel or seen by any "
            "detection: a crafted record could be hiding activity. The raw records are in "
            "the archive; each is a `batch-quarantined` dead-letter pointing at its copy."
        ),
        reasons=[
            f"{attempts} attempts failed with {error} after the raw put.",
            f"{records} record(s) are in {raw_object} and were not processed.",
        ],
        at=at,
    )


__all__ = ["RULE_ID", "BatchPoisoned", "PoisonAttempts", "quarantine_alert"]
