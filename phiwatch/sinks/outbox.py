"""A durable outbox for rows the Logs Ingestion API has not accepted yet.

Rows that fail to reach Sentinel for a transient reason (outage, throttling beyond the retry
budget, an expired role assignment) are written here and delivered later, oldest first, by
`SentinelSink` (a few entries on every batch) and by the timer function (`deliver_outbox`).
Rows that can never be delivered (a row over the request limit, a 400 from the service) are
moved to `rejected/` with the reason, to be reported and re-driven by a person: never retried
forever, never dropped.

Layout (the same in a directory and in a blob container)::

    pending/{first failed, UTC yyyymmddThhmmss.ffffff}-{uuid4 hex}-{stream}.json.gz
    rejected/{same kind of name}.json.gz

Each object is gzip JSON: ``{"stream", "rows", "attempts", "first_failed", "last_error"}``
(rejected ones add ``"reason"`` and ``"rejected_at"``). Names sort oldest first; the stream is
in the name so entries of a stream that is failing right now can be skipped without reading
them. The outbox holds row content (PHI): it lives in the same protected storage account as
the archive, but it is a separate, ordinary (mutable) container or directory: entries are
deleted once delivered, which an immutable archive container would refuse.

Delivery is at-least-once: an entry is deleted only after the service accepted it, so a crash
in between (or two instances draining at once) can send it twice. Consumers dedupe on
EventUid / AlertId / Batch.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import threading
import time
import uuid
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from phiwatch.storage.blob_clients import container_from_url
from phiwatch.storage.files import durable_temp

PENDING = "pending/"
REJECTED = "rejected/"
_SUFFIX = ".json.gz"
_TS_FORMAT = "%Y%m%dT%H%M%S.%f"
_TS_LEN = len("20240101T000000.000000")
_UUID_LEN = 32
# pending_estimate() lists the pending entries again after this long: other instances add
# and deliver entries too, so the count kept between listings drifts.
COUNT_REFRESH_SECONDS = 300.0


class OutboxError(Exception):
    """The outbox cannot be used (for example: the container is immutable)."""


@dataclass(frozen=True)
class OutboxEntry:
    name: str  # full object name, e.g. "pending/20260102T030405.000006-<hex>-Custom-X.json.gz"
    stream: str
    rows: list[dict[str, Any]]
    attempts: int
    first_failed: datetime
    last_error: str | None = None
    reason: str | None = None  # rejected entries only


class Outbox(Protocol):
    location: str

    def add(
        self,
        stream: str,
        rows: list[dict[str, Any]],
        *,
        attempts: int = 0,
        first_failed: datetime | None = None,
        last_error: str | None = None,
    ) -> None:
        """Store `rows` for `stream` as one new pending entry (nothing for no rows)."""
        ...

    def pending(self, *, skip_streams: Container[str] = ()) -> Iterator[OutboxEntry]:
        """Pending entries, oldest first. An entry whose stream is in `skip_streams` when the
        iteration reaches it is passed over without being read (the set may change while
        iterating). Entries deleted meanwhile (another instance) are passed over."""
        ...

    def pending_count(self) -> int:
        """Pending entries, counted now (one listing)."""
        ...

    def pending_estimate(self) -> int:
        """Pending entries without a listing per call: the last count, kept up to date with
        this instance's own adds and deletes, recounted every COUNT_REFRESH_SECONDS."""
        ...

    def done(self, entry: OutboxEntry) -> None:
        """Delivered: delete the entry (a missing entry is fine)."""
        ...

    def retry_later(self, entry: OutboxEntry, attempts: int, last_error: str | None = None) -> None:
        """Still not delivered: keep the entry in its place, with the attempt count."""
        ...

    def reject(
        self,
        entry_or_rows: OutboxEntry | list[dict[str, Any]],
        reason: str,
        *,
        stream: str | None = None,
    ) -> None:
        """Rows that can never be delivered: move the entry (or store the rows, for
        `stream`) under rejected/ with the reason. They are never retried."""
        ...

    def rejected(self) -> Iterator[OutboxEntry]: ...


