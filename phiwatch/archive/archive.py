"""The audit archive: create-only objects plus a signed manifest chain per input stream.

Raw records are the evidence: the same name holding other raw bytes is an integrity
incident. The new bytes are kept under a `.conflict-<hash>` name (nothing is lost, nothing is
overwritten), and the conflict is reported so the pipeline raises an `archive-integrity`
alert. Events, dead-letters and alerts are derived from raw records *and* from state (what
was already seen, what detection remembers), so a batch redelivered to another instance may
derive slightly different objects: the first write stands and the difference is counted.

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
import gzip
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
import structlog

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
from phiwatch.archive.merkle import leaf_hash, root
from phiwatch.archive.names import safe_name
from phiwatch.archive.signer import Signer
from phiwatch.archive.store import (
    ObjectMissing,
    ObjectStore,
    PutOutcome,
    UnsafeObject,
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


# Level 3 compresses diagnostic JSON about 11x at 2.2x the speed of level 6 (about 15x): on
# immutable cool storage, CPU per record costs more than the extra 30% of bytes.
GZIP_LEVEL = 3


def encode_lines(lines: Sequence[bytes]) -> bytes:
    # mtime=0: identical content gives identical bytes, so redelivery is provably a no-op.
    return gzip.compress(b"".join(line + b"\n" for line in lines), GZIP_LEVEL, mtime=0)


def decode_lines(data: bytes) -> list[bytes]:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        text = fh.read()
    return text.split(b"\n")[:-1] if text else []


def describe(name: str, kind: str, data: bytes, lines: Sequence[bytes]) -> ObjectEntry:
    return ObjectEntry(
        name=name,
        kind=kind,
        sha256=sha256_hex(data),
        bytes=len(data),
        records=len(lines),
        merkle_root=root([leaf_hash(line) for line in lines]).hex(),
    )


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

    @property
    def location(self) -> str:
        return self.store.location

    def put(self, name: str, lines: Sequence[bytes], *, derived: bool = False) -> ObjectEntry:
        """Write one object create-only; returns the entry for what the archive holds."""
        kind = name.split("/", 1)[0]
        data = encode_lines(lines)
        outcome, digest = self.put_bytes(name, data)
        if outcome is not PutOutcome.CONFLICT:
            return describe(name, kind, data, lines)
        if derived:
            existing = self.keep_first(name)
            return describe(name, kind, existing, decode_lines(existing))
        kept_as = f"{name.removesuffix('.jsonl.gz')}.conflict-{sha256_hex(data)[:12]}.jsonl.gz"
        self.store.put_if_absent(kept_as, data)
        self.integrity_conflicts.append(IntegrityConflict(name, digest, kept_as))
        return describe(kept_as, kind, data, lines)

    def put_bytes(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        """`store.put_if_absent`, counted in `objects_written` / `objects_unchanged`; a
        conflict is the caller's to settle (`keep_first` for a derived object)."""
        outcome, digest = self.store.put_if_absent(name, data)
        if outcome is PutOutcome.CREATED:
            self.objects_written += 1
        elif outcome is PutOutcome.IDENTICAL:
            self.objects_unchanged += 1
        return outcome, digest

    def keep_first(self, name: str) -> bytes:
        """A derived object written again with other bytes: the first write stands and the
        difference is counted; returns the bytes the archive holds."""
        self.derived_conflicts.append(name)
        return self.store.get(name)

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
        if sidecars is not None:
            objects = [*objects, *sidecars()]
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
            outcome, _ = self.store.put_if_absent(claim_name(slug, index), encode_claim(claim))
            if outcome is PutOutcome.CONFLICT:
                self.chain_conflicts += 1
                self._heads.pop(slug, None)
                continue
            # Ours (CREATED; IDENTICAL: our own earlier attempt at this batch, byte for byte).
            head = self._write_claimed(claim, finishing=False)
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
        if sealed is None:
            return batch
        digest = sha256_hex(encode_lines(raw_lines))
        if sealed[1] == digest:
            return batch
        clash = safe_name(f"{batch}.clash-{digest[:12]}")
        kept_as = object_name("raw", hour, clash)
        self.integrity_conflicts.append(IntegrityConflict(sealed[0], sealed[1], kept_as))
        return clash

    def _sealed_raw(self, seal: str) -> tuple[str, str] | None:
        """(name, SHA-256) of the raw object the batch sealed under `seal` holds; None when
        there is no such seal. A seal that does not lead to one raw object (unreadable,
        pointing at nothing) counts as other raw records: never reuse what cannot be
        checked."""
        try:
            pointer = orjson.loads(self.store.get(seal))
        except ObjectMissing:
            return None
        except (ValueError, UnsafeObject):
            return (seal, "")
        try:
            document = orjson.loads(self.store.get(pointer["manifest"]))
            (raw,) = [e for e in document["objects"] if e["kind"] == "raw"]
            return (str(raw["name"]), str(raw["sha256"]))
        # ValueError: not JSON, a name the store refuses, not exactly one raw object.
        except (ObjectMissing, UnsafeObject, ValueError, LookupError, TypeError):
            return (seal, "")

    def _sealed(self, seal: str) -> str | None:
        try:
            return orjson.loads(self.store.get(seal))["manifest"]
        except ObjectMissing:
            return None

    def _write_seal(self, seal: str, batch: str, link: ChainLink) -> None:
        pointer = {"batch": batch, "manifest": link.name, "sha256": link.sha256}
        self.store.put_if_absent(seal, orjson.dumps(pointer))

    def _write_claimed(self, claim: Claim, *, finishing: bool) -> _Head:
        """Write the manifest `claim` holds (unless it is there already), make it the cached
        head, and point its batch's seal at it. `finishing`: another writer's claim."""
        outcome, digest = self.store.put_if_absent(claim.manifest, claim.content.encode())
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
        if head.batch:  # first: nobody claims the next index before this seal exists
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


def _by_index(names: Iterable[str]) -> dict[int, str]:
    """Chain index → name (of manifests, or claims); where manifests forked, the last name."""
    found = {}
    for name in names:
        if name.endswith(".json"):
            with contextlib.suppress(ValueError):
                found[index_of(name)] = name
    return found
