"""Careful local file writes shared by the archive, the outbox and the key files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def durable_temp(directory: Path, data: bytes, *, mode: int | None = None) -> str:
    """`data` in a new fsynced temporary file in `directory`; the caller links or renames it
    into place, so a crash never leaves a half-written file under the real name."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def create_secret_file(path: Path, text: str) -> bool:
    """Create `path` (mode 0600) holding `text`, only if it does not exist: two first runs
    racing must not end up with two different keys. False when it already existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True