def entry_name(prefix: str, stream: str, first_failed: datetime) -> str:
    if not stream or "/" in stream or "\\" in stream:
        raise ValueError(f"not a usable stream name: {stream!r}")
    stamp = first_failed.astimezone(UTC).strftime(_TS_FORMAT)
    return f"{prefix}{stamp}-{uuid.uuid4().hex}-{stream}{_SUFFIX}"


def stream_of(name: str) -> str | None:
    """The stream encoded in an entry name, or None when the name is not an entry's."""
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(_SUFFIX):
        return None
    base = base[: -len(_SUFFIX)]
    start = _TS_LEN + 1 + _UUID_LEN + 1
    if len(base) <= start or base[_TS_LEN] != "-" or base[start - 1] != "-":
        return None
    return base[start:]


def _encode(document: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode("utf-8"), mtime=0)


def _decode(name: str, data: bytes) -> OutboxEntry:
    doc = json.loads(gzip.decompress(data))
    return OutboxEntry(
        name=name,
        stream=doc["stream"],
        rows=doc["rows"],
        attempts=int(doc.get("attempts", 0)),
        first_failed=datetime.fromisoformat(doc["first_failed"]),
        last_error=doc.get("last_error"),
        reason=doc.get("reason"),
    )


def _document(
    stream: str,
    rows: list[dict[str, Any]],
    attempts: int,
    first_failed: datetime,
    last_error: str | None,
) -> dict[str, Any]:
    return {
        "stream": stream,
        "rows": rows,
        "attempts": attempts,
        "first_failed": first_failed.astimezone(UTC).isoformat(),
        "last_error": last_error,
    }


