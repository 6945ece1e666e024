"""decode → archive raw → normalise → detect → archive → emit, with per-record accounting.

Every record read ends as exactly one of: an event (one or more `AccessEvent`s), a
dead-letter with a reason, or a counted skip with a reason, and is in the raw archive before
anything leaves. A bad record never sinks its batch: the exceptions that escape `process`
are an archive or forwarder failure, because a batch that is not archived must not be
checkpointed (the host retries it), and `BatchPoisoned` for a failure in the batch's own
handling after the raw put, which the host retries a bounded number of times before it sets
the batch aside with `quarantine` (phiwatch/quarantine.py).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from phiwatch.archive.alerts import archive_alerts
from phiwatch.archive.archive import Archive, ObjectEntry, object_name
from phiwatch.archive.hour_index import keys_of_events, put_sidecar
from phiwatch.archive.integrity_alert import integrity_alert
from phiwatch.batch import Batch, BatchResult, Counts, Forwarder, Sink, emit_to
from phiwatch.dedupe import DEDUPE_HORIZON_SECONDS, SeenUids
from phiwatch.detect.engine import DetectionEngine
from phiwatch.envelope import MAX_RECORD_BYTES, RawRecord, decode_body
from phiwatch.model import AccessEvent, Alert, BatchHealth, DeadLetter
from phiwatch.privacy.directory import DirectorySource
from phiwatch.privacy.explain import Explainer
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.quarantine import RULE_ID as QUARANTINED
from phiwatch.quarantine import BatchPoisoned, quarantine_alert
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route, storage
from phiwatch.sources.activity_changes import StartBuffer
from phiwatch.sources.fields import in_event_range, parse_time
from phiwatch.sources.record import TIME_KEYS
from phiwatch.surrogates import without_surrogates

log = structlog.get_logger("phiwatch.pipeline")

# NormaliseContext's fields after pseudonymizer, raw_record_ref and changes, in order.
_CONTEXT_OPTIONS = ("fhir_trusted_audit_apps", "storage_patient_patterns", "storage_phi_containers")
assert tuple(f.name for f in dataclass_fields(NormaliseContext)) == (
    "pseudonymizer",
    "raw_record_ref",
    "changes",
    *_CONTEXT_OPTIONS,
)

# Records in a batch from which its events share their pydantic field sets (issue #18).
SHARE_FIELDS_FROM = 10_000


class Pipeline:
    def __init__(
        self,
        *,
        pseudonymizer: Pseudonymizer,
        engine: DetectionEngine | None,
        archive: Archive,
        sinks: Sequence[Sink] = (),
        max_record_bytes: int = MAX_RECORD_BYTES,
        forwarder: Forwarder | None = None,
        fhir_trusted_audit_apps: frozenset[str] = frozenset(),
        storage_patient_patterns: Sequence[str] = (),
        storage_phi_containers: Sequence[str] = (),
        directory: DirectorySource | None = None,
        allow_applications: frozenset[str] = frozenset(),
    ) -> None:
        """With an engine, detections run in this process (local replay, one partition);
        with a forwarder instead, events go to the `detect` stage (two-stage scaling).
        With a directory (the privacy inputs) or allow-listed applications, every event is
        stamped with what they say of it (phiwatch/privacy/explain.py)."""
        if (engine is None) == (forwarder is None):
            raise ValueError("a pipeline needs exactly one of engine and forwarder")
        self.pseudonymizer = pseudonymizer
        # What normalisers read from settings, prepared once (phiwatch/sources/base.py).
        self._context_options: dict[str, Any] = {
            "fhir_trusted_audit_apps": frozenset(a.lower() for a in fhir_trusted_audit_apps),
            "storage_patient_patterns": storage.compile_patient_patterns(
                tuple(storage_patient_patterns)
            ),
            "storage_phi_containers": storage.parse_phi_containers(tuple(storage_phi_containers)),
        }
        # The same, in NormaliseContext's field order after `changes` (see _normalise).
        self._options = tuple(self._context_options[name] for name in _CONTEXT_OPTIONS)
        self.directory = directory
        self.allow_applications = frozenset(a.lower() for a in allow_applications)
        self.engine = engine
        self.forwarder = forwarder
        self._dedupe_clock = float("-inf")
        self.archive = archive
        self.sinks = list(sinks)
        self.max_record_bytes = max_record_bytes
        self.seen = SeenUids()
        # Activity Log Start records' changes, for their terminal records: committed and
        # rolled back with the dedupe set, so a retried batch derives the same events.
        self.changes = StartBuffer()
        self.totals = Counts()
        self.alert_ids: dict[str, str] = {}  # AlertId → RuleId, for distinct counts
        self.sink_failures = 0
        self._last_stream: str | None = None
        self._last_batch = ""

    # ------------------------------------------------------------------ batches

    def process(self, batch: Batch) -> BatchResult:
        """Decode, archive, normalise, detect, archive, seal, emit one batch.

        State (the dedupe set, which alerts changed) is committed only once every archive
        write has succeeded, so a batch that fails and is retried derives the same output.
        Detections ignore an event they already hold, so re-observing is harmless.
        """
        records, hour, name, raw = self._archive_raw(batch)
        counts = Counts(records=len(records))
        engine = self.engine
        late_before = engine.late if engine else 0
        try:
            try:
                derived = self._derive(batch, records, raw, hour, counts)
            except Exception as exc:
                # Not the archive nor the forwarder: the batch's own content. A retry is
                # likely to fail alike; the host counts these and may quarantine the batch.
                log.error(
                    "batch failed after its raw put",
                    batch=batch.name,
                    error=type(exc).__name__,
                )
                raise BatchPoisoned(batch.name, exc) from exc
            entries = [raw]
            entries += self._put_lines("deadletter", hour, name, derived.dead_lines)
            event_entries = self._put_lines("events", hour, name, derived.event_lines)
            entries += event_entries
            entries += self._put_lines("alerts", hour, name, derived.alert_lines)
            events = derived.events
            times = [e.time_generated for e in events]
            archive = self.archive
            self.archive.seal(
                stream=batch.stream,
                batch=name,
                first=batch.first,
                last=batch.last,
                hour=hour,
                objects=entries,
                event_times=(min(times), max(times)) if times else None,
                # The hour index of the events object (archive/hour_index.py), sealed with it.
                sidecars=lambda: [
                    put_sidecar(archive, e, keys_of_events(events)) for e in event_entries
                ],
            )
            if self.forwarder and events:
                self.forwarder.forward(
                    list(zip(events, derived.arrivals, strict=True)), batch.stream
                )
        except BaseException:
            self.seen.rollback()
            self.changes.rollback()
            raise
        if times:
            self._dedupe_clock = max(self._dedupe_clock, max(times).timestamp())
        self._commit()
        self._last_stream = batch.stream
        self._last_batch = name
        late = (engine.late if engine else 0) - late_before
        alerts = derived.alerts
        health = _health(batch, counts, events, alerts, late)
        return self._emit(BatchResult(counts, events, alerts, derived.dead, late, health))

    def _archive_raw(
        self, batch: Batch
    ) -> tuple[list[RawRecord], datetime | None, str, ObjectEntry]:
        """Decode a batch and put its raw records, before anything else is derived. The
        name is batch.name, unless that name is sealed with other raw records already (an
        integrity conflict): then one of its own."""
        records = [
            r
            for body in batch.bodies
            for r in decode_body(body, max_record_bytes=self.max_record_bytes)
        ]
        hour = _batch_hour(batch, records)
        raw_lines = [_raw_line(r) for r in records]
        name = self.archive.batch_name(batch.stream, batch.name, hour, raw_lines)
        return records, hour, name, self.archive.put(object_name("raw", hour, name), raw_lines)

    def _derive(
        self,
        batch: Batch,
        records: list[RawRecord],
        raw: ObjectEntry,
        hour: datetime | None,
        counts: Counts,
    ) -> _Derived:
        """Everything a batch derives from its records, serialised: no archive write yet."""
        engine = self.engine
        derived = _Derived()
        explainer = self._explainer()
        # Only a big batch shares its events' field sets: about 1 us an event, for memory.
        fields_sets: dict[frozenset[str], set[str]] | None = (
            {} if len(records) >= SHARE_FIELDS_FROM else None
        )
        for index, record in enumerate(records):
            produced = self._normalise(
                record, f"{raw.name}#{index}", counts, derived.dead, explainer
            )
            # Its parsed value is not needed again: a huge body's records are never all
            # held parsed at once (issue #18).
            record.release()
            for event in produced:
                if fields_sets is not None:
                    _share_fields_set(event, fields_sets)
                # Arrival (enqueued time) stamps DetectedAt; a local file has none.
                if engine:
                    engine.process(event, record.enqueued_time)
                derived.arrivals.append(record.enqueued_time)
            derived.events.extend(produced)
        if engine:
            engine.advance()
            derived.alerts = engine.changed_alerts()
        derived.alerts += self._integrity_alerts(hour)
        derived.dead_lines = [m.to_json() for m in derived.dead]
        derived.event_lines = [m.to_json() for m in derived.events]
        derived.alert_lines = [m.to_json() for m in derived.alerts]
        return derived

    def quarantine(self, batch: Batch, failure: BatchPoisoned, attempts: int) -> BatchResult:
        """Set a poison batch aside: archive it as dead-letters, sealed like any batch, with a
        `batch-quarantined` alert, so the host can return and its partition move on.

        Derives nothing from the records' content (that is what failed): each is one
        dead-letter pointing at its raw copy. Detection state is left as it is (no alert it
        holds was archived by the failed attempts, so none is committed here)."""
        records, hour, name, raw = self._archive_raw(batch)
        reason = f"batch set aside after {attempts} failed attempts ({failure.error})"
        counts = Counts(records=len(records))
        counts.dead_letters[QUARANTINED] = len(records)
        counts.examples[QUARANTINED] = reason
        dead = [
            _serialisable(
                DeadLetter(
                    record_hash=r.record_hash,
                    reason_code=QUARANTINED,
                    reason=reason,
                    source_stream=r.stream,
                    position=r.position,
                    received_at=r.enqueued_time,
                    raw_record_ref=f"{raw.name}#{index}",
                )
            )
            for index, r in enumerate(records)
        ]
        alert = quarantine_alert(name, raw.name, len(records), failure.error, attempts, hour)
        alerts = [alert, *self._integrity_alerts(hour)]
        entries = [raw]
        entries += self._put_derived("deadletter", hour, name, dead)
        entries += self._put_derived("alerts", hour, name, alerts)
        self.archive.seal(
            stream=batch.stream,
            batch=name,
            first=batch.first,
            last=batch.last,
            hour=hour,
            objects=entries,
        )
        log.error(
            "batch quarantined",
            batch=batch.name,
            records=len(records),
            attempts=attempts,
            error=failure.error,
        )
        self._last_stream = batch.stream
        self._last_batch = name
        health = _health(batch, counts, [], alerts, 0)
        return self._emit(BatchResult(counts, [], alerts, dead, 0, health))

    def finish(self) -> BatchResult:
        """End of a local replay: settle pending rules, archive and emit what they raise."""
        if self.engine is None:
            return self._emit(BatchResult.empty())
        self.engine.finish()
        alerts = self.engine.changed_alerts()
        if alerts and self._last_stream is not None:
            # One settle per replay, named after the batch it follows: the same input gives
            # the same name, so a replay with other settings meets its own earlier output.
            archive_alerts(
                self.archive,
                stream=self._last_stream,
                base=self._last_batch,
                alerts=alerts,
                settle=True,
            )
        self._commit()
        return self._emit(BatchResult.of_alerts(alerts))

    def _put_lines(
        self, kind: str, hour: datetime | None, batch_name: str, lines: list[bytes]
    ) -> list[ObjectEntry]:
        if not lines:
            return []
        return [self.archive.put(object_name(kind, hour, batch_name), lines, derived=True)]

    def _put_derived(
        self,
        kind: str,
        hour: datetime | None,
        batch_name: str,
        models: Sequence[AccessEvent | Alert | DeadLetter],
    ) -> list[ObjectEntry]:
        return self._put_lines(kind, hour, batch_name, [m.to_json() for m in models])

    def _explainer(self) -> Explainer | None:
        """The stamps' inputs for one batch: the directory in force when it starts, so one
        batch is judged against one roster even if a reload lands mid-batch."""
        directory = self.directory.current() if self.directory is not None else None
        if directory is None and not self.allow_applications:
            return None
        return Explainer(directory, self.allow_applications)

    def _integrity_alerts(self, hour: datetime | None) -> list[Alert]:
        conflicts = self.archive.take_integrity_conflicts()
        for conflict in conflicts:
            log.error("archive integrity conflict", object=conflict.name, kept_as=conflict.kept_as)
        return [integrity_alert(c, hour) for c in conflicts]

    def _commit(self) -> None:
        if self.engine is None:
            # No watermark here: the newest event time is enough to let old uids go (a
            # duplicate that slips through is dropped by the detections' own uid check).
            clock = self._dedupe_clock
            self.seen.commit(clock, clock - DEDUPE_HORIZON_SECONDS)
            self.changes.commit(clock)
            return
        self.engine.commit()
        watermark = self.engine.watermark
        self.seen.commit(watermark, watermark - self.engine.lateness - DEDUPE_HORIZON_SECONDS)
        self.changes.commit(watermark - self.engine.lateness)

    def _emit(self, result: BatchResult) -> BatchResult:
        counts = result.counts
        for alert in result.alerts:
            if alert.alert_id not in self.alert_ids:
                self.alert_ids[alert.alert_id] = alert.rule_id
                counts.alerts[alert.rule_id] += 1
        self.sink_failures += emit_to(self.sinks, result)
        self.totals.add(counts)
        log.info(
            "batch processed",
            batch=result.health.batch if result.health else "end-of-input",
            records=counts.records,
            events=counts.events,
            dead_letters=sum(counts.dead_letters.values()),
            skipped=sum(counts.skipped.values()),
            alerts=len(result.alerts),
            late=result.late,
        )
        return result

    # ------------------------------------------------------------------ records

    def _normalise(
        self,
        raw: RawRecord,
        ref: str,
        counts: Counts,
        dead: list[DeadLetter],
        explainer: Explainer | None = None,
    ) -> list[AccessEvent]:
        def reject(code: str, reason: str, category: str | None = None) -> None:
            letter = _serialisable(
                DeadLetter(
                    record_hash=raw.record_hash,
                    reason_code=code,
                    reason=reason,
                    source_stream=raw.stream,
                    position=raw.position,
                    source_category=category,
                    received_at=raw.enqueued_time,
                    raw_record_ref=ref,
                )
            )
            counts.dead_letters[code] += 1
            counts.examples.setdefault(code, letter.reason)
            dead.append(letter)

        if raw.error_code is not None:
            counts.undecodable += 1
            reject(raw.error_code, raw.error or raw.error_code)
            return []
        uid = raw.content_uid()
        if self.seen.check_and_add(uid):
            counts.skipped["duplicate"] += 1
            counts.examples.setdefault("duplicate", "duplicate EventUid (delivered again)")
            return []
        record = Record(raw.value, uid)
        category = record.category or None
        normaliser = None
        try:
            normaliser = route(record)
            # Positional, in the context's field order: no keyword merge per record.
            context = NormaliseContext(self.pseudonymizer, ref, self.changes, *self._options)
            produced = normaliser.normalise(record, context)
            if explainer is not None:
                # Before the first serialisation: the archive writes the cached bytes.
                produced = [explainer.stamp(event) for event in produced]
            produced = [_serialisable(event) for event in produced]
        except RecordSkipped as skip:
            counts.skipped[skip.code] += 1
            if skip.code not in counts.examples:  # the first reason only: repaired once
                counts.examples[skip.code] = without_surrogates(skip.reason)
            return []
        except RecordRejected as rejected:
            reject(rejected.code, rejected.reason, category)
            return []
        except ValidationError as exc:
            reject("invalid-field", _validation_reason(exc), category)
            return []
        except PydanticSerializationError:
            reject("invalid-text", "a field cannot be written as JSON text", category)
            return []
        except Exception as exc:  # a normaliser bug must cost one record, not the batch
            name = getattr(normaliser, "name", "routing")
            log.error("normaliser failed", normaliser=name, error=type(exc).__name__)
            reject("normaliser-error", f"{name} normaliser failed ({type(exc).__name__})", category)
            return []
        counts.event_records += 1
        counts.events += len(produced)
        return produced


@dataclass
class _Derived:
    """What one batch derives before any of it is archived."""

    dead: list[DeadLetter] = field(default_factory=list)
    events: list[AccessEvent] = field(default_factory=list)
    arrivals: list[datetime | None] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead_lines: list[bytes] = field(default_factory=list)
    event_lines: list[bytes] = field(default_factory=list)
    alert_lines: list[bytes] = field(default_factory=list)


_M = TypeVar("_M", AccessEvent, DeadLetter)
# The attribute model.py's `_Wire` caches its JSON under (a cached_property).
_JSON_CACHE = "_json"


def _serialisable(model: _M) -> _M:
    """`model` once it serialises: a lone surrogate the envelope could not see (inside
    JSON held in a string, such as `properties`) becomes U+FFFD (phiwatch/surrogates.py).
    Raises PydanticSerializationError when that is not the cause."""
    try:
        # Cached where `to_json` keeps it (the model's `_json`): the archive writes these very
        # bytes. Set directly, without cached_property's lock: this runs once per event.
        model.__dict__[_JSON_CACHE] = model.__pydantic_serializer__.to_json(model, by_alias=True)
    except PydanticSerializationError:
        repaired = type(model).model_validate(without_surrogates(model.model_dump()))
        repaired.to_json()
        return repaired
    return model


def _validation_reason(exc: ValidationError) -> str:
    # Field names only: the offending value may be PHI.
    fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
    return "field has the wrong type or value: " + ", ".join(fields)


def _share_fields_set(event: AccessEvent, shared: dict[frozenset[str], set[str]]) -> None:
    """Events of one batch share one `__pydantic_fields_set__` per distinct set of fields.

    Each is a set of about 26 names, 2.2 KiB, a quarter of what an event holds: for the
    64,000 events of one 100,000-record body, 140 MB (issue #18). Safe to share: the models
    are frozen, and pydantic copies the set before it changes one (`model_copy`)."""
    own = event.__pydantic_fields_set__
    key = frozenset(own)
    common = shared.setdefault(key, own)
    if common is not own:
        object.__setattr__(event, "__pydantic_fields_set__", common)


def _raw_line(record: RawRecord) -> bytes:
    """`{"Stream", "Position", "RecordHash", "Raw" (or "RawBase64")}` as orjson writes that
    dict, joined from each value's own JSON: no dict per record, and the line's bytes made
    once at their size (orjson's buffer, sized for the worst case of escaping, would hold
    about 8 KiB for a 1 KiB record while a huge body's raw object waits, issue #18)."""
    dumps = orjson.dumps
    head = _STREAM_HEADS.get(record.stream)
    if head is None:
        head = b'{"Stream":' + dumps(record.stream) + b',"Position":'
        if len(_STREAM_HEADS) >= _MAX_STREAM_HEADS:
            _STREAM_HEADS.clear()
        _STREAM_HEADS[record.stream] = head
    raw = record.raw
    try:
        text = dumps(raw.decode("utf-8"))
        field = b',"Raw":'
    except UnicodeDecodeError:
        text = b'"' + base64.b64encode(raw) + b'"'
        field = b',"RawBase64":'
    # One join: the line's bytes copied once. The hash is hex, its JSON itself in quotes.
    return b"".join(
        (
            head,
            dumps(record.position),
            b',"RecordHash":"',
            record.record_hash.encode("ascii"),
            b'"',
            field,
            text,
            b"}",
        )
    )


# A batch's records share a stream (a partition or a file): its line start is made once.
_STREAM_HEADS: dict[str, bytes] = {}
_MAX_STREAM_HEADS = 1024


def _health(
    batch: Batch, counts: Counts, events: list[AccessEvent], alerts: list[Alert], late: int
) -> BatchHealth:
    last_seen: dict[str, datetime] = {}
    for event in events:
        seen = last_seen.get(event.source_category)
        if seen is None or event.time_generated > seen:
            last_seen[event.source_category] = event.time_generated
    arrived = [b.enqueued_time for b in batch.bodies if b.enqueued_time is not None]
    when = max(arrived, default=None) or max(last_seen.values(), default=None)
    return BatchHealth(
        time_generated=when or datetime.fromtimestamp(0, tz=UTC),
        batch=batch.name,
        stream=batch.stream,
        records=counts.records,
        events=counts.events,
        dead_letters=sum(counts.dead_letters.values()),
        skipped=sum(counts.skipped.values()),
        late=late,
        alerts=len(alerts),
        dead_letter_reasons=dict(counts.dead_letters),
        skip_reasons=dict(counts.skipped),
        source_last_seen=last_seen,
    )


def _batch_hour(batch: Batch, records: list[RawRecord]) -> datetime | None:
    """The hour folder of a batch: first enqueued time, else the first record's own time."""
    for body in batch.bodies:
        if body.enqueued_time is not None:
            return body.enqueued_time
    for record in records:
        if isinstance(record.value, dict):
            # The keys the normalisers read the event time from (any case), in their order.
            value = Record(record.value, "").get(*TIME_KEYS)
            parsed = parse_time(value) if value is not None else None
            # A record out of range is dead-lettered; it must not name the folder.
            if parsed is not None and in_event_range(parsed):
                return parsed
    return None
