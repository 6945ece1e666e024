"""Where archive objects live: a create-only object store, local or Azure Blob.

The archive asks one thing of a store: write an object under a name *only if no object has
that name*, and say whether it created it, found the very same bytes, or found other bytes.
Nothing in phiwatch ever overwrites or deletes an archive object.

A store may also offer `put_many`, the same for several objects at once (`LocalStore`: their
fsyncs side by side, one wait on the disk for a batch's seal instead of one per object); the
archive asks for it through `put_many()` here, which puts one by one on any other store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


Put = tuple[PutOutcome, str]


def put_many(
    store: ObjectStore, items: Sequence[tuple[str, bytes]], *, stop_at_conflict: bool = False
) -> list[Put | None]:
    """`put_if_absent` of each (name, data), in order; each outcome means what it means for
    one put (durable, create-only). With `stop_at_conflict`, the items after the first
    CONFLICT are not written (None): a chain index taken by another writer must not get
    our manifest.

    A store with its own `put_many` (LocalStore: the writes' fsyncs overlap) is asked for it,
    unless a subclass changed `put_if_absent` below it: a fault-injecting or counting store
    then sees every put one by one."""
    batched = _own_put_many(store)
    if batched is not None:
        return batched(items, stop_at_conflict=stop_at_conflict)
    results: list[Put | None] = []
    for name, data in items:
        if stop_at_conflict and results and _conflicted(results[-1]):
            results.append(None)
            continue
        results.append(store.put_if_absent(name, data))
    return results


def _conflicted(result: Put | None) -> bool:
    return result is None or result[0] is PutOutcome.CONFLICT


def _own_put_many(store: object) -> Callable[..., list[Put | None]] | None:
    mro = type(store).__mro__
    many = next((c for c in mro if "put_many" in vars(c)), None)
    single = next((c for c in mro if "put_if_absent" in vars(c)), None)
    if many is None or single is None or mro.index(single) < mro.index(many):
        return None
    method: Callable[..., list[Put | None]] = getattr(store, "put_many")  # noqa: B009
    return method


# Threads that fsync a batch's files side by side: the filesystem's journal commits
# concurrent fsyncs together, so several objects cost about one flush instead of one each.
# Made again after a fork (a replay worker): a pool's threads do not survive one.
_SYNC_THREADS = 4
_pools: dict[int, ThreadPoolExecutor] = {}  # by process id: one entry, the current process's
_pool_lock = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        with _pool_lock:
            if (pool := _pools.get(pid)) is None:
                _pools.clear()  # an inherited pool's threads are not in this process
                pool = _pools[pid] = ThreadPoolExecutor(
                    _SYNC_THREADS, thread_name_prefix="archive-fsync"
                )
    return pool


class LocalStore:
    """A directory. Objects are written to a temporary file and hard-linked into place, so
    a crash never leaves a half-written object under its real name, and `link` refuses an
    existing name atomically (the filesystem's create-only write).

    Nothing inside the root is ever followed: every folder of a name is opened with
    `O_NOFOLLOW` relative to the one before it, and an object must be a regular file. A
    symbolic link planted in the archive (to an object, or to a folder outside it) is never
    read, written through or listed; `planted()` names it for `verify`.

    Durability is per object, as with one put: `put_many` links a name only once its bytes
    are fsynced (the directory entry is not fsynced, here or before). Folders the store has
    opened are not created again, but every folder is still opened, link-free, on every
    put: a folder removed since is made again, one swapped for a link refused."""

    # Folders (relative paths) this store has opened: not created again. Bounded: a long
    # run adds an hour folder per kind and stream every hour.
    KNOWN_FOLDERS = 4096

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self._known: set[str] = set()

    def _root(self, *, create: bool) -> int:
        if create and "" not in self._known:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            return os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root is configuration
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(self.location) from None

    def _folder(self, name: str, *, create: bool) -> int:
        """An open descriptor of the folder holding `name`'s last segment."""
        segments = check_name(name).split("/")[:-1]
        known = self._known
        fd = self._root(create=create)
        if create:
            known.add("")
        path = ""
        try:
            for index, segment in enumerate(segments):
                path = f"{path}/{segment}"
                # Every folder is still opened without following links, one by one: only
                # the mkdir of one known to exist is left out.
                if create and path not in known:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, dir_fd=fd)
                try:
                    try:
                        inner = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if not (create and path in known):
                            raise
                        # Known, but removed since (by hand): made again, as for a new one.
                        known.discard(path)
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(segment, dir_fd=fd)
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
                if create:
                    if len(known) >= self.KNOWN_FOLDERS:
                        known.clear()
                    known.add(path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        (result,) = self.put_many([(name, data)])
        assert result is not None  # one item: never skipped
        return result

    def put_many(
        self, items: Sequence[tuple[str, bytes]], *, stop_at_conflict: bool = False
    ) -> list[Put | None]:
        """`store.put_many`: every new object is written to its temporary file first, the
        files are fsynced side by side, and only then linked into place in order (so each
        name appears only once its bytes are durable, as with one put)."""
        staged: list[_Staged] = []
        try:
            for name, data in items:
                leaf = name.rsplit("/", 1)[-1]
                entry = _Staged(self._folder(name, create=True), leaf, sha256_hex(data))
                staged.append(entry)
                if not _exists(entry.folder, leaf):
                    entry.tmp, entry.fd = _temp(entry.folder, data)
            _sync([e for e in staged if e.fd is not None])
            results: list[Put | None] = []
            for entry in staged:
                if stop_at_conflict and results and _conflicted(results[-1]):
                    results.append(None)
                else:
                    results.append(_link(entry))
            return results
        finally:
            for entry in staged:
                entry.release()

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


class _Staged:
    """One object of a `put_many`: its open folder, and its temporary file until linked."""

    __slots__ = ("digest", "fd", "folder", "leaf", "tmp")

    def __init__(self, folder: int, leaf: str, digest: str) -> None:
        self.folder, self.leaf, self.digest = folder, leaf, digest
        self.tmp: str | None = None  # None: the name existed already, nothing written
        self.fd: int | None = None

    def release(self) -> None:
        try:
            if self.fd is not None:
                os.close(self.fd)
            if self.tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp, dir_fd=self.folder)
        finally:
            os.close(self.folder)


def _sync(staged: list[_Staged]) -> None:
    """fsync every staged file, side by side: the last one here, the others in the pool's
    threads, which start theirs while this thread waits in its own (without the GIL).
    Returns (or raises) only once every fsync has ended: no descriptor is closed under one.
    (A put's other work, its Merkle root, is not overlapped with its fsync: measured, the
    hand-over to a thread cost more CPU than the wait it hid.)"""
    fds = [e.fd for e in staged if e.fd is not None]
    if not fds:
        return
    inline = fds.pop()
    pool = _sync_pool() if fds else None
    futures: list[Future[None]] = [pool.submit(os.fsync, fd) for fd in fds] if pool else []
    try:
        os.fsync(inline)
    finally:
        errors = [f.exception() for f in futures]  # waits for each
    for error in errors:
        if error is not None:
            raise error


def _link(entry: _Staged) -> Put:
    if entry.tmp is None:
        return _compare(entry.folder, entry.leaf, entry.digest)
    try:
        os.link(
            entry.tmp,
            entry.leaf,
            src_dir_fd=entry.folder,
            dst_dir_fd=entry.folder,
            follow_symlinks=False,
        )
    except FileExistsError:
        return _compare(entry.folder, entry.leaf, entry.digest)
    return PutOutcome.CREATED, entry.digest


def _temp(folder: int, data: bytes) -> tuple[str, int]:
    """`data` in a new read-only temporary file in `folder`, not yet fsynced: its name and
    open descriptor (relative to an open folder so no link is followed on the way)."""
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
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, 0o444)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        raise
    return tmp, fd


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
