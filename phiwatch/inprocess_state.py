"""Detection state of the in-process mode (normalize runs the detections itself), kept across
restarts like the `detect` stage keeps its own.

Without it a restart in the middle of a burst starts the engine empty: the windows it held are
gone, the alert it would have raised gets another AlertId (a later window start) and fewer
patients. So after each batch the engine's committed state is saved per diagnostics
partition, replacing exactly the version it restored (etag); the first batch a process sees
restores it. A batch redelivered after a crash between the archive and the save is simply
processed again: the archive is create-only and detections ignore events they already hold.

The mode is right for one diagnostics partition only (every event a rule groups must reach
one engine): `check_partition` refuses a second partition id, loudly, instead of raising
alerts no correct deployment would.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from phiwatch.detect import snapshot
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.state_store import StateConflict, StateStore, state_key

log = structlog.get_logger("phiwatch.inprocess")

# The snapshot key's consumer-group part: never one a `detect` stage uses (theirs are real
# consumer groups of phi-events), so the two modes cannot read each other's state.
IN_PROCESS_GROUP = "inprocess"


class SecondPartition(Exception):
    """The in-process mode was handed a second partition of the diagnostics hub."""


class InProcessState:
    def __init__(self, store: StateStore | None, engine: DetectionEngine) -> None:
        self.store = store
        self.engine = engine
        self._partition: str | None = None
        self._etag: str | None = None
        self._restored = False

    def check_partition(self, hub: str, partition: str) -> None:
        if self._partition is None:
            self._partition = partition
            return
        if partition != self._partition:
            raise SecondPartition(
                f"detections run inside normalize (no PHIWATCH_PHI_EVENTS_HUB), which is "
                f"correct for one diagnostics partition only, but hub {hub!r} delivered "
                f"partitions {self._partition!r} and {partition!r}: set PHIWATCH_PHI_EVENTS_HUB "
                "and run the detect stage (README 'Scaling')"
            )

    def restore(self, hub: str, partition: str, now: datetime | None = None) -> bool:
        """Load the partition's snapshot into the engine the first time; True if it did."""
        if self._restored or self.store is None:
            return False
        self._restored = True
        found = self.store.load(self._key(hub, partition))
        if found is None:
            return False
        self._etag = found.etag
        doc = snapshot.loads(found.data)
        empty = snapshot.dumps(self.engine.state())  # nothing processed yet
        self.engine.load_state(doc["engine"])
        impossible = self.engine.impossible_times(now or datetime.now(UTC))
        if impossible:
            # A poisoned snapshot would blind detection for good: start clean, keeping the
            # etag so the next save replaces it.
            self.engine.load_state(snapshot.loads(empty))
            log.error(
                "in-process detection snapshot holds an impossible time; starting afresh",
                partition=partition,
                found=impossible[0].split(" ", 1)[0],
            )
            return False
        log.info("in-process detection state restored", partition=partition)
        return True

    def save(self, hub: str, partition: str) -> None:
        if self.store is None:
            return
        data = snapshot.dumps({"engine": self.engine.state()})
        try:
            self._etag = self.store.save(self._key(hub, partition), data, self._etag)
        except StateConflict:
            # Another process saved meanwhile: restore its state on the next batch.
            self._restored, self._etag = False, None
            raise

    @staticmethod
    def _key(hub: str, partition: str) -> str:
        return state_key(IN_PROCESS_GROUP, hub, partition)
