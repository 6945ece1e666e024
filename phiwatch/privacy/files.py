"""A `DirectorySource` over local files: reloaded when a file changes.

`current()` is called once per batch, so the check is cheap: one `stat` per file (at most
every `check_seconds`); a changed mtime or size is read and hashed, and only a changed
digest reloads (a `touch`, or a copy of the same bytes, keeps the loaded directory). A file
refused whole keeps the previous directory in force and is logged (phiwatch/privacy/inputs.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from phiwatch.privacy.csvrows import byte_lines, gunzipped
from phiwatch.privacy.inputs import InputName, Inputs, InputsSource
from phiwatch.privacy.loaded import LoadedDirectory
from phiwatch.pseudonym import Pseudonymizer

log = structlog.get_logger("phiwatch.privacy")


@dataclass(frozen=True, slots=True)
class _Stamp:
    mtime_ns: int
    size: int


class FileDirectorySource(InputsSource):
    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        *,
        roster: Path | None = None,
        patients: Path | None = None,
        default_fhir_service: str | None = None,
        check_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inputs = Inputs(pseudonymizer, default_fhir_service)
        self._paths: dict[InputName, Path | None] = {"roster": roster, "patients": patients}
        self.configured = tuple(name for name, path in self._paths.items() if path is not None)
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._stamps: dict[InputName, _Stamp | None] = {}

    def current(self) -> LoadedDirectory | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._check_seconds:
            self._checked_at = now
            self._refresh()
        return self._inputs.directory

    def _refresh(self) -> None:
        for name, path in self._paths.items():
            stamp = _stamp(path)
            if name in self._stamps and stamp == self._stamps[name]:
                continue
            self._stamps[name] = stamp
            if path is None:
                continue
            if stamp is None:
                self._inputs.gone(name)
                continue
            try:
                # Hashing is a tenth of parsing: a touched or re-copied file costs only this.
                if _digest(path) == self._inputs.digest(name):
                    continue
                with path.open("rb") as fh:
                    chunks = iter(lambda: fh.read(1 << 20), b"")
                    self._inputs.load(name, byte_lines(gunzipped(chunks)))
            except OSError as exc:
                log.error(
                    "privacy input not readable; the previous one stays",
                    input=name,
                    error=type(exc).__name__,
                )


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _stamp(path: Path | None) -> _Stamp | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return _Stamp(st.st_mtime_ns, st.st_size)
