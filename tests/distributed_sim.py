"""A discrete-time simulation of the two-stage pipeline (issue 8, item 4): N `normalize` and
M `detect` workers in one process, over in-memory partitioned hubs, with the faults Event Hubs
and the Functions host produce in production. Everything phiwatch does is the real code
(`build_pipeline` with a forwarder, `build_detector` with `BlobStateStore` on Azurite, one
shared archive); only the hubs, the checkpoint store and Sentinel are stand-ins, here.

Arrival model
-------------
Every body of the scenario files (read as the replay reads them) is enqueued on the raw hub at
its latest record time plus `ARRIVAL_DELAY` (Azure Monitor ships a batch a minute or two after
its newest record; the generator packs a body from records delivered within two minutes, so
the newest record is when it shipped). A body without a readable record time (a broken line,
bad records only) arrives with the body before it. Azure Monitor sends without a partition key,
so each body goes to a (seeded) random partition; sequence numbers count per partition, in
enqueue order. `Faults.delay` may hold some bodies back (late arrival).

`phi-events` has the same P partitions. normalize publishes an event once per grouping a rule
needs, keyed by the event's key in it (phiwatch/phievents/routing.py); `MemoryPublisher` puts
each message on sha256(partition key) mod P, enqueued at the simulated time it was published.
Event Hubs hashes partition keys with a function of its own; any stable hash gives the
property under test (all events of one key on one partition, in order), and the publisher
groups messages by key as the real `EventHubsPublisher` does.

Tick model
----------
A simulated clock advances in ticks of `TICK` (well under the reorder delay, so that a tick's
batches, processed one partition after another, reorder events less than concurrent instances
would be allowed to). Each tick, raw bodies enqueued by then become visible; the normalize
workers (in a seeded random order, as if concurrent) each process, for every partition they
own, the visible messages after the partition's checkpoint, in batches of at most
`NORMALIZE_BATCH`, built by `build_batch` as the Functions host glue builds them. The
checkpoint moves past a batch only once `process` returned. Then the detect workers do the
same on `phi-events` (at most `DETECT_BATCH` messages a batch). A failed or crashed delivery
is redelivered from the checkpoint at the next tick (the host's retry). Partitions are owned
round robin by three workers per stage whatever P (with fewer partitions, the others idle as
Functions scale-out leaves them, and take partitions over).

Faults (each counted in `SimResult.faults`, with what the product did about it)
-------------------------------------------------------------------------------
* a worker crash after `process` returned but before the checkpoint (after the archive
  writes, the forwarding and, for detect, the state save): the worker restarts empty (a new
  pipeline or detector) and the batch is redelivered; for normalize every other time to
  another worker that takes the partition over; for detect it must be skipped as `covered`
  by the restored snapshot;
* a state store outage on a detect save (a crash before the state is durable): the batch
  fails, and the retry restores the previous snapshot and redoes it;
* every detect partition moving on to another worker at each `Move` (the new owner restores
  from Blob); with `stale_batch`, the old owner then processes one more batch of it, which
  must hit the etag conflict (`StateConflict`) and leave the winner's state in place;
* forwarding to phi-events failing half way through a normalize batch: the pipeline rolls
  back and raises, the live worker gets the batch again and sends it all (again);
* the same batch delivered twice, to either stage (the second delivery right after the first);
* bodies arriving late (`Faults.delay`).

At the end, `finish()` runs on every detect worker (a local run settles pending rules, as the
replay does at end of input), including workers still holding a stale copy of a partition
that moved away. Sentinel is `AlertLog`: every alert version emitted, in order.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from phiwatch.archive.store import LocalStore
from phiwatch.batch import BatchResult, Counts
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.detect.grouping import key_of
from phiwatch.detect.stage import DetectProcessor, DetectResult
from phiwatch.detect.state_store import Snapshot, StateConflict, StateStore
from phiwatch.envelope import Body, decode_body, discover, read_file_bodies
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.eventhubs.publisher import KeyedMessage, PublishError, PublishReport
from phiwatch.model import Alert
from phiwatch.phievents.forwarder import PublishingForwarder
from phiwatch.phievents.message import Tick, decode_message
from phiwatch.phievents.routing import Router
from phiwatch.pipeline import Pipeline
from phiwatch.sources.fields import parse_time
from phiwatch.wiring import build_detector, build_pipeline

RAW_HUB = "diagnostics"
EVENTS_HUB = "phi-events"
CONSUMER_GROUP = "phiwatch"
ARRIVAL_DELAY = timedelta(seconds=60)
TICK = timedelta(seconds=60)
NORMALIZE_BATCH = 20  # bodies: up to 40 records each
DETECT_BATCH = 200
# After the last arrival: enough ticks to drain every retry, or the run is stuck (a bug).
DRAIN_TICKS = 50
_TIME_KEYS = ("time", "Time", "timestamp", "originalEventTimestamp")
SEVERITY_RANK = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}


# ----------------------------------------------------------------------------- scenario


@dataclass(frozen=True, slots=True)
class ScenarioBody:
    data: bytes
    order: int  # position in the replay's reading order
    arrival: datetime  # when Azure Monitor enqueues it, before any injected delay


def scenario_bodies(paths: Iterable[Path]) -> list[ScenarioBody]:
    """Every body of the scenario's files, in the replay's order, with its arrival time."""
    bodies: list[ScenarioBody] = []
    previous: datetime | None = None
    raw = [body.data for path in discover(list(paths)) for body in read_file_bodies(path)]
    for order, data in enumerate(raw):
        latest = _latest_record_time(data)
        arrival = latest + ARRIVAL_DELAY if latest is not None else previous
        if arrival is None:  # leading bodies without a time: with the first one that has one
            arrival = next(t for t in map(_latest_record_time, raw) if t) + ARRIVAL_DELAY
        bodies.append(ScenarioBody(data, order, arrival))
        previous = arrival
    return bodies


def _latest_record_time(data: bytes) -> datetime | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    records = doc.get("records") if isinstance(doc, dict) else None
    times = [
        t
        for record in records or []
        if isinstance(record, dict)
        for key in _TIME_KEYS
        if key in record and (t := parse_time(record[key])) is not None
    ]
    return max(times, default=None)


# ----------------------------------------------------------------------------- hubs


@dataclass
class SimClock:
    now: datetime


class MemoryHub:
    """An Event Hub: per partition, messages in enqueue order with sequence numbers 0, 1, ..."""

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.logs: list[list[EventHubMessage]] = [[] for _ in range(partitions)]

    @property
    def partitions(self) -> int:
        return len(self.logs)

    def append(self, partition: int, body: bytes, enqueued: datetime) -> None:
        log = self.logs[partition]
        if log and log[-1].enqueued_time and log[-1].enqueued_time > enqueued:
            raise ValueError("enqueued times of one partition never go back")
        log.append(EventHubMessage(body, len(log), enqueued, str(partition)))

    def visible(
        self, partition: int, start: int, now: datetime, limit: int
    ) -> list[EventHubMessage]:
        """Up to `limit` messages from sequence number `start` that are enqueued by `now`."""
        log = self.logs[partition]
        out: list[EventHubMessage] = []
        for seq in range(start, min(len(log), start + limit)):
            enqueued = log[seq].enqueued_time
            if enqueued is None or enqueued > now:
                break
            out.append(log[seq])
        return out

    def size(self, partition: int) -> int:
        return len(self.logs[partition])


Partitioner = Callable[[str, int], int]


def key_partition(key: str, partitions: int) -> int:
    """Stable: sha256 of the key, mod P (a stand-in for Event Hubs' own key hash)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % partitions


def round_robin_partitioner() -> Partitioner:
    """What Event Hubs does with sends that carry no partition key: each send goes to the next
    partition in turn, whatever it holds (a random choice per send, as this once was, put two
    of the burst's sends on one partition often enough to make the split test a coin toss)."""
    sends = itertools.count()
    return lambda _key, partitions: next(sends) % partitions


class MemoryPublisher:
    """`EventPublisher` onto a `MemoryHub`: messages grouped by key (keys in order of first
    appearance, messages in order within a key), as `EventHubsPublisher` sends them. With
    `fail_next`, the next call sends the first half of its keys and then fails, as a send
    that breaks off half way does."""

    def __init__(
        self, hub: MemoryHub, clock: SimClock, partitioner: Partitioner = key_partition
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.partitioner = partitioner
        self.published = 0
        self.fail_next = False

    def publish(self, messages: Sequence[KeyedMessage]) -> PublishReport:
        groups: dict[str, list[KeyedMessage]] = {}
        for message in messages:
            if not message.key:
                raise ValueError("a phi-events message always has a routing key")
            groups.setdefault(message.key, []).append(message)
        failing, self.fail_next = self.fail_next, False
        sent = 0
        for index, (key, members) in enumerate(groups.items()):
            if failing and index >= len(groups) // 2:
                report = PublishReport(messages=sent, batches=index, keys=index)
                raise PublishError("send failed (injected)", report, len(messages) - sent)
            partition = self.partitioner(key, self.hub.partitions)
            for message in members:
                self.hub.append(partition, message.body, self.clock.now)
            sent += len(members)
            self.published += len(members)
        return PublishReport(
            messages=len(messages),
            batches=len(groups),
            keys=len(groups),
            body_bytes=sum(len(m.body) for m in messages),
        )

    def broadcast(self, body: bytes) -> int:
        for partition in range(self.hub.partitions):
            self.hub.append(partition, body, self.clock.now)
        return self.hub.partitions

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- stand-ins


class InjectedOutage(Exception):
    """A state store call the simulation made fail (a Blob outage)."""


class FlakyStateStore:
    """A worker's view of the shared state store; `fail_next_save` makes one save fail."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.location = inner.location
        self.fail_next_save = False

    def load(self, key: str) -> Snapshot | None:
        return self.inner.load(key)

    def save(self, key: str, data: bytes, etag: str | None) -> str:
        if self.fail_next_save:
            self.fail_next_save = False
            raise InjectedOutage(f"state store unavailable (injected) for {key}")
        return self.inner.save(key, data, etag)


@dataclass(frozen=True, slots=True)
class Emission:
    worker: str
    alert: Alert
    at: datetime  # simulated clock (arrival time) when it was sent
    in_stream: bool  # False: sent by the end-of-run finish(), which no Functions host calls


class AlertLog:
    """Sentinel: every alert version a detect worker emitted, in order."""

    def __init__(
        self, worker: str, into: list[Emission], clock: SimClock, finishing: list[bool]
    ) -> None:
        self.worker = worker
        self.into = into
        self.clock = clock
        self.finishing = finishing

    def emit(self, result: BatchResult) -> None:
        in_stream = not self.finishing[0]
        self.into.extend(Emission(self.worker, a, self.clock.now, in_stream) for a in result.alerts)


def latest_versions(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """The last version emitted of every AlertId."""
    return {a.alert_id: a for a in alerts}


def most_advanced_versions(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """The version Sentinel's incident rule keeps per AlertId (kql/phiwatch-alerts-incident.yaml):
    latest LastEventTime, then highest EventCount, then highest Severity, then latest upload."""
    best: dict[str, tuple[tuple[datetime, int, int, int], Alert]] = {}
    for upload, alert in enumerate(alerts):
        rank = (
            alert.last_event_time,
            alert.event_count,
            SEVERITY_RANK[alert.severity],
            upload,
        )
        if alert.alert_id not in best or rank > best[alert.alert_id][0]:
            best[alert.alert_id] = (rank, alert)
    return {alert_id: alert for alert_id, (_, alert) in best.items()}


# ----------------------------------------------------------------------------- workers


class NormalizeWorker:
    """One `normalize` process; a crash replaces its pipeline with a fresh one."""

    def __init__(self, name: str, start: Callable[[], Pipeline]) -> None:
        self.name = name
        self._start = start
        self.pipeline = start()
        self.crashed: list[Pipeline] = []

    def process(self, partition: int, messages: Sequence[EventHubMessage]) -> BatchResult:
        return self.pipeline.process(build_batch(RAW_HUB, str(partition), messages))

    def crash(self) -> None:
        self.crashed.append(self.pipeline)
        self.pipeline = self._start()

    def pipelines(self) -> list[Pipeline]:
        return [*self.crashed, self.pipeline]


class DetectWorker:
    """One `detect` process; a crash replaces its detector (and its memory) with a fresh one."""

    def __init__(
        self, name: str, store: FlakyStateStore, start: Callable[[], DetectProcessor]
    ) -> None:
        self.name = name
        self.store = store
        self._start = start
        self.detector = start()
        self.crashed: list[DetectProcessor] = []

    def crash(self) -> None:
        self.crashed.append(self.detector)
        self.detector = self._start()

    def detectors(self) -> list[DetectProcessor]:
        return [*self.crashed, self.detector]


# ----------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class Move:
    """At `at`, every detect partition moves `shift` workers on (round robin). With
    `stale_batch`, each old owner then processes one more batch of the partition it lost (the
    first one the new owner processed at that tick), as an instance that has not noticed the
    rebalance yet does."""

    at: datetime
    shift: int = 1
    stale_batch: bool = True


@dataclass(frozen=True)
class Faults:
    # Rates per batch. A crash comes after `process` returned, before the checkpoint.
    normalize_crash: float = 0.0
    normalize_duplicate: float = 0.0  # the batch is delivered (and processed) twice
    normalize_publish_failure: float = 0.0  # forwarding to phi-events fails half way
    detect_crash: float = 0.0  # the state is saved by then (only after batches with events)
    detect_outage: float = 0.0  # the state save fails: the batch fails
    detect_duplicate: float = 0.0
    moves: tuple[Move, ...] = ()
    # Extra delay of a body (late arrival): given its bytes and arrival, and the run's RNG.
    delay: Callable[[bytes, datetime, random.Random], timedelta] | None = None
    # From this tick on, a kind of fault the rates have not produced yet happens at once, so
    # that every kind with a rate happens at least once, however few batches a run has.
    force_after_tick: int = 60


@dataclass
class SimResult:
    emissions: list[Emission]  # every alert version sent to Sentinel, in order
    faults: Counter[str]  # what was injected, and what the product did about it
    normalize_totals: Counts  # over every pipeline, crashed ones included
    records_delivered: int  # raw records in every normalize delivery, redeliveries included
    records_distinct: int  # raw records in the distinct raw hub messages delivered
    raw_messages: int
    event_uids: set[str]  # distinct EventUids that reached phi-events
    # What the forwarders counted (PublishingForwarder.counts), crashed pipelines included.
    forwarded: Counter[str]
    # (grouping, key) of every event copy on phi-events → the partitions it is on.
    key_partitions: dict[tuple[str, str], set[int]]
    engines: list[DetectionEngine]  # of every partition every detector held at the end
    ticks: int
    normalize_batches: int
    detect_batches: int
    finish_errors: list[str] = field(default_factory=list)

    @property
    def alert_versions(self) -> list[Alert]:
        return [e.alert for e in self.emissions]

    @property
    def alerts(self) -> dict[str, Alert]:
        return most_advanced_versions(self.alert_versions)

    @property
    def streamed(self) -> dict[str, Alert]:
        """What Sentinel holds without the end-of-run settle: the in-stream result."""
        return most_advanced_versions(e.alert for e in self.emissions if e.in_stream)

    @property
    def latest(self) -> dict[str, Alert]:
        return latest_versions(self.alert_versions)


class Simulation:
    def __init__(
        self,
        *,
        settings: Settings,
        bodies: Sequence[ScenarioBody],
        partitions: int,
        archive: Path,
        state_store: StateStore,
        faults: Faults = Faults(),
        seed: int = 0,
        workers: int = 3,
        partitioner: Partitioner = key_partition,
        router: Router | None = None,
        privacy: Mapping[str, Path] | None = None,
    ) -> None:
        """`router`: what normalize routes by (default: the rules `detect` loads);
        `privacy`: the roster and patient index files normalize stamps events from."""
        inputs = dict(privacy or {})
        self.settings = settings
        self.faults = faults
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.raw = MemoryHub(RAW_HUB, partitions)
        self.events = MemoryHub(EVENTS_HUB, partitions)
        self._fill_raw(bodies)
        self.clock = SimClock(self._first_arrival())
        self._finishing = [False]
        self.publisher = MemoryPublisher(self.events, self.clock, partitioner)
        self.emissions: list[Emission] = []
        store = LocalStore(archive)  # one archive for every worker of both stages

        def normalizer() -> Pipeline:
            forwarder = (
                PublishingForwarder(self.publisher, router)
                if router is not None
                else PublishingForwarder.for_settings(self.publisher, settings)
            )
            return build_pipeline(
                settings,
                store,
                (),
                forwarder,
                roster_file=inputs.get("roster"),
                patients_file=inputs.get("patients"),
            )

        self.normalizers = [NormalizeWorker(f"n{i}", normalizer) for i in range(workers)]
        self.detectors = [
            self._detect_worker(f"d{i}", store, FlakyStateStore(state_store))
            for i in range(workers)
        ]
        self.raw_owner = [p % workers for p in range(partitions)]
        self.events_owner = [p % workers for p in range(partitions)]
        self.raw_checkpoint = [0] * partitions
        self.events_checkpoint = [0] * partitions
        self._moves = sorted(faults.moves, key=lambda m: m.at)
        self._tick = 0
        self._forced: set[str] = set()
        # (worker, partition) → why its last delivery failed or was not checkpointed.
        # Partition → why its last batch failed; the next delivery of it (to whichever worker
        # owns the partition by then) is the redelivery.
        self._failed: dict[int, str] = {}
        self._moved_to: set[tuple[str, int]] = set()
        self._records: dict[tuple[int, int], int] = {}  # raw (partition, seq) → records
        self.records_delivered = 0
        self.normalize_batches = self.detect_batches = 0

    def _detect_worker(
        self, name: str, archive: LocalStore, store: FlakyStateStore
    ) -> DetectWorker:
        def start() -> DetectProcessor:
            return build_detector(
                self.settings,
                archive,
                store,
                [AlertLog(name, self.emissions, self.clock, self._finishing)],
                hub=EVENTS_HUB,
                consumer_group=CONSUMER_GROUP,
            )

        return DetectWorker(name, store, start)

    def _fill_raw(self, bodies: Sequence[ScenarioBody]) -> None:
        arrivals: list[tuple[datetime, int, bytes]] = []
        for body in bodies:
            arrival = body.arrival
            if self.faults.delay is not None:
                extra = self.faults.delay(body.data, arrival, self.rng)
                if extra:
                    self.counts["late_bodies"] += 1
                arrival += extra
            arrivals.append((arrival, body.order, body.data))
        for arrival, _, data in sorted(arrivals):
            self.raw.append(self.rng.randrange(self.raw.partitions), data, arrival)
        self._last_arrival = max(a for a, _, _ in arrivals)

    def _first_arrival(self) -> datetime:
        first = min(m.enqueued_time for log in self.raw.logs for m in log[:1] if m.enqueued_time)
        return first - TICK

    # ------------------------------------------------------------------ the loop

    def run(self) -> SimResult:
        idle_after_last = 0
        while True:
            self._tick += 1
            self.clock.now += TICK
            self._normalize_tick()
            self._detect_tick()
            if self.clock.now >= self._last_arrival:
                if self._drained():
                    break
                idle_after_last += 1
                if idle_after_last > DRAIN_TICKS:
                    raise RuntimeError("the hubs never drained: a batch fails for good")
        self._finishing[0] = True
        finish_errors = self._finish()
        return self._result(finish_errors)

    def _drained(self) -> bool:
        return all(
            self.raw_checkpoint[p] == self.raw.size(p)
            and self.events_checkpoint[p] == self.events.size(p)
            for p in range(self.raw.partitions)
        )

    def _fault(self, kind: str) -> bool:
        rate = getattr(self.faults, kind)
        if rate <= 0:
            return False
        if self.rng.random() < rate or (
            kind not in self._forced and self._tick >= self.faults.force_after_tick
        ):
            self._forced.add(kind)
            self.counts[kind] += 1
            return True
        return False

    # ------------------------------------------------------------------ normalize

    def _normalize_tick(self) -> None:
        order = list(range(len(self.normalizers)))
        self.rng.shuffle(order)
        for w in order:
            for p in range(self.raw.partitions):
                if self.raw_owner[p] == w and not self._normalize_partition(w, p):
                    break  # the worker crashed: its other partitions wait for the next tick

    def _normalize_partition(self, w: int, p: int) -> bool:
        worker = self.normalizers[w]
        while batch := self.raw.visible(p, self.raw_checkpoint[p], self.clock.now, NORMALIZE_BATCH):
            self.publisher.fail_next = self._fault("normalize_publish_failure")
            try:
                worker.process(p, batch)
            except PublishError as exc:
                # The pipeline rolled back and raised: the host retries the batch next tick
                # (on this same, live worker); what was sent comes again, as duplicates.
                self.counts["normalize_publish_partial_messages"] += exc.sent.messages
                return True
            self._delivered(p, batch)
            if self._fault("normalize_crash"):
                worker.crash()
                # Every other crash, another worker takes the partition over (the host's
                # load balancer); otherwise the restarted worker gets the batch again.
                if self.counts["normalize_crash"] % 2:
                    self.raw_owner[p] = self.rng.choice(
                        [i for i in range(len(self.normalizers)) if i != w]
                    )
                    self.counts["normalize_taken_over"] += 1
                return False
            if self._fault("normalize_duplicate"):
                worker.process(p, batch)
                self._delivered(p, batch)
            self.raw_checkpoint[p] = batch[-1].sequence_number + 1  # type: ignore[operator]
        return True

    def _delivered(self, p: int, batch: Sequence[EventHubMessage]) -> None:
        """Count the raw records of a delivery the pipeline accepted."""
        self.normalize_batches += 1
        for message in batch:
            key = (p, message.sequence_number or 0)
            if key not in self._records:
                self._records[key] = len(decode_body(Body(message.body, "sim", "sim")))
            self.records_delivered += self._records[key]

    # ------------------------------------------------------------------ detect

    def _detect_tick(self) -> None:
        stale: dict[int, int] = {}  # partition → the old owner that gets a stale batch
        while self._moves and self._moves[0].at <= self.clock.now:
            move = self._moves.pop(0)
            self.counts["detect_moves"] += 1
            for p in range(self.events.partitions):
                if move.stale_batch:
                    stale[p] = self.events_owner[p]
                self.events_owner[p] = (self.events_owner[p] + move.shift) % len(self.detectors)
                self._moved_to.add((self.detectors[self.events_owner[p]].name, p))
        processed: dict[int, list[EventHubMessage]] = {}
        order = list(range(len(self.detectors)))
        self.rng.shuffle(order)
        for w in order:
            for p in range(self.events.partitions):
                if self.events_owner[p] == w and not self._detect_partition(w, p, processed):
                    break  # the worker crashed: its other partitions wait for the next tick
        for p, old in sorted(stale.items()):
            if p in processed and old != self.events_owner[p]:
                self._stale_batch(old, p, processed[p])

    def _detect_partition(
        self, w: int, p: int, processed: dict[int, list[EventHubMessage]]
    ) -> bool:
        worker = self.detectors[w]
        while batch := self.events.visible(
            p, self.events_checkpoint[p], self.clock.now, DETECT_BATCH
        ):
            # Not on a redelivery: the fault counts pair each failure with its redelivery.
            worker.store.fail_next_save = p not in self._failed and self._fault("detect_outage")
            self.detect_batches += 1
            try:
                result = worker.detector.process(str(p), batch)
            except InjectedOutage:
                self._failed[p] = "outage"
                return True  # the host retries this partition next tick; the others go on
            except StateConflict:
                # Only an injected stale batch may meet another owner's save: this is a bug.
                self.counts["detect_conflict_unexpected"] += 1
                self._failed[p] = "conflict"
                return True
            finally:
                if worker.store.fail_next_save:
                    # A batch of ticks only saves nothing: the outage did not happen.
                    self.counts["detect_outage"] -= 1
                worker.store.fail_next_save = False
            self._account(worker, p, result)
            processed.setdefault(p, batch)
            # After a batch that saved its state (a batch of ticks only saves nothing: a
            # crash then is a restart from the previous snapshot, the outage case).
            if (result.events or result.alerts) and self._fault("detect_crash"):
                worker.crash()
                self._failed[p] = "crash"
                return False
            if self._fault("detect_duplicate"):
                again = worker.detector.process(str(p), batch)
                self.counts["detect_duplicate_covered"] += again.covered
                self.counts["detect_duplicate_events"] += again.events
            self.events_checkpoint[p] = batch[-1].sequence_number + 1  # type: ignore[operator]
        return True

    def _account(self, worker: DetectWorker, p: int, result: DetectResult) -> None:
        reason = self._failed.pop(p, None)
        if reason is not None:
            # The redelivery after a failure: a crash came after the save, so the restored
            # snapshot covers the batch; an outage came before it, so nothing is covered.
            self.counts[f"detect_{reason}_redelivered"] += 1
            self.counts[f"detect_{reason}_redelivery_restored"] += result.restored
            self.counts[f"detect_{reason}_redelivery_covered"] += result.covered
        if (worker.name, p) in self._moved_to:
            self._moved_to.discard((worker.name, p))
            self.counts["detect_moved_partition_restored"] += result.restored
        self.counts["detect_restores"] += result.restored

    def _stale_batch(self, w: int, p: int, batch: list[EventHubMessage]) -> None:
        """The old owner still believes it owns `p` and processes a batch the new owner has
        already processed; it must not overwrite the new owner's state."""
        worker = self.detectors[w]
        self.counts["detect_stale_batches"] += 1
        try:
            result = worker.detector.process(str(p), batch)
        except StateConflict:
            self.counts["detect_stale_conflicts"] += 1
            return
        # The old owner had forgotten the partition (it crashed since): it restored the new
        # owner's snapshot, which covers the batch.
        self.counts["detect_stale_restored"] += 1
        self.counts["detect_stale_covered"] += result.covered

    def _finish(self) -> list[str]:
        """End of the run: every detect worker settles what it holds (as replay does)."""
        holders: Counter[str] = Counter()
        for worker in self.detectors:
            holders.update(list(worker.detector.engines()))
        # Copies beyond the one of the current owner: partitions that moved away.
        self.counts["finish_stale_copies"] = sum(n - 1 for n in holders.values())
        errors = []
        for worker in self.detectors:
            held = len(worker.detector.engines())
            try:
                worker.detector.finish()
            except StateConflict as exc:
                errors.append(f"{worker.name}: {exc}")
            self.counts["finish_stale_dropped"] += held - len(worker.detector.engines())
        return errors

    def _result(self, finish_errors: list[str]) -> SimResult:
        totals = Counts()
        for worker in self.normalizers:
            for pipeline in worker.pipelines():
                totals.add(pipeline.totals)
        for kind, archives in (
            ("normalize", [p.archive for w in self.normalizers for p in w.pipelines()]),
            ("detect", [d.archive for w in self.detectors for d in w.detectors()]),
        ):
            # A redelivered batch derives other events or alerts than the first delivery
            # (what was seen before differs): the first write stands; counted, not a fault.
            self.counts[f"{kind}_derived_conflicts"] = sum(
                len(a.derived_conflicts) for a in archives
            )
        forwarded: Counter[str] = Counter()
        for worker in self.normalizers:
            for pipeline in worker.pipelines():
                forwarded.update(pipeline.forwarder.counts)  # type: ignore[union-attr]
        copies: dict[tuple[str, str], set[int]] = {}
        uids: set[str] = set()
        for partition, log in enumerate(self.events.logs):
            for m in log:
                decoded = decode_message(m.body)
                if isinstance(decoded, Tick):
                    continue
                uids.add(decoded.event.event_uid)
                key = key_of(decoded.grouping, decoded.event) or ""
                copies.setdefault((decoded.grouping, key), set()).add(partition)
        engines = [e for w in self.detectors for d in w.detectors() for e in d.engines().values()]
        return SimResult(
            emissions=self.emissions,
            faults=self.counts,
            normalize_totals=totals,
            records_delivered=self.records_delivered,
            records_distinct=sum(self._records.values()),
            raw_messages=sum(len(log) for log in self.raw.logs),
            event_uids=uids,
            forwarded=forwarded,
            key_partitions=copies,
            engines=engines,
            ticks=self._tick,
            normalize_batches=self.normalize_batches,
            detect_batches=self.detect_batches,
            finish_errors=finish_errors,
        )


# ----------------------------------------------------------------------------- archive


def archived_raw_positions(archive: Path) -> set[tuple[str, str]]:
    """(stream, position) of every raw record in the archive (redeliveries count once)."""
    positions: set[tuple[str, str]] = set()
    for path in (archive / "raw").rglob("*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            entry = orjson.loads(line)
            positions.add((entry["Stream"], entry["Position"]))
    return positions
