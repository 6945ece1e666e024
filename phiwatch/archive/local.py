"""Local-filesystem archive (the embedded default).

Layout: `<kind>/yyyy/mm/dd/hh/<batch name>.jsonl.gz`. Names come only from the batch, and
writes are create-only (`O_EXCL`), so a redelivered batch rewrites nothing: the same content
is a success, different content under the same name is an integrity error.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

KINDS = ("raw", "deadletter", "events", "alerts")


class ArchiveIntegrityError(Exception):
    """An object exists under this name with different content."""


def object_name(kind: str, hour: datetime | None, batch_name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown archive kind {kind!r}")
    folder = hour.strftime("%Y/%m/%d/%H") if hour else "undated"
    return f"{kind}/{folder}/{batch_name}.jsonl.gz"


def encode_lines(lines: Iterable[bytes]) -> bytes:
    # mtime=0: identical content gives identical bytes, so redelivery is provably a no-op.
    return gzip.compress(b"".join(line + b"\n" for line in lines), compresslevel=6, mtime=0)


class LocalArchive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects_written = 0
        self.objects_unchanged = 0

    def put(self, name: str, lines: Iterable[bytes]) -> str:
        """Write one object create-only; returns its SHA-256."""
        data = encode_lines(lines)
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            existing = hashlib.sha256(path.read_bytes()).hexdigest()
            if existing != digest:
                raise ArchiveIntegrityError(
                    f"{name} already exists with different content"
                ) from None
            self.objects_unchanged += 1
            return digest
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.objects_written += 1
        return digest
