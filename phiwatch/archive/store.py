"""Where archive objects live: a create-only object store, local or Azure Blob.

The archive asks one thing of a store: write an object under a name *only if no object has
that name*, and say whether it created it, found the very same bytes, or found other bytes.
Nothing in phiwatch ever overwrites or deletes an archive object.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Protocol

from phiwatch.files import durable_temp


class PutOutcome(Enum):
    CREATED = "created"
    IDENTICAL = "identical"  # a redelivery: the same name already holds these bytes
    CONFLICT = "conflict"  # the same name holds other bytes


class ObjectMissing(Exception):
    """No object under that name."""


class ObjectStore(Protocol):
    location: str  # shown to people: a directory or a container URL

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        """Create `name` holding `data`, never overwriting. Returns the outcome and the
        SHA-256 (hex) of what the store holds under `name` afterwards."""
        ...

    def get(self, name: str) -> bytes:
        """The object's bytes; raises ObjectMissing."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Names under `prefix`, in lexicographic order."""
        ...


def check_name(name: str) -> str:
    """Refuse names that are not plain relative paths: `..`, `.`, empty segments and
    backslashes would give one object two spellings (or escape a directory)."""
    segments = name.split("/")
    if not name or "\\" in name or any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"not a valid archive object name: {name!r}")
    return name


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore:
    """A directory. Objects are written to a temporary file and hard-linked into place, so
    a crash never leaves a half-written object under its real name, and `link` refuses an
    existing name atomically (the filesystem's create-only write)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self._made: set[Path] = set()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        path = self._path(name)
        digest = sha256_hex(data)
        if path.exists():
            return self._compare(path, digest)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        tmp = durable_temp(path.parent, data, mode=0o444)
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return self._compare(path, digest)
        finally:
            os.unlink(tmp)
        return PutOutcome.CREATED, digest

    @staticmethod
    def _compare(path: Path, digest: str) -> tuple[PutOutcome, str]:
        existing = sha256_hex(path.read_bytes())
        return (PutOutcome.IDENTICAL if existing == digest else PutOutcome.CONFLICT), existing

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(name) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the deepest directory the prefix names, not the whole archive.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return iter(())
        names = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return iter(sorted(n for n in names if n.startswith(prefix)))