class _ObjectOutbox:
    """The outbox logic over four primitives a backend provides."""

    location: str

    # -- primitives -------------------------------------------------------------------------

    def _write(self, name: str, data: bytes) -> None:  # create or replace, atomically
        raise NotImplementedError

    def _read(self, name: str) -> bytes | None:  # None when missing
        raise NotImplementedError

    def _delete(self, name: str) -> None:  # a missing object is fine
        raise NotImplementedError

    def _names(self, prefix: str) -> list[str]:  # sorted
        raise NotImplementedError

    def _iter_names(self, prefix: str) -> Iterable[str]:  # sorted, as lazily as it can
        return self._names(prefix)

    # -- the pending count --------------------------------------------------------------------

    _count: int | None = None
    _counted_at = 0.0

    def _init_count(self) -> None:
        self._count_lock = threading.Lock()

    def _adjust(self, delta: int) -> None:
        with self._count_lock:
            if self._count is not None:
                self._count = max(self._count + delta, 0)

    # -- protocol ---------------------------------------------------------------------------

    def add(
        self,
        stream: str,
        rows: list[dict[str, Any]],
        *,
        attempts: int = 0,
        first_failed: datetime | None = None,
        last_error: str | None = None,
    ) -> None:
        if not rows:
            return
        first_failed = first_failed or datetime.now(UTC)
        name = entry_name(PENDING, stream, first_failed)
        self._write(name, _encode(_document(stream, rows, attempts, first_failed, last_error)))
        self._adjust(+1)

    def _entries(self, prefix: str, skip_streams: Container[str] = ()) -> Iterator[OutboxEntry]:
        # Names one page at a time where the backend can: a drain that stops after ten
        # entries must not list thousands.
        for name in self._iter_names(prefix):
            stream = stream_of(name)
            if stream is None or stream in skip_streams:
                continue
            data = self._read(name)
            if data is None:  # delivered by another instance meanwhile
                continue
            yield _decode(name, data)

    def pending(self, *, skip_streams: Container[str] = ()) -> Iterator[OutboxEntry]:
        return self._entries(PENDING, skip_streams)

    def pending_count(self) -> int:
        count = sum(1 for name in self._names(PENDING) if stream_of(name) is not None)
        with self._count_lock:
            self._count, self._counted_at = count, time.monotonic()
        return count

    def pending_estimate(self) -> int:
        with self._count_lock:
            count, fresh = self._count, time.monotonic() - self._counted_at
        if count is None or fresh > COUNT_REFRESH_SECONDS:
            return self.pending_count()
        return count

    def rejected(self) -> Iterator[OutboxEntry]:
        return self._entries(REJECTED)

    def done(self, entry: OutboxEntry) -> None:
        self._delete(entry.name)
        self._adjust(-1)

    def retry_later(self, entry: OutboxEntry, attempts: int, last_error: str | None = None) -> None:
        doc = _document(entry.stream, entry.rows, attempts, entry.first_failed, last_error)
        self._write(entry.name, _encode(doc))

    def reject(
        self,
        entry_or_rows: OutboxEntry | list[dict[str, Any]],
        reason: str,
        *,
        stream: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        if isinstance(entry_or_rows, OutboxEntry):
            entry = entry_or_rows
            doc = _document(
                entry.stream, entry.rows, entry.attempts, entry.first_failed, entry.last_error
            )
            name = REJECTED + entry.name.rsplit("/", 1)[-1]
        else:
            if stream is None:
                raise ValueError("reject(rows, ...) needs the stream")
            if not entry_or_rows:
                return
            doc = _document(stream, entry_or_rows, 0, now, None)
            name = entry_name(REJECTED, stream, now)
        doc["reason"] = reason
        doc["rejected_at"] = now.isoformat()
        # Write the rejected copy before deleting the pending one: a crash in between leaves
        # the rows in both places (re-sent once more, then rejected again), never in neither.
        self._write(name, _encode(doc))
        if isinstance(entry_or_rows, OutboxEntry):
            self._delete(entry_or_rows.name)
            self._adjust(-1)


class LocalOutbox(_ObjectOutbox):
    """A directory (local runs, tests). Writes go to a temporary file that is renamed into
    place, so a crash never leaves a half-written entry under its real name."""

    def __init__(self, directory: Path) -> None:
        self.root = Path(directory)
        self.location = str(self.root)
        self._init_count()
        for prefix in (PENDING, REJECTED):
            (self.root / prefix).mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, data: bytes) -> None:
        path = self.root / name
        tmp = durable_temp(path.parent, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def _delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def _names(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            prefix + p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(_SUFFIX)
        )


class BlobOutbox(_ObjectOutbox):
    """A blob container of ordinary blobs (write, overwrite and delete are all used).

    It must not be the archive container: construction reads the container's properties
    (which also proves it exists and the credential works) and refuses a container with
    version-level immutability, an immutability policy or a legal hold. phiwatch never
    creates the container; infrastructure does."""

    def __init__(self, container: ContainerClient, *, check_container: bool = True) -> None:
        self.container = container
        self.location = container.url
        self._init_count()
        if check_container:
            self._check()

    def _check(self) -> None:
        try:
            props = self.container.get_container_properties()
        except ResourceNotFoundError:
            raise OutboxError(
                f"outbox container {self.container.url} does not exist; infrastructure "
                "creates it (an ordinary container, not the immutable archive)"
            ) from None
        if (
            getattr(props, "immutable_storage_with_versioning_enabled", None)
            or getattr(props, "has_immutability_policy", None)
            or getattr(props, "has_legal_hold", None)
        ):
            raise OutboxError(
                f"outbox container {self.container.url} is immutable (WORM); delivered "
                "entries must be deleted, so the outbox needs an ordinary container separate "
                "from the archive"
            )

    @classmethod
    def from_url(
        cls, container_url: str, credential: Any = None, **client_kwargs: Any
    ) -> BlobOutbox:
        """Production: `https://<account>.blob.core.windows.net/<container>`, authenticated
        with `DefaultAzureCredential` (the managed identity in Azure) unless one is given."""
        client = container_from_url(container_url, credential, **client_kwargs)
        return cls(client)

    @classmethod
    def from_connection_string(
        cls, conn_str: str, container: str, **client_kwargs: Any
    ) -> BlobOutbox:
        """Azurite and tests."""
        return cls(ContainerClient.from_connection_string(conn_str, container, **client_kwargs))

    def _write(self, name: str, data: bytes) -> None:
        self.container.upload_blob(
            name,
            data,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/gzip"),
        )

    def _read(self, name: str) -> bytes | None:
        try:
            return self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None

    def _delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.container.delete_blob(name)

    def _names(self, prefix: str) -> list[str]:
        return sorted(self.container.list_blob_names(name_starts_with=prefix))

    def _iter_names(self, prefix: str) -> Iterable[str]:
        # Blob listings come in name order, a page (up to 5,000 names) per request.
        return self.container.list_blob_names(name_starts_with=prefix)
