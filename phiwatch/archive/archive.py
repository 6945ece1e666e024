"""The audit archive: create-only objects plus a signed manifest chain per input stream.

Raw records are the evidence: the same name holding other raw records is an integrity
incident. The new bytes are kept under a `.conflict-<hash>` name (nothing is lost, nothing is
overwritten), and the conflict is reported so the pipeline raises an `archive-integrity`
alert. "Other" means other content: objects are compared by their decompressed bytes, so the
same records compressed by another codec (a batch archived before an upgrade and redelivered
after it) are the same object, and the bytes stored first stand. Events, dead-letters and
alerts are derived from raw records *and* from state (what was already seen, what detection
remembers), so a batch redelivered to another instance may derive slightly different
objects: the first write stands and the difference is counted.

Layout (one directory or Blob container; every name is written once and never changed):

    raw|deadletter|events|alerts/<yyyy/mm/dd/hh>/<batch>.jsonl.gz   the batch's objects
    manifests/<stream>/<yyyy/mm/dd/hh>/<index:012d>.json             the signed chain
    chain/<stream>/<index:012d>.json                                 index claims
    seals/<stream>/<batch>.json                                      batch → its manifest

(`undated` instead of the hour folder for a batch without one.) Several instances may extend
one stream's chain: an Event Hubs partition moves to another instance and back, or two
process it during a rebalance. Each `Archive` caches its streams' heads, so one of them may
append at an index another has taken already. The manifest's own create-only write cannot
stop that when the two batches fall in different hours (different folders), so an index is
taken by creating its claim first, and only the writer that created it writes the manifest.
The claim carries the manifest itself: if its writer stops in between, whoever reads that
stream's head next writes the manifest and points the batch's seal at it (a retry of the same
batch, on any instance, then finds its seal). Archives written before index claims have
none; they are read as before (`verify` does not require claims, and checks those it finds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog

from phiwatch.archive import codec
from phiwatch.archive.manifest import (
    CLAIMS,
    ChainLink,
    Claim,
    Manifest,
    ObjectEntry,
    claim_name,
    encode_claim,
    index_of,
    manifest_name,
    read_claim,
    sign_manifest,
    stream_slug,
)
from phiwatch.archive.merkle import root_of_lines
from phiwatch.archive.names import safe_name
from phiwatch.archive.signer import Signer
from phiwatch.archive.store import (
    ObjectMissing,
    ObjectStore,
    PutOutcome,
    UnsafeObject,
    put_many,
    sha256_hex,
)

KINDS = ("raw", "deadletter", "events", "alerts")
CHAIN_RETRIES = 5

log = structlog.get_logger("phiwatch.archive")


class ArchiveIntegrityError(Exception):
    """The archive cannot be extended without overwriting something."""


@dataclass(frozen=True, slots=True)
class IntegrityConflict:
    name: str  # the name that already held other bytes
    existing_sha256: str
    kept_as: str  # where the new bytes went


@dataclass(slots=True)
class _Head:
    index: int
    link: ChainLink
    batch: str


def object_name(kind: str, hour: datetime | None, batch_name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown archive kind {kind!r}")
    folder = hour.strftime("%Y/%m/%d/%H") if hour else "undated"
    return f"{kind}/{folder}/{safe_name(batch_name)}.jsonl.gz"


def seal_name(stream_slug: str, batch: str) -> str:
    """Pointer from a batch to the manifest that lists it (written once, after the manifest)."""
    return f"seals/{stream_slug}/{safe_name(batch)}.json"


def _content(lines: Sequence[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n" if lines else b""


def encode_lines(lines: Sequence[bytes]) -> bytes:
    return codec.compress_lines(lines)


def decode_lines(data: bytes) -> list[bytes]:
    """The lines of an object, whichever gzip wrote it (`codec.decompress`'s errors)."""
    text = codec.decompress(data)
    return text.split(b"\n")[:-1] if text else []


def describe(
    name: str, kind: str, data: bytes, lines: Sequence[bytes], *, sha256: str | None = None
) -> ObjectEntry:
    """`sha256`: of `data`, when the store has just computed it."""
    return ObjectEntry(
        name=name,
        kind=kind,
        sha256=sha256 if sha256 is not None else sha256_hex(data),
        bytes=len(data),
        records=len(lines),
        merkle_root=root_of_lines(lines).hex(),
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """What the archive holds under a name after a create-only put."""

    # CREATED; IDENTICAL: the same content (the same bytes, or the same decompressed bytes
    # from another codec); CONFLICT: other content.
    outcome: PutOutcome
    sha256: str  # of `data`
    data: bytes  # the bytes held: ours when CREATED, the first write's otherwise


@dataclass
class Archive:
    store: ObjectStore
    signer: Signer
    objects_written: int = 0
    objects_unchanged: int = 0
    manifests_written: int = 0
    # Chain indices found claimed by another writer (a stale cached head, a race, or an
    # earlier attempt at the same batch): the head was read again.
    chain_conflicts: int = 0
    # Manifests written from another writer's claim (it stopped between claim and manifest).
    manifests_completed: int = 0
    derived_conflicts: list[str] = field(default_factory=list)
    integrity_conflicts: list[IntegrityConflict] = field(default_factory=list)
    _heads: dict[str, _Head] = field(default_factory=dict)
    # While `seal` asks for a batch's sidecars: their puts, held to be made in the seal's
    # round of writes (see put_bytes); None otherwise.
    _held: list[tuple[str, bytes]] | None = None

    @property
    def location(self) -> str:
        return self.store.location

    def put(self, name: str, lines: Sequence[bytes], *, derived: bool = False) -> ObjectEntry:
        """Write one object create-only; returns the entry for what the archive holds."""
        kind = name.split("/", 1)[0]
        # The joined content only when a redelivery must be compared or named by it: a huge
        # body's objects are compressed line by line, never held joined as well.
        data = codec.compress_lines(lines)
        stored = self.put_bytes(name, data, lambda: _content(lines))
        if stored.outcome is not PutOutcome.CONFLICT:
            # IDENTICAL may hold other bytes of this content: describe those.
            return describe(name, kind, stored.data, lines, sha256=stored.sha256)
        if derived:
            existing = self.keep_first(name, stored.data)
            return describe(name, kind, existing, decode_lines(existing))
        # Named by the content's digest, not these bytes': the same records redelivered keep
        # to one copy whichever codec wrote it.
        content = _content(lines)
        digest = codec.name_digest(content)
        kept_as = f"{name.removesuffix('.jsonl.gz')}.conflict-{digest[:12]}.jsonl.gz"
        kept = self.put_bytes(kept_as, data, content)
        self.integrity_conflicts.append(IntegrityConflict(name, stored.sha256, kept_as))
        if kept.outcome is PutOutcome.CONFLICT:
            # Other content under this content's own name (planted): list what the records
            # are, so `verify` fails on the object that does not hold them.
            return describe(kept_as, kind, data, lines)
        return describe(kept_as, kind, kept.data, lines, sha256=kept.sha256)

    def put_bytes(self, name: str, data: bytes, content: bytes | Callable[[], bytes]) -> Stored:
        """`store.put_if_absent` of `data`, the gzip of `content` (or of what it returns,
        asked for only when a comparison needs it), counted in
        `objects_written` / `objects_unchanged`. A name holding other bytes is decompressed
        and compared: the same content is IDENTICAL (the first bytes stand), other content
        (or bytes that are no gzip) a CONFLICT, the caller's to settle (`keep_first` for a
        derived object)."""
        if self._held is not None:
            # A sidecar asked for by `seal`: written with the claim, manifest and seal (one
            # round of fsyncs), as if CREATED; `seal` makes good what turns out otherwise.
            self._held.append((name, data))
            return Stored(PutOutcome.CREATED, sha256_hex(data), data)
        outcome, digest = self.store.put_if_absent(name, data)
        return self._count(name, data, outcome, digest, content)

    def _count(
        self,
        name: str,
        data: bytes,
        outcome: PutOutcome,
        digest: str,
        content: bytes | Callable[[], bytes],
    ) -> Stored:
        if outcome is PutOutcome.CREATED:
            self.objects_written += 1
            return Stored(outcome, digest, data)
        if outcome is PutOutcome.IDENTICAL:
            self.objects_unchanged += 1
            return Stored(outcome, digest, data)
        try:
            existing = self.store.get(name)
        except (ObjectMissing, UnsafeObject):  # no object's bytes to compare
            return Stored(PutOutcome.CONFLICT, digest, b"")
        digest = sha256_hex(existing)  # the bytes compared, whatever the store saw before
        try:
            same = codec.decompress(existing) == (content() if callable(content) else content)
        except codec.DecodeError:
            same = False
        if not same:
            return Stored(PutOutcome.CONFLICT, digest, existing)
        self.objects_unchanged += 1
        return Stored(PutOutcome.IDENTICAL, digest, existing)

    def keep_first(self, name: str, held: bytes = b"") -> bytes:
        """A derived object written again with other content: the first write stands and the
        difference is counted; returns the bytes the archive holds (`held`, when the caller
        has read them already)."""
        self.derived_conflicts.append(name)
        return held or self.store.get(name)

    def take_integrity_conflicts(self) -> list[IntegrityConflict]:
        """Conflicts found since the last call, each reported once."""
        conflicts, self.integrity_conflicts = self.integrity_conflicts, []
        return conflicts

    def seal(
        self,
        *,
        stream: str,
        batch: str,
        first: int | None,
        last: int | None,
        hour: datetime | None,
        objects: Sequence[ObjectEntry],
        event_times: tuple[datetime, datetime] | None = None,
        kind: str = "batch",
        sidecars: Callable[[], Sequence[ObjectEntry]] | None = None,
    ) -> str:
        """Append the batch's manifest to its stream's chain; returns the manifest name.

        A batch is sealed once: a redelivered batch finds its seal and adds nothing, so the
        archive stays byte-identical however often a batch comes back.

        Index i is taken by creating its claim (create-only), then the manifest is written.
        A claim that exists already means another writer took i (this instance's cached head
        is stale, another raced it, or an earlier attempt at this batch got that far): the
        head is read again from the store, and the batch goes after it, or is found there.

        `sidecars` writes objects derived from the batch's own (the hour index) and returns
        their entries, listed with `objects`. It is called only once the batch is known not to
        be sealed: a batch sealed before sidecars existed gets none, so its manifest stays
        the whole truth about it and no object appears that no manifest lists.
        """
        slug = stream_slug(stream)
        batch = safe_name(batch)
        seal = seal_name(slug, batch)
        if (sealed := self._sealed(seal)) is not None:
            return sealed
        held: list[tuple[str, bytes]] = []
        if sidecars is not None:
            given = objects
            self._held = held
            try:
                objects = [*given, *sidecars()]
            finally:
                self._held = None
        for _ in range(CHAIN_RETRIES):
            cached = slug in self._heads
            head = self._head(slug)
            if head is not None and head.batch == batch:
                # Sealed before, but the seal pointer was not written: finish, don't repeat.
                self._write_seal(seal, batch, head.link)
                return head.link.name
            if not cached and (sealed := self._sealed(seal)) is not None:
                # Another instance sealed it since the check above, and others went on after
                # it. (The seal of the batch at index i is written before i + 1 is claimed.)
                return sealed
            index = head.index + 1 if head else 0
            manifest = Manifest(
                stream=slug,
                index=index,
                kind=kind,  # type: ignore[arg-type]
                batch=batch,
                first=first,
                last=last,
                first_event_time=event_times[0] if event_times else None,
                last_event_time=event_times[1] if event_times else None,
                objects=list(objects),
                previous=head.link if head else None,
                algorithm=self.signer.algorithm,
                key_id=self.signer.key_id,
            )
            content = sign_manifest(manifest, self.signer)
            claim = Claim(
                stream=slug,
                index=index,
                batch=batch,
                manifest=manifest_name(slug, hour, index),
                sha256=sha256_hex(content),
                content=content.decode(),
            )
            # Claim, manifest and seal pointer in one round of writes (their fsyncs side by
            # side), linked in that order: the manifest only once the claim is ours, the
            # seal only once the manifest is there.
            # The held sidecars go first: the claim is made only if each holds what its
            # entry in this manifest says.
            link = ChainLink(name=claim.manifest, sha256=claim.sha256)
            *sidecar_puts, claimed, written, _ = put_many(
                self.store,
                [
                    *held,
                    (claim_name(slug, index), encode_claim(claim)),
                    (claim.manifest, content),
                    (seal, _seal_pointer(batch, link)),
                ],
                stop_at_conflict=True,
            )
            for (name, data), put in zip(held, sidecar_puts, strict=True):
                if put is not None and put[0] is not PutOutcome.CONFLICT:
                    self._count(name, data, put[0], put[1], b"")
            if held:
                held = []
                if any(put is None or put[0] is PutOutcome.CONFLICT for put in sidecar_puts):
                    # A sidecar's name held other bytes (a redelivery whose events differ, or
                    # another codec's): put them one by one, compared by content, as always.
                    assert sidecars is not None
                    objects = [*given, *sidecars()]
                    continue
            if claimed is None or claimed[0] is PutOutcome.CONFLICT:
                self.chain_conflicts += 1
                self._heads.pop(slug, None)
                continue
            # Ours (CREATED; IDENTICAL: our own earlier attempt at this batch, byte for byte).
            head = self._write_claimed(claim, finishing=False, written=written)
            if head.batch == batch:
                return head.link.name
            # The manifest's name held another manifest (see _write_claimed): go after it.
        raise ArchiveIntegrityError(f"could not extend the manifest chain of {slug}")

    def batch_name(
        self, stream: str, batch: str, hour: datetime | None, raw_lines: Sequence[bytes]
    ) -> str:
        """The name to archive an input batch under, asked before any of it is written.

        `batch` itself, unless a batch of that name is sealed already with other raw records:
        then two inputs claim one position (a re-created hub or a Geo-DR failover restarted
        the sequence numbers under a name that carries no identity, or the archive was
        altered). Returning the old seal would leave the new records listed by no manifest,
        so the batch gets a name of its own (`<batch>.clash-<hash>`, sealed like any other)
        and the clash is an integrity conflict. A redelivery (the same raw records) keeps
        its name and adds nothing."""
        batch = safe_name(batch)
        sealed = self._sealed_raw(seal_name(stream_slug(stream), batch))
        if sealed is None or self._same_raw(sealed, raw_lines):
            return batch
        # Named by the content's digest: a clash redelivered (across a codec change too)
        # meets its own earlier name, seal and AlertId.
        digest = codec.name_digest(_content(raw_lines))
        clash = safe_name(f"{batch}.clash-{digest[:12]}")
        kept_as = object_name("raw", hour, clash)
        conflict = IntegrityConflict(sealed["name"], sealed["sha256"], kept_as)
        self.integrity_conflicts.append(conflict)
        return clash

    def _same_raw(self, sealed: dict[str, Any], raw_lines: Sequence[bytes]) -> bool:
        """Does the sealed raw entry list these records? By line count and Merkle root (the
        content the manifest signs), not by compressed bytes, which change with the codec."""
        if not sealed["sha256"]:
            return False
        records, merkle_root = sealed.get("records"), sealed.get("merkle_root")
        if isinstance(records, int) and isinstance(merkle_root, str):
            if records != len(raw_lines):
                return False
            return root_of_lines(raw_lines).hex() == merkle_root
        # An entry without them (never written so, but never trust a shape): the object the
        # manifest names, if it is what the manifest says, decompressed and compared.
        try:
            data = self.store.get(sealed["name"])
            return sha256_hex(data) == sealed["sha256"] and codec.decompress(data) == _content(
                raw_lines
            )
        except (ObjectMissing, UnsafeObject, *codec.DecodeError):
            return False

    def _sealed_raw(self, seal: str) -> dict[str, Any] | None:
        """The manifest entry of the raw object the batch sealed under `seal` (its `name`
        and `sha256` strings; `records` and `merkle_root` as the manifest has them); None
        when there is no such seal. A seal that does not lead to one raw object (unreadable,
        pointing at nothing) gets an empty `sha256`: other raw records, never reuse what
        cannot be checked."""
        unusable = {"name": seal, "sha256": ""}
        try:
            pointer = orjson.loads(self.store.get(seal))
        except ObjectMissing:
            return None
        except (ValueError, UnsafeObject):
            return unusable
        try:
            document = orjson.loads(self.store.get(pointer["manifest"]))
            (raw,) = [e for e in document["objects"] if e["kind"] == "raw"]
            return {**raw, "name": str(raw["name"]), "sha256": str(raw["sha256"])}
        # ValueError: not JSON, a name the store refuses, not exactly one raw object.
        except (ObjectMissing, UnsafeObject, ValueError, LookupError, TypeError):
            return unusable

    def _sealed(self, seal: str) -> str | None:
        try:
            return orjson.loads(self.store.get(seal))["manifest"]
        except ObjectMissing:
            return None

    def _write_seal(self, seal: str, batch: str, link: ChainLink) -> None:
        self.store.put_if_absent(seal, _seal_pointer(batch, link))

    def _write_claimed(
        self, claim: Claim, *, finishing: bool, written: tuple[PutOutcome, str] | None = None
    ) -> _Head:
        """Write the manifest `claim` holds (unless it is there already), make it the cached
        head, and point its batch's seal at it. `finishing`: another writer's claim.
        `written`: the manifest's put, made already with the claim and the batch's seal
        pointer (`seal`), which is then not written again."""
        sealed = written is not None and written[0] is not PutOutcome.CONFLICT
        outcome, digest = written or self.store.put_if_absent(
            claim.manifest, claim.content.encode()
        )
        link = ChainLink(name=claim.manifest, sha256=digest)
        if outcome is PutOutcome.CONFLICT:
            # The name holds a manifest this claim is not for: one written without a claim
            # (by a version from before index claims) or planted. The chain goes on from the
            # manifest stored, as it did before claims; `verify` reports the claim.
            log.warning(
                "archive manifest name taken by another manifest than its index claim",
                manifest=claim.manifest,
                claim=claim_name(claim.stream, claim.index),
            )
            batch = orjson.loads(self.store.get(claim.manifest)).get("batch", "")
            head = _Head(claim.index, link, batch)
        else:
            self.manifests_written += outcome is PutOutcome.CREATED
            if finishing and outcome is PutOutcome.CREATED:
                self.manifests_completed += 1
                log.info(
                    "archive manifest written from another writer's index claim",
                    manifest=claim.manifest,
                )
            head = _Head(claim.index, link, claim.batch)
        if head.batch and not sealed:  # first: nobody claims the next index before it exists
            self._write_seal(seal_name(claim.stream, head.batch), head.batch, link)
        self._heads[claim.stream] = head
        return head

    def _head(self, slug: str) -> _Head | None:
        """The stream's last chain position: cached, or else read from the store, where it is
        the highest index claimed or holding a manifest (archives from before index claims
        have manifests only). A claim whose manifest is missing gets it written here."""
        head = self._heads.get(slug)
        if head is not None:
            return head
        claims = _by_index(self.store.list(f"{CLAIMS}{slug}/"))
        manifests = _by_index(self.store.list(f"manifests/{slug}/"))
        if claims and (not manifests or max(claims) >= max(manifests)):
            name = claims[max(claims)]
            try:
                claim = read_claim(name, self.store.get(name))
            except ValueError as exc:
                raise ArchiveIntegrityError(str(exc)) from None
            return self._write_claimed(claim, finishing=True)
        if not manifests:
            return None
        index = max(manifests)
        latest = manifests[index]
        data = self.store.get(latest)
        head = _Head(
            index,
            ChainLink(name=latest, sha256=sha256_hex(data)),
            orjson.loads(data).get("batch", ""),
        )
        self._heads[slug] = head
        return head


def _seal_pointer(batch: str, link: ChainLink) -> bytes:
    return orjson.dumps({"batch": batch, "manifest": link.name, "sha256": link.sha256})


def _by_index(names: Iterable[str]) -> dict[int, str]:
    """Chain index → name (of manifests, or claims); where manifests forked, the last name."""
    found = {}
    for name in names:
        if name.endswith(".json"):
            with contextlib.suppress(ValueError):
                found[index_of(name)] = name
    return found
