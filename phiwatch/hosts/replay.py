"""Local replay: run the pipeline over diagnostic-log files (the embedded default).

With `workers` > 1 (a backfill of many files) each file, one input stream, is read by a
worker process: decode, the raw archive object, normalise and serialise. This process takes
the workers' batches in the order one process reads them and runs what depends on every
stream before it (the dedupe set, the Activity Start buffer, detection, the derived
archive objects and the manifest chains, the sinks), through the same `Pipeline.process`,
so the output is the one process's byte for byte. A worker cannot know what other streams
put in the dedupe set or the Start buffer: it records, per record, what it asked of them and
what the record produced. A record this process has seen already (delivered in an earlier
file too) becomes the duplicate skip here, alone; a batch with any other answer that differs
(a `Start` in another file, an id let go here) is read again and processed here, as one
process would. Workers are spawned processes: a script calling `replay(..., workers=N)`
needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import multiprocessing
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import structlog

from detections import RegistryError
from phiwatch.archive.archive import ArchiveIntegrityError, IntegrityConflict
from phiwatch.archive.manifest import ObjectEntry
from phiwatch.archive.signer import SignerError
from phiwatch.batch import Batch, Counts
from phiwatch.config import Settings
from phiwatch.dedupe import SeenUids
from phiwatch.envelope import Body, InputError, RawRecord, discover, read_file_bodies
from phiwatch.hosts import collector
from phiwatch.logs import configure_logging
from phiwatch.model import AccessEvent, Alert, DeadLetter
from phiwatch.pipeline import Pipeline, _Derived
from phiwatch.privacy.explain import Explainer
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.pseudonym import PseudonymKeyError
from phiwatch.quarantine import BatchPoisoned
from phiwatch.sinks.local_files import LocalFileSink
from phiwatch.sources.activity_changes import Change, StartBuffer
from phiwatch.sources.activity_changes import Key as ChangeKey
from phiwatch.wiring import build_pipeline

log = structlog.get_logger("phiwatch.replay")

# Like the Functions trigger's maxEventBatchSize: archive objects per batch stay small.
DEFAULT_BATCH_BODIES = 100


@dataclass
class ReplaySummary:
    counts: Counts
    files: int
    late: int
    alerts: list[Alert]
    key_id: str
    archive_objects: int
    problems: list[str] = field(default_factory=list)  # unreadable or malformed files
    events_by_product: dict[str, int] = field(default_factory=dict)  # EventProduct -> events

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            **self.counts.as_dict(),
            "events_by_product": dict(sorted(self.events_by_product.items())),
            "late_events": self.late,
            "alert_list": [
                {
                    "AlertId": a.alert_id,
                    "RuleId": a.rule_id,
                    "Severity": a.severity,
                    "Title": a.title,
                }
                for a in self.alerts
            ],
            "archive_objects": self.archive_objects,
            "pseudonym_key_id": self.key_id,
            "problems": self.problems,
        }


def _stream_of(path: Path) -> str:
    return f"file-{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def _batches(path: Path, batch_bodies: int) -> Iterator[Batch]:
    stream = _stream_of(path)
    chunk: list[Body] = []
    first = 0
    for index, body in enumerate(read_file_bodies(path)):
        if not chunk:
            first = index
        chunk.append(body)
        if len(chunk) >= batch_bodies:
            yield Batch(stream, first, index, chunk)
            chunk = []
    if chunk:
        yield Batch(stream, first, first + len(chunk) - 1, chunk)


def _process(
    pipeline: Pipeline,
    batch: Batch,
    path: Path,
    problems: list[str],
    read_again: Callable[[], Batch] | None = None,
) -> None:
    """One batch; a poison batch is quarantined at once (a local retry would read the same
    bytes with the same code) and the replay goes on with the next one. `read_again` gives
    the batch with its bodies when `batch` is a worker's (which carries none)."""
    try:
        pipeline.process(batch)
    except BatchPoisoned as exc:
        if read_again is not None:
            batch = read_again()
        result = pipeline.quarantine(batch, exc, attempts=1)
        problems.append(
            f"{path}: bodies {batch.first}..{batch.last} failed ({exc.error}) and were set "
            f"aside: {result.counts.records} record(s) dead-lettered as batch-quarantined"
        )


