"""Local-filesystem archive (the embedded default).

Layout: `<kind>/yyyy/mm/dd/hh/<batch name>.jsonl.gz`. Names come only from the batch, and
writes are create-only (`O_EXCL`), so a redelivered batch rewrites nothing.

Raw records are the evidence: the same name with different raw content is an integrity
error. Events, dead-letters and alerts are derived from the raw records *and* from state
(what was already seen, what detection remembers), so a batch redelivered to another
instance may derive slightly different objects (fewer duplicates skipped, a window that
restarted). The first write stands, and the difference is counted, never overwritten.
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
        self.derived_conflicts: list[str] = []

    def put(self, name: str, lines: Iterable[bytes], *, derived: bool = False) -> str:
        """Write one object create-only; returns the SHA-256 of what the archive holds."""
        data = encode_lines(lines)
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            existing = hashlib.sha256(path.read_bytes()).hexdigest()
            if existing == digest:
                self.objects_unchanged += 1
            elif derived:
                self.derived_conflicts.append(name)
            else:
                raise ArchiveIntegrityError(
                    f"{name} already exists with different content"
                ) from None
            return existing
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.objects_written += 1
        return digest
