"""Per-partition detection state snapshots, with optimistic concurrency.

`detect` keeps its state for one Event Hubs partition in memory and snapshots it here. During a
rebalance two instances can both believe they own a partition for a while; each save therefore
names the version it was derived from (the etag `load` returned), and a save over any other
version fails with `StateConflict` instead of silently replacing the other instance's work.

* `save(key, data, None)` creates only; `save(key, data, etag)` replaces only that version.
  Every successful save returns a new etag, even for identical bytes (as Azure Blob does), so
  the two backends behave the same.
* Payloads are opaque bytes, stored verbatim: the caller's serialisation
  (`phiwatch.detect.snapshot.dumps`) is already gzip'd JSON, hence the `.json.gz` key suffix,
  and compressing it again would cost CPU for nothing. `load` returns exactly what was saved.
* `BlobStateStore` uses one mutable container (e.g. `phiwatch-state`), never the immutable
  archive: snapshots are replaced. phiwatch never creates it (infrastructure does); a missing
  container is a `StateContainerMissing` at construction.
* `LocalStateStore` is a directory for the CLI and the standalone consumer: atomic replace
  (temp file + `os.replace`) under an exclusive `flock`, so two processes cannot both win.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from phiwatch.archive.blob_store import content_type_for
from phiwatch.archive.names import MAX_STREAM, safe_name
from phiwatch.storage.blob_clients import container_from_url
from phiwatch.storage.files import durable_temp

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = structlog.get_logger("phiwatch.detect.state_store")

STATE_SUFFIX = ".json.gz"
# Event Hubs consumer groups: 1-50 letters, digits, '.', '_', '-' (plus the built-in
# "$Default"). Hubs: up to 256 of the same, starting with a letter or digit. Partition ids are
# decimal ("0".."N-1").
_CONSUMER_GROUP = re.compile(r"^\$?[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
_HUB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_PARTITION = re.compile(r"^[0-9]{1,6}$")
# Local file layout: one header line carrying the etag, then the payload.
_LOCAL_MAGIC = b"phiwatch-state/1 "


class StateConflict(Exception):
    """Someone else wrote the snapshot since we read it (etag mismatch / already exists)."""


class StateStoreError(Exception):
    """The store cannot be used (missing container, not a directory, a file it did not write)."""


class StateContainerMissing(StateStoreError):
    """The Blob container for state snapshots does not exist."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: bytes  # opaque payload (the caller's serialised state)
    etag: str  # what save() must be given to replace exactly this version


class StateStore(Protocol):
    location: str  # for logs and errors; never carries secrets

    def load(self, key: str) -> Snapshot | None:
        """The current snapshot under `key`, or None when there is none."""
        ...

    def save(self, key: str, data: bytes, etag: str | None) -> str:
        """Write `data` under `key` and return the new etag. `etag` None: create only
        (StateConflict if it exists); otherwise replace only that version (else StateConflict)."""
        ...


def state_key(consumer_group: str, hub: str, partition: str) -> str:
    """`$Default`, `phi-events`, `3` → `$default/phi-events/3.json.gz`.

    Consumer group and hub names are case-insensitive in Event Hubs, so they are lower-cased:
    two spellings of one consumer group must share one snapshot, or a restart with the other
    spelling would start from empty state.
    """
    if not _CONSUMER_GROUP.match(consumer_group):
        raise ValueError(f"not an Event Hubs consumer group name: {consumer_group!r}")
    if not _HUB.match(hub):
        raise ValueError(f"not an Event Hub name: {hub!r}")
    if not _PARTITION.match(partition):
        raise ValueError(f"not an Event Hubs partition id: {partition!r}")
    # A hub name may have 256 characters, one more than a file name: bounded like archive names.
    return (
        f"{consumer_group.lower()}/{safe_name(hub.lower(), MAX_STREAM)}/{partition}{STATE_SUFFIX}"
    )


def check_key(key: str) -> str:
    """A plain relative path: no empty, `.`-leading (which covers `..`, temp and lock files)
    or backslash segments, so a key names one file inside the store and nothing else."""
    segments = key.split("/")
    if not key or "\\" in key or "\0" in key or any(not s or s.startswith(".") for s in segments):
        raise ValueError(f"not a valid state key: {key!r}")
    return key


def _conflict(key: str, location: str, etag: str | None) -> StateConflict:
    # A conflict means two instances believed they owned one partition: worth a warning.
    log.warning(
        "state snapshot changed since it was read",
        key=key,
        location=location,
        mode="create" if etag is None else "replace",
    )
    if etag is None:
        return StateConflict(f"state snapshot {key!r} already exists in {location}")
    return StateConflict(
        f"state snapshot {key!r} in {location} is no longer version {etag} "
        "(another instance wrote or removed it)"
    )


# ------------------------------------------------------------------------------ Azure Blob


def _is_container_missing(exc: ResourceNotFoundError) -> bool:
    return getattr(exc, "error_code", None) == "ContainerNotFound"