def _privacy_problems(pipeline: Pipeline, given: dict[str, Path | None]) -> list[str]:
    """A privacy file named on the command line and refused whole is a failed replay (the
    log line says why): its events would be stamped as if the input were absent."""
    source = pipeline.directory
    loaded = set()
    if isinstance(source, FileDirectorySource):
        loaded = {r.source for r in source.reports}
    return [
        f"{path}: the {name} file was not loaded (see the log); its stamps are missing"
        for name, path in given.items()
        if path is not None and name not in loaded
    ]


class ReplayWorkerError(Exception):
    """A worker process failed or stopped: the replay fails rather than miss a stream."""


def replay(
    paths: list[Path],
    out_dir: Path,
    settings: Settings,
    *,
    batch_bodies: int = DEFAULT_BATCH_BODIES,
    on_file: Callable[[Path, int], None] | None = None,
    roster: Path | None = None,
    patients: Path | None = None,
    workers: int = 1,
) -> ReplaySummary:
    """Raises InputError when there is nothing to read at all. `roster` and `patients` are
    the privacy inputs as local files (docs/privacy.md). `workers` > 1 reads the files in
    that many processes (module docstring), with the same output; ReplayWorkerError when
    one of them fails."""
    files = discover(paths)
    sink = LocalFileSink(out_dir)
    # Built before any worker starts: a first run creates the keys the workers then read.
    pipeline = build_pipeline(
        settings, out_dir / "archive", [sink], roster_file=roster, patients_file=patients
    )
    problems = _privacy_problems(pipeline, {"roster": roster, "patients": patients})
    collector.tune()
    worker_objects = 0
    try:
        if _parallel_worth_it(files, workers):
            worker_objects = _replay_parallel(
                pipeline,
                files,
                _WorkerSetup(settings, out_dir, batch_bodies, roster, patients, _log_level()),
                min(workers, len(files)),
                problems,
                on_file,
            )
        else:
            _replay_serial(pipeline, files, batch_bodies, problems, on_file)
        pipeline.finish()
    finally:
        sink.close()
    if pipeline.totals.records == 0 and not problems:
        raise InputError("the input holds no records")
    archive = pipeline.archive
    conflicts = archive.derived_conflicts
    if conflicts:
        problems.append(
            f"the archive in {out_dir / 'archive'} already held different results for "
            f"{len(conflicts)} object(s) (first: {conflicts[0]}); it never overwrites, so "
            "replaying the same input with other settings or another phiwatch version "
            "needs a new --out directory"
        )
    return ReplaySummary(
        counts=pipeline.totals,
        files=len(files),
        late=pipeline.engine.late if pipeline.engine else 0,
        alerts=sorted(sink.alerts.values(), key=lambda a: (a.first_event_time, a.alert_id)),
        key_id=pipeline.pseudonymizer.key_id,
        archive_objects=archive.objects_written + archive.objects_unchanged + worker_objects,
        problems=problems,
        events_by_product=dict(sink.events_by_product),
    )


def _replay_serial(
    pipeline: Pipeline,
    files: list[Path],
    batch_bodies: int,
    problems: list[str],
    on_file: Callable[[Path, int], None] | None,
) -> None:
    for path in files:
        records_before = pipeline.totals.records
        undecodable_before = pipeline.totals.undecodable
        try:
            for batch in _batches(path, batch_bodies):
                _process(pipeline, batch, path, problems)
        except InputError as exc:
            problems.append(str(exc))
            continue
        _file_done(pipeline, path, records_before, undecodable_before, problems, on_file)


def _file_done(
    pipeline: Pipeline,
    path: Path,
    records_before: int,
    undecodable_before: int,
    problems: list[str],
    on_file: Callable[[Path, int], None] | None,
) -> None:
    read = pipeline.totals.records - records_before
    undecodable = pipeline.totals.undecodable - undecodable_before
    if read and undecodable == read:
        problems.append(f"{path}: malformed, no record in it could be read")
    if on_file:
        on_file(path, path.stat().st_size)


# ---------------------------------------------------------------------- worker processes

# Batches a worker may run ahead of this process: bounds the memory their results hold.
_AHEAD_BATCHES = 8
# How often a wait for a worker looks whether it is still alive.
_POLL_SECONDS = 0.5
# A live worker silent this long is stuck (a batch takes seconds, a worker's start with a
# large patient index about a minute): the replay fails rather than wait for ever.
_SILENT_SECONDS = 1800.0


