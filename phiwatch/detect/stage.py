"""The `detect` stage: stateful detections over the `phi-events` hub, one engine per partition.

`normalize` publishes every event once per grouping a loaded rule needs it in, keyed by the
event's key in that grouping and tagged with it (phiwatch/phievents: `PublishingForwarder`), so
all events a rule groups together reach one partition, and one engine per partition sees them
all; the engine hands a copy only to the rules of its grouping. Per partition batch:

1. restore the partition's engine from its snapshot the first time this process sees the
   partition (or after another instance took it over), and skip messages whose sequence number
   the snapshot already covers: a redelivered batch neither counts twice nor loses a window;
2. run the events through the engine, in event-time order within the reorder delay;
3. archive the alerts that changed (archive before emit), then emit them (Sentinel);
4. save the snapshot with the highest sequence number it covers, replacing exactly the version
   it restored (etag). If another instance wrote in between, both believed they owned the
   partition: this one drops its state and raises, the host retries, and the retry restores the
   winner's snapshot and skips what it covers. The alerts emitted meanwhile carry the same
   AlertIds the winner derives, so Sentinel deduplicates them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from phiwatch.archive.alerts import archive_alerts
from phiwatch.archive.archive import Archive
from phiwatch.batch import BatchResult, Sink, emit_to
from phiwatch.detect import snapshot
from phiwatch.detect.engine import DetectionEngine, impossible_time
from phiwatch.detect.state_store import StateConflict, StateStore, state_key
from phiwatch.model import Alert
from phiwatch.phievents.message import Tick, decode_message

if TYPE_CHECKING:
    from phiwatch.eventhubs.message import EventHubMessage

log = structlog.get_logger("phiwatch.detect")


# ----------------------------------------------------------------------------- the stage


@dataclass
class DetectResult:
    partition: str
    events: int = 0  # event messages (one per event and grouping) run through the engine
    covered: int = 0  # messages skipped: the restored state already holds them
    invalid: int = 0  # messages that were not events (logged, never in state)
    ticks: int = 0  # watermark ticks from normalize
    late: int = 0
    alerts: list[Alert] = field(default_factory=list)
    restored: bool = False  # this batch restored the partition's state from its snapshot
    restarted: bool = False  # the snapshot was for an earlier incarnation of the hub
    refused: int = 0  # of the invalid: messages whose time was refused (event-time-anomaly)


@dataclass
class _Partition:
    engine: DetectionEngine
    covered: int  # highest sequence number reflected in the engine's state (-1: none)
    etag: str | None  # of the snapshot the state was restored from or last saved as
    covered_at: datetime | None = None  # when that message was enqueued
    # The enqueued times of the last messages covered, by sequence number: a message the
    # snapshot claims to cover but enqueued at another time is from a new hub (_hub_recreated).
    seen: dict[int, float] = field(default_factory=dict)
    generation: str | None = None  # PHIWATCH_PHI_EVENTS_GENERATION when last saved


# How many (sequence number, enqueued time) pairs a snapshot keeps: more than one batch
# (maxEventBatchSize 100), which is how far back a redelivery reaches.
SEEN_KEPT = 256


class DetectProcessor:
    """One per process; keeps the engines of the partitions this process has been given."""

    def __init__(
        self,
        *,
        engine_factory: Callable[[], DetectionEngine],
        archive: Archive,
        state_store: StateStore | None,
        sinks: Sequence[Sink] = (),
        hub: str = "phi-events",
        consumer_group: str = "phiwatch",
        generation: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`generation` names the incarnation of the hub (PHIWATCH_PHI_EVENTS_GENERATION,
        changed when it is re-created or fails over): a snapshot saved under another one is
        never applied. `clock` bounds times of messages that carry no enqueued time."""
        self.engine_factory = engine_factory
        self.generation = generation
        self.clock = clock
        self.archive = archive
        self.state_store = state_store
        self.sinks = list(sinks)
        self.hub = hub
        self.consumer_group = consumer_group
        self._partitions: dict[str, _Partition] = {}
        self._lock = threading.Lock()  # the Functions worker runs invocations on threads
        self.sink_failures = 0

    def process(self, partition: str, messages: Sequence[EventHubMessage]) -> DetectResult:
        with self._lock:
            return self._process(partition, messages)

    def _process(self, partition: str, messages: Sequence[EventHubMessage]) -> DetectResult:
        result = DetectResult(partition)
        state = self._partitions.get(partition)
        if (
            state is not None
            and self.state_store is not None
            and messages
            and min(map(_seq, messages)) > state.covered + 1
        ):
            # Sequence numbers of a partition have no gaps, and the host moves a checkpoint
            # only past a processed batch: the messages in between went to another instance
            # (the partition moved away and back). Its snapshot is current, this memory is
            # not; going on from it would emit alerts that instance never derives.
            log.info("detect partition came back; restoring it", hub=self.hub, partition=partition)
            del self._partitions[partition]
            state = None
        # What bounds every time in this batch: the hub's enqueued times. A message without
        # one (a host that drops it; never Event Hubs itself) is bounded by the newest one
        # in its batch, else by the wall clock: no honest time is later than now, and a
        # forged one must still not pass unbounded.
        enqueued = [m.enqueued_time for m in messages if m.enqueued_time is not None]
        now = max(enqueued) if enqueued else self.clock()
        if state is None:
            state = self._restore(partition, now)
            result.restored = True
        if _hub_recreated(messages, state, self.generation):
            # Sequence numbers restarted (phi-events was deleted and created again, e.g. to
            # change its partition count): the snapshot's cover would skip new events.
            log.error(
                "phi-events sequence numbers went back in time; starting the partition afresh",
                hub=self.hub,
                partition=partition,
                covered=state.covered,
            )
            state.engine, state.covered, state.covered_at = self._fresh_engine(partition), -1, None
            state.seen = {}
            result.restarted = True
        fresh = [m for m in messages if _seq(m) > state.covered]
        result.covered = len(messages) - len(fresh)
        if not fresh:
            return result
        engine = state.engine
        late_before = engine.late
        for message in fresh:
            self._handle(partition, engine, message, message.enqueued_time or now, result)
        engine.advance()
        alerts = engine.changed_alerts()
        first, last = _seq(fresh[0]), _seq(fresh[-1])
        try:
            if alerts:
                self._archive(partition, first, last, alerts)
                self._emit(alerts, engine.late - late_before)
            engine.commit()
            state.covered_at = fresh[-1].enqueued_time
            _remember(state, fresh)
            if result.events or alerts:
                self._save(partition, state, last)
            else:
                # Ticks only (a quiet partition, once a minute per normalize instance): no
                # write. If the partition moves before the next save, its new owner misses
                # these ticks' progress, never an event, and later ticks bring it back.
                state.covered = last
        except BaseException:
            # Whatever failed, this process's copy of the partition is now ahead of what is
            # durable: forget it, so the retry restores the snapshot and redoes the batch.
            self._partitions.pop(partition, None)
            raise
        result.alerts = alerts
        result.late = engine.late - late_before
        log.info(
            "detect batch processed",
            hub=self.hub,
            partition=partition,
            first=first,
            last=last,
            events=result.events,
            covered=result.covered,
            invalid=result.invalid,
            refused=result.refused,
            alerts=len(alerts),
            late=result.late,
            buffered=engine.state_size(),
        )
        return result

    def _handle(
        self,
        partition: str,
        engine: DetectionEngine,
        message: EventHubMessage,
        now: datetime,
        result: DetectResult,
    ) -> None:
        """One message into the engine. Nothing in a body may stop the partition: only
        phiwatch writes this hub, so a body that is not one of ours (or that trips a bug) is
        counted, logged without content and skipped; its record is in the archive."""
        position = f"sequence number {message.sequence_number}"
        try:
            decoded = decode_message(message.body)
            if isinstance(decoded, Tick):
                result.ticks += 1
                accepted = engine.tick(decoded.time, decoded.stream, now=now, position=position)
            else:
                arrival = decoded.arrival or message.enqueued_time  # stamps DetectedAt
                accepted = engine.process(
                    decoded.event,
                    arrival,
                    now=now,
                    position=position,
                    grouping=decoded.grouping,
                )
                result.events += accepted
        except Exception as exc:
            result.invalid += 1
            # ValueError (ValidationError included): not one of ours; else a bug it trips.
            log.error(
                "phi-events message is not an event; skipped"
                if isinstance(exc, ValueError)
                else "detect failed on a phi-events message; skipped",
                partition=partition,
                sequence_number=message.sequence_number,
                error=type(exc).__name__,
            )
            return
        if not accepted:
            result.invalid += 1
            result.refused += 1
            log.warning(
                "phi-events message claims an impossible time; refused",
                partition=partition,
                sequence_number=message.sequence_number,
                kind="tick" if isinstance(decoded, Tick) else "event",
            )

    def finish(self) -> list[Alert]:
        """End of a local run: settle every partition's pending rules, archive and emit."""
        settled: list[Alert] = []
        with self._lock:
            for partition, state in sorted(self._partitions.items()):
                if not self._still_ours(partition, state):
                    # Another instance took the partition over and saved since: settling this
                    # stale copy would emit what that instance never derives (a pending delete
                    # it has since seen explained), and its failed save would stop the loop
                    # before the partitions this process does own are settled.
                    log.warning(
                        "detect partition moved to another instance; not settled here",
                        hub=self.hub,
                        partition=partition,
                    )
                    del self._partitions[partition]
                    continue
                state.engine.finish()
                alerts = state.engine.changed_alerts()
                if alerts:
                    self._archive(partition, None, state.covered, alerts)
                    self._emit(alerts, 0)
                state.engine.commit()
                self._save(partition, state, state.covered)
                settled += alerts
        return settled

    def engines(self) -> dict[str, DetectionEngine]:
        return {p: s.engine for p, s in self._partitions.items()}

    # ------------------------------------------------------------------ internals

    def _key(self, partition: str) -> str:
        return state_key(self.consumer_group, self.hub, partition)

    def _fresh_engine(self, partition: str) -> DetectionEngine:
        engine = self.engine_factory()
        engine.scope = f"{self.hub}/{partition}"  # what its event-time-anomaly alerts name
        return engine

    def _restore(self, partition: str, now: datetime) -> _Partition:
        engine = self._fresh_engine(partition)
        state = _Partition(engine, covered=-1, etag=None)
        if self.state_store is not None:
            found = self.state_store.load(self._key(partition))
            if found is not None:
                doc = snapshot.loads(found.data)
                engine.load_state(doc["engine"])
                state.covered, state.etag = doc["covered"], found.etag
                at = doc.get("covered_at")
                state.covered_at = datetime.fromisoformat(at) if at else None
                state.seen = {int(seq): float(t) for seq, t in doc.get("seen", [])}
                state.generation = doc.get("generation")
                self._refuse_impossible(partition, state, now)
        self._partitions[partition] = state
        log.info(
            "detect partition restored",
            hub=self.hub,
            partition=partition,
            covered=state.covered,
            from_snapshot=state.etag is not None,
        )
        return state

    def _refuse_impossible(self, partition: str, state: _Partition, now: datetime) -> None:
        """A snapshot holding a time no honest stream produced (a watermark in 9999 from
        before times were bounded, or a state blob written by someone else) would blind the
        partition for good: its event-time state is dropped, with an event-time-anomaly
        alert. What it covers stays covered (those messages were processed)."""
        impossible = state.engine.impossible_times(now)
        covered_at = state.covered_at
        if covered_at is not None and impossible_time(covered_at.timestamp(), now):
            impossible.append(f"covered message enqueued {covered_at.isoformat()}")
            state.covered_at, state.seen = None, {}
        if not impossible:
            return
        log.error(
            "detect snapshot holds an impossible time; the partition starts afresh",
            hub=self.hub,
            partition=partition,
            found=impossible[0].split(" ", 1)[0],
        )
        state.engine = self._fresh_engine(partition)
        state.engine.refuse_state(now, f"saved {impossible[0]}")

    def _still_ours(self, partition: str, state: _Partition) -> bool:
        """Whether the stored snapshot is still the one this state was restored from or
        last saved as (nobody else has saved the partition since)."""
        if self.state_store is None:
            return True
        found = self.state_store.load(self._key(partition))
        return (found.etag if found is not None else None) == state.etag

    def _save(self, partition: str, state: _Partition, covered: int) -> None:
        state.covered = covered
        if self.state_store is None:
            return
        at = state.covered_at.isoformat() if state.covered_at else None
        state.generation = self.generation or state.generation
        data = snapshot.dumps(
            {
                "engine": state.engine.state(),
                "covered": covered,
                "covered_at": at,
                "seen": sorted(state.seen.items()),
                "generation": state.generation,
            }
        )
        try:
            state.etag = self.state_store.save(self._key(partition), data, state.etag)
        except StateConflict:
            log.warning(
                "another instance saved this partition's state; restoring it on retry",
                hub=self.hub,
                partition=partition,
            )
            raise

    def _archive(self, partition: str, first: int | None, last: int, alerts: list[Alert]) -> None:
        # A settle (end of a local run) follows the last batch: named after where it ended.
        archive_alerts(
            self.archive,
            stream=f"detect:{self.consumer_group}/{self.hub}/{partition}",
            base=f"{self.hub}-p{partition}",
            alerts=alerts,
            first=first,
            last=last,
            settle=first is None,
        )

    def _emit(self, alerts: list[Alert], late: int) -> None:
        self.sink_failures += emit_to(self.sinks, BatchResult.of_alerts(alerts, late))


