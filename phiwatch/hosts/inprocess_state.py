"""Detection state of the in-process mode (normalize runs the detections itself), kept across
restarts like the `detect` stage keeps its own.

Without it a restart in the middle of a burst starts the engine empty: the windows it held are
gone, the alert it would have raised gets another AlertId (a later window start) and fewer
patients. So after each batch the engine's committed state is saved per diagnostics
partition, replacing exactly the version it restored (etag); the first batch a process sees
restores it. A batch redelivered after a crash between the archive and the save is simply
processed again: the archive is create-only and detections ignore events they already hold.

The mode is right for one diagnostics partition only (every event a rule groups must reach
one engine): each further partition id is logged as an error, once, naming the setting that
fixes it (a multi-partition hub needs the `detect` stage).
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


class InProcessState:
    def __init__(self, store: StateStore | None, engine: DetectionEngine) -> None:
        self.store = store
        self.engine = engine
        self.partitions: list[str] = []  # in the order first seen
        self._etags: dict[str, str | None] = {}

    def check_partition(self, hub: str, partition: str) -> bool:
        """Whether `partition` is one more than the mode is correct for (said once)."""
        if partition in self.partitions:
            return len(self.partitions) > 1 and partition != self.partitions[0]
        self.partitions.append(partition)
        if len(self.partitions) == 1:
            return False
        log.error(
            "detections run inside normalize (no PHIWATCH_PHI_EVENTS_HUB), which is correct "
            "for one diagnostics partition only: alerts are split across partitions; set "
            "PHIWATCH_PHI_EVENTS_HUB and run the detect stage (README 'Scaling')",
            hub=hub,
            partitions=len(self.partitions),
        )
        return True

    def restore(self, hub: str, partition: str, now: datetime | None = None) -> bool:
        """Load the partition's snapshot into the engine the first time; True if it did."""
        if partition in self._etags or self.store is None:
            return False
        found = self.store.load(self._key(hub, partition))
        self._etags[partition] = found.etag if found is not None else None
        if found is None:
            return False
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
            etag = self.store.save(self._key(hub, partition), data, self._etags.get(partition))
        except StateConflict:
            # Another process saved meanwhile: restore its state on the next batch.
            self._etags.pop(partition, None)
            raise
        self._etags[partition] = etag

    @staticmethod
    def _key(hub: str, partition: str) -> str:
        return state_key(IN_PROCESS_GROUP, hub, partition)