def _parallel_worth_it(files: list[Path], workers: int) -> bool:
    """Workers need two files at least, and files of distinct content: two files with the
    same bytes are one stream (one manifest chain), which one process must read in order."""
    if workers <= 1 or len(files) < 2:
        return False
    try:
        streams = [_stream_of(path) for path in files]
    except OSError:
        return False  # an unreadable file: the one-process path reports it as it always has
    return len(set(streams)) == len(streams)


def _log_level() -> str:
    return logging.getLevelName(logging.getLogger().getEffectiveLevel())


@dataclass(frozen=True)
class _WorkerSetup:
    """What a worker needs to build its pipeline as this process built its own."""

    settings: Settings
    out_dir: Path
    batch_bodies: int
    roster: Path | None
    patients: Path | None
    log_level: str


@dataclass
class _WorkerBatch:
    """One batch as a worker derived it: the raw object is archived, nothing else is."""

    stream: str
    first: int
    last: int
    hour: datetime | None
    name: str
    raw: ObjectEntry
    raw_written: int  # 1 when the worker's put counted the raw object (written or unchanged)
    conflicts: list[IntegrityConflict]  # the raw put's, reported in this batch's alerts
    counts: Counts
    dead_lines: list[bytes] = field(default_factory=list)
    event_lines: list[bytes] = field(default_factory=list)
    arrivals: list[datetime | None] = field(default_factory=list)
    # (EventUid, seen before in this stream) in the order the dedupe set was asked.
    uids: list[tuple[str, bool]] = field(default_factory=list)
    # ("put", key, change, stamp) and ("take", key, answer), in the order made.
    buffer_ops: list[tuple[Any, ...]] = field(default_factory=list)
    # Per record, in order: how many of the questions, dead-letters and events are its own,
    # and its counts, so a record that is a duplicate here can be left out alone.
    outcomes: list[_Outcome] = field(default_factory=list)
    failed: bool = False  # the batch's own handling raised: this process does it again


# (dedupe questions, buffer ops, dead-letters, events, the record's counts as `_compact`
# writes them)
_Outcome = tuple[int, int, int, int, Counts | tuple[str, str] | None]


def _compact(own: Counts, events: int) -> Counts | tuple[str, str] | None:
    """A record's counts as little as they can be sent (every batch's records cross a
    pipe): None for a record that made its events, (code, reason) for one counted skip."""
    if own.undecodable or own.dead_letters:
        return own
    if not own.skipped:
        return None if own.event_records == 1 and own.events == events else own
    if own.event_records or own.events or len(own.skipped) != 1:
        return own
    ((code, n),) = own.skipped.items()
    return (code, own.examples[code]) if n == 1 and len(own.examples) == 1 else own


def _add_compact(counts: Counts, own: Counts | tuple[str, str] | None, events: int) -> None:
    if own is None:
        counts.event_records += 1
        counts.events += events
    elif isinstance(own, tuple):
        counts.skipped[own[0]] += 1
        counts.examples.setdefault(own[0], own[1])
    else:
        counts.add(own)


@dataclass
class _FileEnd:
    error: str | None = None  # the InputError that ended the file early, as one process says


@dataclass
class _WorkerFailure:
    path: str
    error: BaseException | None
    detail: str


class _AskedSeen(SeenUids):
    """The worker's dedupe set: never lets an id go, and records every question; whether an
    id was seen before is settled by this process's set, which spans every stream."""

    def __init__(self) -> None:
        super().__init__(max_entries=1 << 62)
        self.asked: list[tuple[str, bool]] = []

    def check_and_add(self, uid: str) -> bool:
        seen = super().check_and_add(uid)
        self.asked.append((uid, seen))
        return seen


class _AskedBuffer(StartBuffer):
    """The worker's Start buffer, recording what was put and what each take answered."""

    def __init__(self) -> None:
        super().__init__(max_entries=1 << 62)
        self.ops: list[tuple[Any, ...]] = []

    def put(self, key: ChangeKey, change: Change, stamp: float) -> None:
        # A copy: the caller's dict must not change under the record of it.
        self.ops.append(("put", key, copy.deepcopy(change), stamp))
        super().put(key, change, stamp)

    def take(self, key: ChangeKey) -> tuple[Change, tuple[str, ...]] | None:
        answer = super().take(key)
        self.ops.append(("take", key, copy.deepcopy(answer)))
        return answer