def _hub_recreated(messages: Sequence[Any], state: _Partition, generation: str | None) -> bool:
    """Whether the snapshot is from an earlier incarnation of the hub (deleted and created
    again, or a Geo-DR failover): its sequence numbers restarted, so its cover would skip new
    events. A genuine redelivery is the same message: same sequence number, same enqueued
    time. So a message the snapshot claims to cover is a new hub's when

    * the configured generation differs from the one the snapshot was saved under;
    * its sequence number is one the snapshot remembers, enqueued at another time (this
      holds even when the new hub's times are close to, or behind, the old one's);
    * it is older than any the snapshot remembers, yet enqueued after them (enqueued times
      of one partition never go back);
    * it is enqueued after the last message covered (a snapshot without memory of times).
    """
    if state.covered < 0:
        return False
    if generation and state.generation and generation != state.generation:
        return True
    oldest = min(state.seen.values(), default=None)
    for m in messages:
        seq = _seq(m)
        if seq > state.covered or m.enqueued_time is None:
            continue
        at = m.enqueued_time.timestamp()
        known = state.seen.get(seq)
        if known is not None and at != known:
            return True
        if known is None and oldest is not None and seq < min(state.seen) and at > oldest:
            return True
        if state.covered_at is not None and m.enqueued_time > state.covered_at:
            return True
    return False


def _remember(state: _Partition, messages: Sequence[Any]) -> None:
    for m in messages:
        if m.enqueued_time is not None:
            state.seen[_seq(m)] = m.enqueued_time.timestamp()
    if len(state.seen) > SEEN_KEPT:
        for seq in sorted(state.seen)[:-SEEN_KEPT]:
            del state.seen[seq]


def _seq(message: Any) -> int:
    seq = message.sequence_number
    if seq is None:
        raise ValueError("phi-events messages always carry a sequence number")
    return int(seq)
