"""A `DirectorySource` over local files: reloaded when a file changes.

`current()` is called once per batch, so the check is cheap: one `stat` per file (at most
every `check_seconds`); a changed mtime or size is read and hashed, and only a changed
digest reloads (a `touch`, or a copy of the same bytes, keeps the loaded directory). A file
refused whole keeps the previous directory in force and is logged: monitoring against
yesterday's roster beats monitoring against none.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phiwatch.privacy.csvrows import InputRefused, LoadReport
from phiwatch.privacy.loaded import LoadedDirectory, directory
from phiwatch.privacy.patients import PatientIndex, load_patients
from phiwatch.privacy.roster import Roster, load_roster
from phiwatch.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Stamp:
    mtime_ns: int
    size: int


class FileDirectorySource:
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
        self._pseudonymizer = pseudonymizer
        self._tagger = pseudonymizer.privacy_tagger()
        self._paths = {"roster": roster, "patients": patients}
        self._default_service = default_fhir_service
        self._check_seconds = check_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._stamps: dict[str, _Stamp | None] = {}
        self._roster: Roster | None = None
        self._patients: PatientIndex | None = None
        self._directory: LoadedDirectory | None = None
        self.loads = 0  # how many times an input was parsed (for tests and metrics)

    @property
    def reports(self) -> list[LoadReport]:
        """The loaded inputs' reports: row counts and bad rows (never a value)."""
        return [r.report for r in (self._roster, self._patients) if r is not None]

    def current(self) -> LoadedDirectory | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._check_seconds:
            self._checked_at = now
            self._refresh()
        return self._directory

    def _refresh(self) -> None:
        changed = False
        for name, path in self._paths.items():
            stamp = _stamp(path)
            if name in self._stamps and stamp == self._stamps[name]:
                continue
            self._stamps[name] = stamp
            changed |= self._reload(name, path if stamp is not None else None)
        if changed:
            self._directory = directory(self._roster, self._patients)

    def _reload(self, name: str, path: Path | None) -> bool:
        """Load one input again; False when its bytes are what is loaded already."""
        loaded = self._roster if name == "roster" else self._patients
        if path is None:
            if loaded is not None:
                log.warning("privacy %s input is gone; keeping the loaded one", name)
            return False
        try:
            # Hashing is a tenth of parsing: a touched or re-copied file costs only this.
            if loaded is not None and _digest(path) == loaded.report.digest:
                return False
            with path.open("rb") as fh:
                if name == "roster":
                    self._roster = load_roster(fh, self._tagger)
                    report = self._roster.report
                else:
                    self._patients = load_patients(
                        fh,
                        self._pseudonymizer,
                        self._tagger,
                        default_fhir_service=self._default_service,
                    )
                    report = self._patients.report
        except (OSError, InputRefused) as exc:
            log.error("privacy %s input not loaded, the previous one stays: %s", name, exc)
            return False
        self.loads += 1
        if report.errors:
            log.warning(
                "privacy %s: %d of %d rows refused; first: %s",
                name,
                len(report.errors) + report.errors_dropped,
                report.rows,
                report.errors[0],
            )
        return True


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