class _WorkerPipeline(Pipeline):
    """A worker's pipeline: `_normalise` as ever, and what each record produced noted."""

    outcomes: list[_Outcome]

    def _normalise(
        self,
        raw: RawRecord,
        ref: str,
        counts: Counts,
        dead: list[DeadLetter],
        explainer: Explainer | None = None,
    ) -> list[AccessEvent]:
        seen, buffer = self.seen, self.changes
        assert isinstance(seen, _AskedSeen) and isinstance(buffer, _AskedBuffer)
        asked, ops, letters = len(seen.asked), len(buffer.ops), len(dead)
        own = Counts()
        produced = super()._normalise(raw, ref, own, dead, explainer)
        counts.add(own)
        self.outcomes.append(
            (
                len(seen.asked) - asked,
                len(buffer.ops) - ops,
                len(dead) - letters,
                len(produced),
                _compact(own, len(produced)),
            )
        )
        return produced


def _worker_main(
    setup: _WorkerSetup, files: list[tuple[int, Path]], out: multiprocessing.Queue[Any]
) -> None:
    """A worker process: every file it is given, in order, each batch put on `out`."""
    configure_logging(setup.log_level)
    path = Path()
    try:
        pipeline = build_pipeline(
            setup.settings,
            setup.out_dir / "archive",
            roster_file=setup.roster,
            patients_file=setup.patients,
        )
        pipeline.engine = None  # detection is this process's parent's
        seen, buffer = _AskedSeen(), _AskedBuffer()
        pipeline.seen, pipeline.changes = seen, buffer
        pipeline.__class__ = _WorkerPipeline  # wiring builds a Pipeline; one hook differs
        assert isinstance(pipeline, _WorkerPipeline)
        collector.tune()  # a host of its own, like the first process (hosts/collector.py)
        archive = pipeline.archive
        for _, path in files:
            try:
                for batch in _batches(path, setup.batch_bodies):
                    counted = archive.objects_written + archive.objects_unchanged
                    records, hour, name, raw = pipeline._archive_raw(batch)
                    counted = archive.objects_written + archive.objects_unchanged - counted
                    conflicts = archive.take_integrity_conflicts()
                    counts = Counts(records=len(records))
                    seen.asked, buffer.ops, pipeline.outcomes = [], [], []
                    work = _WorkerBatch(
                        stream=batch.stream,
                        first=batch.first,
                        last=batch.last,
                        hour=hour,
                        name=name,
                        raw=raw,
                        raw_written=counted,
                        conflicts=conflicts,
                        counts=counts,
                    )
                    try:
                        derived = pipeline._derive(batch, records, raw, hour, counts)
                    except Exception:
                        seen.rollback()
                        buffer.rollback()
                        work.failed = True
                    else:
                        seen.commit(0.0, float("-inf"))
                        buffer.commit(float("-inf"))
                        work.dead_lines = derived.dead_lines
                        work.event_lines = derived.event_lines
                        work.arrivals = derived.arrivals
                        work.uids, work.buffer_ops = seen.asked, buffer.ops
                        work.outcomes = pipeline.outcomes
                    out.put(work)
            except InputError as exc:
                out.put(_FileEnd(str(exc)))
                continue
            out.put(_FileEnd())
    except BaseException as exc:
        out.put(_WorkerFailure(str(path), *_shippable(exc)))
        raise SystemExit(1) from None


# What the command reports as it does in one process; anything else only by its type, since
# its message may quote a record.
_REPORTED = (
    InputError,
    ArchiveIntegrityError,
    SignerError,
    PseudonymKeyError,
    RegistryError,
    OSError,
)


def _shippable(exc: BaseException) -> tuple[BaseException | None, str]:
    if isinstance(exc, _REPORTED):
        return exc, f"{type(exc).__name__}: {exc}"
    return None, type(exc).__name__


