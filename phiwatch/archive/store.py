"""Where archive objects live: a create-only object store, local or Azure Blob.

The archive asks one thing of a store: write an object under a name *only if no object has
that name*, and say whether it created it, found the very same bytes, or found other bytes.
Nothing in phiwatch ever overwrites or deletes an archive object.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Protocol


class PutOutcome(Enum):
    CREATED = "created"
    IDENTICAL = "identical"  # a redelivery: the same name already holds these bytes
    CONFLICT = "conflict"  # the same name holds other bytes


class ObjectMissing(Exception):
    """No object under that name."""


class UnsafeObject(Exception):
    """The name (or one of its folders) is not a plain file or folder of the archive: a
    symbolic link, a device, a pipe. Planted; never followed or read."""


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
    existing name atomically (the filesystem's create-only write).

    Nothing inside the root is ever followed: every folder of a name is opened with
    `O_NOFOLLOW` relative to the one before it, and an object must be a regular file. A
    symbolic link planted in the archive (to an object, or to a folder outside it) is never
    read, written through or listed; `planted()` names it for `verify`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _root(self, *, create: bool) -> int:
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root is configuration
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(self.location) from None

    def _folder(self, name: str, *, create: bool) -> int:
        """An open descriptor of the folder holding `name`'s last segment."""
        segments = check_name(name).split("/")[:-1]
        fd = self._root(create=create)
        try:
            for index, segment in enumerate(segments):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, dir_fd=fd)
                try:
                    inner = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP or (create and exc.errno == errno.ENOTDIR):
                        # A link, or a file where a folder must be: not ours to go through.
                        raise UnsafeObject("/".join(segments[: index + 1])) from None
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                        raise ObjectMissing(name) from None
                    raise
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        digest = sha256_hex(data)
        leaf = name.rsplit("/", 1)[-1]
        folder = self._folder(name, create=True)
        try:
            if _exists(folder, leaf):
                return _compare(folder, leaf, digest)
            tmp = _durable_temp(folder, data)
            try:
                try:
                    os.link(tmp, leaf, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
                except FileExistsError:
                    return _compare(folder, leaf, digest)
            finally:
                os.unlink(tmp, dir_fd=folder)
            return PutOutcome.CREATED, digest
        finally:
            os.close(folder)

    def get(self, name: str) -> bytes:
        folder = self._folder(name, create=False)
        try:
            return _read(folder, name.rsplit("/", 1)[-1], name)
        finally:
            os.close(folder)

    def list(self, prefix: str = "") -> Iterator[str]:
        # Walk only the deepest folder the prefix names, not the whole archive.
        files, _ = _walk(self, prefix)
        return iter(files)

    def planted(self) -> Iterator[str]:
        """Names that are not regular files or folders (symbolic links, devices, pipes):
        never archive objects, never followed."""
        _, planted = _walk(self, "")
        return iter(planted)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a planted pipe must not hang the reader before fstat says it is no file.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _exists(folder: int, leaf: str) -> bool:
    try:
        os.stat(leaf, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _read(folder: int, leaf: str, name: str) -> bytes:
    try:
        fd = os.open(leaf, _FILE_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        raise ObjectMissing(name) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeObject(name) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeObject(name)
        return fh.read()


def _compare(folder: int, leaf: str, digest: str) -> tuple[PutOutcome, str]:
    try:
        existing = sha256_hex(_read(folder, leaf, leaf))
    except UnsafeObject:
        # Not a file (a planted link, a folder): it holds no bytes of an object, and is not
        # followed to see what it points at.
        return PutOutcome.CONFLICT, sha256_hex(b"")
    return (PutOutcome.IDENTICAL if existing == digest else PutOutcome.CONFLICT), existing


def _durable_temp(folder: int, data: bytes) -> str:
    """`data` in a new fsynced, read-only temporary file in `folder` (as files.durable_temp,
    relative to an open folder so no link is followed on the way)."""
    while True:
        tmp = f".tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444, dir_fd=folder
            )
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o444)
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        raise
    return tmp


def _scan(folder: int, path: str, files: list[str], planted: list[str]) -> None:
    """Regular files and planted entries under the open `folder` (closed here), by name."""
    try:
        with os.scandir(folder) as entries:
            found = list(entries)
        for entry in found:
            name = f"{path}{entry.name}"
            if entry.name.startswith(".tmp-"):
                continue
            if entry.is_dir(follow_symlinks=False):
                try:
                    inner = os.open(entry.name, _DIR_FLAGS, dir_fd=folder)
                except OSError:  # gone, or swapped for a link meanwhile: not entered
                    planted.append(name)
                    continue
                _scan(inner, f"{name}/", files, planted)
            elif entry.is_file(follow_symlinks=False):
                files.append(name)
            else:
                planted.append(name)
    finally:
        os.close(folder)


def _walk(store: LocalStore, prefix: str) -> tuple[list[str], list[str]]:
    """Regular files and planted entries whose names start with `prefix`."""
    base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    try:
        folder = store._folder(f"{base}/-", create=False) if base else store._root(create=False)
    except (ObjectMissing, UnsafeObject, ValueError):
        return [], []
    files: list[str] = []
    planted: list[str] = []
    _scan(folder, f"{base}/" if base else "", files, planted)  # closes `folder`
    return (
        sorted(n for n in files if n.startswith(prefix)),
        sorted(n for n in planted if n.startswith(prefix)),
    )