class BlobStateStore:
    """Snapshots as block blobs in one mutable container. Construction reads the container's
    properties once: that proves the container exists and the credential works."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container
        # The URL without any query string: a SAS must never reach a log line.
        parts = urlsplit(container.url)
        self.location = f"{parts.scheme}://{parts.netloc}{parts.path}"
        try:
            container.get_container_properties()
        except ResourceNotFoundError:
            raise self._missing() from None

    @classmethod
    def from_url(
        cls, container_url: str, credential: TokenCredential | None = None, **client_kwargs: Any
    ) -> BlobStateStore:
        """Production: `https://<account>.blob.core.windows.net/<container>`, authenticated with
        DefaultAzureCredential (managed identity in Azure) unless a credential is given. The
        identity needs Storage Blob Data Contributor on this container."""
        if urlsplit(container_url).query:
            raise StateStoreError(
                "state container URL: a SAS token is not accepted (it would end up in logs); "
                "grant the identity 'Storage Blob Data Contributor' on the container instead"
            )
        client = container_from_url(container_url, credential, **client_kwargs)
        return cls(client)

    @classmethod
    def from_connection_string(
        cls, conn_str: str, container: str, **client_kwargs: Any
    ) -> BlobStateStore:
        """Azurite and tests."""
        return cls(ContainerClient.from_connection_string(conn_str, container, **client_kwargs))

    def _missing(self) -> StateContainerMissing:
        return StateContainerMissing(
            f"state container {self.location} does not exist; it is created by "
            "infrastructure (a mutable container, separate from the immutable archive)"
        )

    def load(self, key: str) -> Snapshot | None:
        check_key(key)
        try:
            downloader = self.container.download_blob(key)
            stored = downloader.readall()
        except ResourceNotFoundError as exc:
            if _is_container_missing(exc):
                raise self._missing() from None
            return None
        # The etag of the response that carried these bytes, so it names exactly this version.
        return Snapshot(stored, downloader.properties.etag)

    def save(self, key: str, data: bytes, etag: str | None) -> str:
        check_key(key)
        settings = ContentSettings(content_type=content_type_for(key))
        # BlobClient.upload_blob returns the response headers (etag); ContainerClient's returns
        # a BlobClient, which would need a second request for the etag and race other writers.
        blob = self.container.get_blob_client(key)
        try:
            if etag is None:
                # overwrite=False sends If-None-Match: * (409 BlobAlreadyExists if taken).
                result = blob.upload_blob(data, overwrite=False, content_settings=settings)
            else:
                result = blob.upload_blob(
                    data,
                    overwrite=True,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,  # If-Match: <etag>
                    content_settings=settings,
                )
        except (ResourceExistsError, ResourceModifiedError):
            raise _conflict(key, self.location, etag) from None
        except ResourceNotFoundError as exc:
            if _is_container_missing(exc):
                raise self._missing() from None
            # If-Match on a blob that was deleted meanwhile: that version is gone too.
            raise _conflict(key, self.location, etag) from None
        new_etag = str(result["etag"])
        log.debug("state snapshot saved", key=key, size_bytes=len(data), etag=new_etag)
        return new_etag


# ------------------------------------------------------------------------------ local files


class LocalStateStore:
    """Snapshots as files under `directory` (created if missing). Each file is one header line
    `phiwatch-state/1 <etag>` followed by the payload; the etag is a fresh random token per
    save, so an old etag never matches again even when the same bytes are written back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StateStoreError(f"state directory {directory} is not a directory") from None

    def _path(self, key: str) -> Path:
        return self.directory / check_key(key)

    def load(self, key: str) -> Snapshot | None:
        path = self._path(key)
        try:
            # One read of a file that is only ever replaced whole: no lock needed.
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        etag, payload = self._split(raw, key)
        return Snapshot(payload, etag)

    def _split(self, raw: bytes, key: str) -> tuple[str, bytes]:
        header, newline, payload = raw.partition(b"\n")
        if not newline or not header.startswith(_LOCAL_MAGIC):
            raise StateStoreError(
                f"state snapshot {key!r} in {self.location} has no phiwatch-state header; "
                "it was not written by phiwatch"
            )
        return header[len(_LOCAL_MAGIC) :].decode("ascii"), payload

    def _current_etag(self, path: Path, key: str) -> str | None:
        try:
            with path.open("rb") as fh:
                first = fh.readline()
        except FileNotFoundError:
            return None
        return self._split(first, key)[0]

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        # One lock file per key, beside it ('.'-prefixed, so no key can name it). flock is
        # released by the kernel if the process dies, so a crash never leaves a stale lock.
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the lock

    def save(self, key: str, data: bytes, etag: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(path):
            current = self._current_etag(path, key)
            if current != etag:  # create-only (etag None) fails when current exists, too
                raise _conflict(key, self.location, etag)
            new_etag = self._next_etag(current)
            tmp = durable_temp(path.parent, _LOCAL_MAGIC + new_etag.encode("ascii") + b"\n" + data)
            try:
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_directory(path.parent)  # make the rename itself survive a power cut
        log.debug("state snapshot saved", key=key, size_bytes=len(data), etag=new_etag)
        return new_etag

    @staticmethod
    def _next_etag(current: str | None) -> str:
        # "<generation>-<random>": the generation tells people how many saves a snapshot has
        # seen; the random part keeps etags unique even if a file is deleted and recreated.
        try:
            generation = int((current or "0").split("-", 1)[0]) + 1
        except ValueError:  # a header edited by hand: start counting again
            generation = 1
        return f"{generation}-{secrets.token_hex(6)}"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