class _ParentPipeline(Pipeline):
    """The pipeline of a replay with workers: a worker's batch comes in decoded, its raw
    object archived and its records normalised; `process` does the rest as for any batch."""

    prepared: _WorkerBatch | None = None

    def _archive_raw(
        self, batch: Batch
    ) -> tuple[list[RawRecord], datetime | None, str, ObjectEntry]:
        work = self.prepared
        if work is None:
            return super()._archive_raw(batch)
        return [], work.hour, work.name, work.raw  # the count comes with _derive's

    def _derive(
        self,
        batch: Batch,
        records: list[RawRecord],
        raw: ObjectEntry,
        hour: datetime | None,
        counts: Counts,
    ) -> _Derived:
        work = self.prepared
        if work is None:
            return super()._derive(batch, records, raw, hour, counts)
        counts.add(work.counts)
        derived = _Derived(
            dead=[DeadLetter.model_validate_json(line) for line in work.dead_lines],
            events=[AccessEvent.model_validate_json(line) for line in work.event_lines],
            arrivals=work.arrivals,
        )
        engine = self.engine
        if engine:
            for event, arrival in zip(derived.events, derived.arrivals, strict=True):
                engine.process(event, arrival)
            engine.advance()
            derived.alerts = engine.changed_alerts()
        # Raw-put conflicts are found at the put, which was the worker's.
        self.archive.integrity_conflicts.extend(work.conflicts)
        derived.alerts += self._integrity_alerts(hour)
        derived.dead_lines = work.dead_lines
        derived.event_lines = work.event_lines
        derived.alert_lines = [m.to_json() for m in derived.alerts]
        return derived


# As Pipeline._normalise words a duplicate's skip (the workers' tests hold the two alike).
_DUPLICATE = "duplicate"
_DUPLICATE_REASON = "duplicate EventUid (delivered again)"


def _answers_hold(pipeline: Pipeline, work: _WorkerBatch) -> bool:
    """Ask this process's dedupe set and Start buffer, record by record, what the worker
    asked of its own. A record the worker read first but this process has seen (delivered
    in an earlier file too) becomes the duplicate skip it is here, its events and
    dead-letters left out of `work`. True when the batch is then as this process would
    derive it, its questions pending here as if it had; False when another answer differs
    (an id let go here, a Start from another file): the batch must be done here."""
    seen, buffer = pipeline.seen, pipeline.changes
    counts = Counts(records=work.counts.records)
    dead_lines: list[bytes] = []
    event_lines: list[bytes] = []
    arrivals: list[datetime | None] = []
    asked = op = letter = event = 0
    for n_asked, n_ops, n_dead, n_events, own in work.outcomes:
        duplicate = False
        for uid, was_seen in work.uids[asked : asked + n_asked]:
            is_seen = seen.check_and_add(uid)
            if is_seen and not was_seen:
                duplicate = True
            elif is_seen != was_seen:
                return False
        asked += n_asked
        ops = work.buffer_ops[op : op + n_ops]
        op += n_ops
        dead = slice(letter, letter + n_dead)
        letter += n_dead
        events = slice(event, event + n_events)
        event += n_events
        if duplicate:  # normalised by the worker, never reached here: nothing else of it
            counts.skipped[_DUPLICATE] += 1
            counts.examples.setdefault(_DUPLICATE, _DUPLICATE_REASON)
            continue
        for entry in ops:
            if entry[0] == "put":
                buffer.put(entry[1], entry[2], entry[3])
            elif buffer.take(entry[1]) != entry[2]:
                return False
        _add_compact(counts, own, n_events)
        dead_lines += work.dead_lines[dead]
        event_lines += work.event_lines[events]
        arrivals += work.arrivals[events]
    work.counts, work.dead_lines, work.event_lines, work.arrivals = (
        counts,
        dead_lines,
        event_lines,
        arrivals,
    )
    return True


class _Reader:
    """The bodies of one file's batches, read here only when a batch must be done here."""

    def __init__(self, path: Path, batch_bodies: int) -> None:
        self._batches = _batches(path, batch_bodies)

    def batch(self, first: int) -> Batch:
        for batch in self._batches:
            if batch.first == first:
                return batch
        raise ReplayWorkerError(f"a worker's batch at body {first} is not in the file")


