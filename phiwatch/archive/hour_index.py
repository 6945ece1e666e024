"""Per-hour archive index: for every events object, a sidecar saying which of its lines
concern which patient (`PatientRef`) and which actor, so a report over months reads a few
lines instead of every event.

Layout and trust. Each events object `events/<yyyy/mm/dd/hh>/<batch>.jsonl.gz` gets
`index/<yyyy/mm/dd/hh>/<batch>.idx.gz`, written create-only with the batch and listed in the
batch's signed manifest like its data objects (kind `index`), so `archive verify` checks its
SHA-256 and a sidecar altered, swapped or deleted is a `FAIL` like any object. The sidecar
is only ever a pointer into signed data: `lookup` returns line numbers, the caller reads the
lines themselves, and compares the fields (see "Digests"). Archives written before sidecars
have none; their manifests are never touched (a redelivered old batch finds its seal and
writes nothing), they verify as before, and `lookup` falls back to reading every events
object of an hour whose objects have no sidecar.

Encoding (why this one). Gzip (the archive's codec, `codec.py`, ISA-L level 1 since issue
#18, zlib level 6 before; read whichever wrote it) of one JSON header line (format, the
events object's name and SHA-256, the line count) and then two fixed-width binary columns,
one 8-byte digest per events line: the patient column, then the actor column. Line numbers
are implicit (the position in the column), so the index stores 16 bytes per event before
compression (16 to 18 after, 6% of the archive, in bench/archive_index.py); an inverted list
of exact keys as sorted JSON lines would store the keys themselves (a 35-character `pr_`
pseudonym and a 36-character object id, which gzip cannot shrink much: about three times as
much, estimated, not measured) plus the line numbers, and a Bloom filter per hour would
still need postings beside it. A lookup is one `bytes.find` per column, in C, over the
decompressed sidecar: no parse, no new dependency (rbloom or pyroaring would add a compiled
wheel to speed up what is not the cost here, which is reading the objects).

Two facts about a sidecar follow the codec, unlike every other object's content: its
header names the events object's *compressed* bytes (SHA-256 as stored, which binds the
pointer to the very object it indexes), and its manifest entry's Merkle root is the one-leaf
tree of its own compressed bytes. A sidecar written again for the same events object (a
redelivery) is compared by content, so it names the bytes stored first.

Digests. SHA-256 over a domain tag and the key, cut to 8 bytes. Not keyed: a PatientRef is
already a keyed pseudonym and actor ids are in the events in clear, so the index reveals
nothing the events object does not. Two keys may share a digest (for one needle and one
object of n lines, about n × 2^-64): a hit is a candidate, and the caller checks the line it
reads (`read_events` does). A line without a patient (or actor) gets eight zero bytes, which
no lookup asks for.

Actor key: `ActorUserId` lowercased, else `ActingAppId` lowercased (an app acting as
itself), else none.

Hours are the archive's folder hours, i.e. arrival (enqueued) hours: an event arrives in
the hour of its TimeGenerated or later. `lookup(since, until)` reads the folders from
since's hour through until's hour; a caller that selects by TimeGenerated widens `until` by
the lateness it accepts and filters on the events it reads. Batches with no hour at all
(`undated/`: no enqueued time and no record time, so no event either) are not looked in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from phiwatch.archive import codec
from phiwatch.archive.archive import Archive, decode_lines
from phiwatch.archive.manifest import ObjectEntry
from phiwatch.archive.merkle import leaf_hash, root
from phiwatch.archive.store import ObjectMissing, ObjectStore, PutOutcome, sha256_hex
from phiwatch.model import AccessEvent

FORMAT = "phiwatch-hour-index/1"
KIND = "index"
PREFIX = f"{KIND}/"
SUFFIX = ".idx.gz"
EVENTS_SUFFIX = ".jsonl.gz"
WIDTH = 8
NONE = bytes(WIDTH)

Keys = tuple[str | None, str | None]  # (PatientRef, actor key) of one events line


def sidecar_name(events_name: str) -> str:
    """`events/<hour>/<batch>.jsonl.gz` → `index/<hour>/<batch>.idx.gz`."""
    if not events_name.startswith("events/") or not events_name.endswith(EVENTS_SUFFIX):
        raise ValueError(f"not an events object name: {events_name!r}")
    middle = events_name.removeprefix("events/").removesuffix(EVENTS_SUFFIX)
    return f"{PREFIX}{middle}{SUFFIX}"


def actor_key(user_id: str | None, app_id: str | None) -> str | None:
    if user_id:
        return user_id.lower()
    return app_id.lower() if app_id else None


def digest(column: str, key: str | None) -> bytes:
    if not key:
        return NONE
    # surrogatepass: a lone surrogate that reached an event must not break the index.
    data = f"phiwatch-index\x1f{column}\x1f{key}".encode("utf-8", "surrogatepass")
    found = hashlib.sha256(data).digest()[:WIDTH]
    return found if found != NONE else b"\x00" * (WIDTH - 1) + b"\x01"


def keys_of_events(events: Iterable[AccessEvent]) -> list[Keys]:
    return [(e.patient_ref, actor_key(e.actor_user_id, e.acting_app_id)) for e in events]


def _keys_of_document(document: Any) -> Keys:
    if not isinstance(document, dict):
        return (None, None)
    patient, user, app = (document.get(k) for k in ("PatientRef", "ActorUserId", "ActingAppId"))
    return (
        patient if isinstance(patient, str) else None,
        actor_key(
            user if isinstance(user, str) else None,
            app if isinstance(app, str) else None,
        ),
    )


def keys_of_lines(lines: Iterable[bytes]) -> list[Keys]:
    keys = []
    for line in lines:
        try:
            keys.append(_keys_of_document(orjson.loads(line)))
        except orjson.JSONDecodeError:
            keys.append((None, None))
    return keys


def encode(events_name: str, events_sha256: str, keys: Sequence[Keys]) -> bytes:
    return codec.compress(content(events_name, events_sha256, keys))


def content(events_name: str, events_sha256: str, keys: Sequence[Keys]) -> bytes:
    """The sidecar decompressed."""
    header = orjson.dumps(
        {"format": FORMAT, "lines": len(keys), "object": events_name, "sha256": events_sha256},
        option=orjson.OPT_SORT_KEYS,
    )
    patients = _column("patient", [p for p, _ in keys])
    actors = _column("actor", [a for _, a in keys])
    return header + b"\n" + patients + actors


def _column(column: str, values: list[str | None]) -> bytes:
    # A batch repeats its keys (one actor reads many records, a record is read many times):
    # each distinct key is hashed once.
    found: dict[str | None, bytes] = {}
    out = []
    for value in values:
        key = found.get(value)
        if key is None:
            key = found[value] = digest(column, value)
        out.append(key)
    return b"".join(out)


class Sidecar:
    """A decoded sidecar: its header and columns."""

    def __init__(self, data: bytes) -> None:
        text = codec.decompress(data)
        header, _, body = text.partition(b"\n")
        meta = orjson.loads(header)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a phiwatch hour index sidecar")
        self.object = str(meta["object"])
        self.sha256 = str(meta["sha256"])
        self.lines = int(meta["lines"])
        if len(body) != 2 * WIDTH * self.lines:
            raise ValueError("hour index sidecar is truncated")
        self._body = body

    def find(self, name: str, key: str) -> list[int]:
        """Line numbers whose `name` column holds the digest of `key` (candidates)."""
        needle = digest(name, key)
        start = 0 if name == "patient" else WIDTH * self.lines
        end = start + WIDTH * self.lines
        body = self._body
        found = []
        at = body.find(needle, start, end)
        while at >= 0:
            if (at - start) % WIDTH == 0:  # a match across two entries is no entry
                found.append((at - start) // WIDTH)
                at = body.find(needle, at + WIDTH, end)
            else:
                at = body.find(needle, at + 1, end)
        return found


def describe(name: str, data: bytes, lines: int, *, sha256: str | None = None) -> ObjectEntry:
    # The sidecar is not line-oriented: its Merkle root is the one-leaf tree of its bytes.
    return ObjectEntry(
        name=name,
        kind=KIND,
        sha256=sha256 if sha256 is not None else sha256_hex(data),
        bytes=len(data),
        records=lines,
        merkle_root=root([leaf_hash(data)]).hex(),
    )


def put_sidecar(archive: Archive, events_entry: ObjectEntry, keys: Sequence[Keys]) -> ObjectEntry:
    """Write the sidecar of the events object `events_entry` (create-only), `keys` being
    its lines' (`keys_of_events`), and return its manifest entry. When the object held other
    events than these (a redelivered batch whose derived output differed: the first write
    stands), the sidecar indexes what the object holds."""
    name = events_entry.name
    if name in archive.derived_conflicts:
        keys = keys_of_lines(decode_lines(archive.store.get(name)))
    text = content(name, events_entry.sha256, keys)
    index_name = sidecar_name(name)
    stored = archive.put_bytes(index_name, codec.compress(text), text)
    if stored.outcome is PutOutcome.CONFLICT:
        existing = archive.keep_first(index_name, stored.data)  # derived, like the events
        return describe(index_name, existing, Sidecar(existing).lines)
    # IDENTICAL may be the same sidecar from another codec: describe the bytes held.
    return describe(index_name, stored.data, len(keys), sha256=stored.sha256)


def _utc_naive(moment: datetime) -> datetime:
    # Hour folders are UTC; a naive time is taken as UTC already.
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _hours(since: datetime, until: datetime) -> Iterator[str]:
    hour = _utc_naive(since).replace(minute=0, second=0, microsecond=0)
    end = _utc_naive(until)
    while hour <= end:
        yield hour.strftime("%Y/%m/%d/%H")
        hour += timedelta(hours=1)


def _matches(document: Any, patient_ref: str | None, actor: str | None) -> bool:
    patient, actor_of = _keys_of_document(document)
    return (patient_ref is None or patient == patient_ref) and (
        actor is None or actor_of == actor.lower()
    )


def lookup(
    store: ObjectStore,
    *,
    patient_ref: str | None = None,
    actor: str | None = None,
    since: datetime,
    until: datetime,
) -> Iterator[tuple[str, list[int]]]:
    """(events object, line numbers) that may concern `patient_ref` and/or `actor` (both:
    lines matching both), hour folder by hour folder from since's hour through until's.

    Reads only the sidecars of those hours; an events object without a sidecar (written
    before sidecars) is read whole and its lines matched exactly. Line numbers count from 0
    (as in `RawRecordRef`); objects with no candidate line are not yielded. Sidecar hits are
    candidates (see "Digests"): compare the lines read, as `read_events` does."""
    if patient_ref is None and actor is None:
        raise ValueError("lookup needs a patient_ref or an actor")
    actor_needle = actor.lower() if actor is not None else None
    for hour in _hours(since, until):
        sidecars = set(store.list(f"{PREFIX}{hour}/"))
        for name in store.list(f"events/{hour}/"):
            if not name.endswith(EVENTS_SUFFIX):
                continue
            index_name = sidecar_name(name)
            if index_name in sidecars:
                lines = _from_sidecar(store, index_name, patient_ref, actor_needle)
            else:
                lines = _from_scan(store, name, patient_ref, actor_needle)
            if lines:
                yield name, lines


def _from_sidecar(
    store: ObjectStore, name: str, patient_ref: str | None, actor: str | None
) -> list[int]:
    sidecar = Sidecar(store.get(name))
    found: list[int] | None = None
    if patient_ref is not None:
        found = sidecar.find("patient", patient_ref)
    if actor is not None and found != []:
        by_actor = sidecar.find("actor", actor)
        found = by_actor if found is None else sorted(set(found) & set(by_actor))
    return found or []


def _from_scan(
    store: ObjectStore, name: str, patient_ref: str | None, actor: str | None
) -> list[int]:
    try:
        lines = decode_lines(store.get(name))
    except ObjectMissing:  # listed a moment ago: gone is `verify`'s to report
        return []
    found = []
    for number, line in enumerate(lines):
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if _matches(document, patient_ref, actor):
            found.append(number)
    return found


def read_events(
    store: ObjectStore,
    hits: Iterable[tuple[str, list[int]]],
    *,
    patient_ref: str | None = None,
    actor: str | None = None,
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(object, line number, event document) for the lines `hits` names that really match
    (a digest collision is dropped here)."""
    actor_needle = actor.lower() if actor is not None else None
    for name, numbers in hits:
        lines = decode_lines(store.get(name))
        for number in numbers:
            if number >= len(lines):
                continue
            document = orjson.loads(lines[number])
            if _matches(document, patient_ref, actor_needle):
                yield name, number, document


__all__ = [
    "FORMAT",
    "Keys",
    "Sidecar",
    "actor_key",
    "encode",
    "keys_of_events",
    "keys_of_lines",
    "lookup",
    "put_sidecar",
    "read_events",
    "sidecar_name",
]