def _replay_parallel(
    pipeline: Pipeline,
    files: list[Path],
    setup: _WorkerSetup,
    workers: int,
    problems: list[str],
    on_file: Callable[[Path, int], None] | None,
) -> int:
    """Files dealt round-robin to the workers, taken back in file order. Returns how many
    raw objects the workers' archive puts counted for the batches kept from them."""
    # Spawned, not forked: the caller may run threads (the progress bar) whose locks a
    # forked child would inherit held.
    context = multiprocessing.get_context("spawn")
    queues: list[multiprocessing.Queue[Any]] = [
        context.Queue(maxsize=_AHEAD_BATCHES) for _ in range(workers)
    ]
    indexed = list(enumerate(files))
    processes: list[BaseProcess] = [
        context.Process(
            target=_worker_main,
            args=(setup, indexed[n::workers], queues[n]),
            name=f"phiwatch-replay-{n}",
            daemon=True,
        )
        for n in range(workers)
    ]
    # Wiring builds a plain Pipeline; these two hooks are all a worker's batch changes.
    pipeline.__class__ = _ParentPipeline
    assert isinstance(pipeline, _ParentPipeline)
    tally = _Tally()
    try:
        for process in processes:
            process.start()
        for index, path in indexed:
            n = index % workers
            _take_file(pipeline, path, setup, queues[n], processes[n], problems, on_file, tally)
        for process in processes:
            process.join()
    finally:
        pipeline.prepared = None
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for q in queues:
            q.close()
            q.cancel_join_thread()
    # How much the workers saved: a batch done again here was read twice.
    log.info("replay workers", workers=workers, kept=tally.kept, done_again=tally.done_again)
    return tally.raw_objects


@dataclass
class _Tally:
    kept: int = 0  # batches taken as the worker derived them
    done_again: int = 0  # batches this process read and did itself
    raw_objects: int = 0  # archive puts the workers counted for the batches kept


def _take_file(
    pipeline: _ParentPipeline,
    path: Path,
    setup: _WorkerSetup,
    inbox: multiprocessing.Queue[Any],
    process: BaseProcess,
    problems: list[str],
    on_file: Callable[[Path, int], None] | None,
    tally: _Tally,
) -> None:
    """One file's batches from its worker, each kept or done again here (`_answers_hold`)."""
    records_before = pipeline.totals.records
    undecodable_before = pipeline.totals.undecodable
    reader: _Reader | None = None
    while True:
        item = _next(inbox, process, path)
        if isinstance(item, _FileEnd):
            if item.error is not None:
                problems.append(item.error)
                return
            break
        work: _WorkerBatch = item

        def read_again(first: int = work.first) -> Batch:
            nonlocal reader
            pipeline.prepared = None
            if reader is None:
                reader = _Reader(path, setup.batch_bodies)
            return reader.batch(first)

        if not work.failed and _answers_hold(pipeline, work):
            pipeline.prepared = work
            try:
                shell = Batch(work.stream, work.first, work.last, [])  # no bodies: none needed
                _process(pipeline, shell, path, problems, read_again)
            finally:
                pipeline.prepared = None
            tally.kept += 1
            tally.raw_objects += work.raw_written
        else:
            pipeline.seen.rollback()
            pipeline.changes.rollback()
            _process(pipeline, read_again(), path, problems)
            tally.done_again += 1
    _file_done(pipeline, path, records_before, undecodable_before, problems, on_file)


def _next(inbox: multiprocessing.Queue[Any], process: BaseProcess, path: Path) -> Any:
    """The worker's next item; ReplayWorkerError as soon as it has stopped without one, or
    when it has sent nothing for _SILENT_SECONDS."""
    waited = 0.0
    while True:
        try:
            item = inbox.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            waited += _POLL_SECONDS
            if process.is_alive() and waited < _SILENT_SECONDS:
                continue
            if process.is_alive():
                raise ReplayWorkerError(
                    f"the replay worker reading {path} sent nothing for {waited:.0f} s"
                ) from None
            try:  # what it put just before it stopped may still be on its way
                item = inbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                raise ReplayWorkerError(
                    f"the replay worker reading {path} stopped (exit code "
                    f"{process.exitcode}) without finishing it"
                ) from None
        if isinstance(item, _WorkerFailure):
            if item.error is not None:
                raise item.error
            raise ReplayWorkerError(f"the replay worker reading {item.path} failed: {item.detail}")
        return item
