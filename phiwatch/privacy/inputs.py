"""What every `DirectorySource` shares: the roster and patient index in force, parsed from
lines of bytes wherever they come from (a file, a blob), and what is said of them at start-up.

A source decides when an input changed (a file's digest, a blob's etag) and hands its lines
here; an input refused whole keeps the previous one in force and is logged: monitoring
against yesterday's roster beats monitoring against none. Log lines name inputs and counts,
never a value (a row error names its row and column only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

import structlog

from phiwatch.privacy.csvrows import InputRefused, LoadReport
from phiwatch.privacy.loaded import LoadedDirectory, directory
from phiwatch.privacy.patients import PatientIndex, load_patients
from phiwatch.privacy.roster import Roster, load_roster
from phiwatch.pseudonym import Pseudonymizer

log = structlog.get_logger("phiwatch.privacy")

InputName = Literal["roster", "patients"]
INPUTS: tuple[InputName, ...] = ("roster", "patients")

# What stays off while an input is missing (stamps stay None; the detections that read them
# cannot fire), for the start-up line.
NEEDS: dict[InputName, tuple[str, ...]] = {
    "roster": (
        "ActorEmploymentStatus",
        "PatientRelation",
        "terminated-user-access",
        "self/family/coworker/neighbour-record-access",
    ),
    "patients": (
        "AccessExplanation care-team/unexplained",
        "PatientRestricted",
        "PatientRelation",
        "vip-record-access",
        "self/family/coworker/neighbour-record-access",
    ),
}


class Inputs:
    def __init__(self, pseudonymizer: Pseudonymizer, default_fhir_service: str | None) -> None:
        self._pseudonymizer = pseudonymizer
        self._tagger = pseudonymizer.privacy_tagger()
        self._default_service = default_fhir_service
        self.roster: Roster | None = None
        self.patients: PatientIndex | None = None
        self.directory: LoadedDirectory | None = None
        self.loads = 0  # how many times an input was parsed (for tests and metrics)

    @property
    def reports(self) -> list[LoadReport]:
        """The loaded inputs' reports: row counts and bad rows (never a value)."""
        return [r.report for r in (self.roster, self.patients) if r is not None]

    def digest(self, name: InputName) -> str | None:
        """The SHA-256 of the bytes `name` was loaded from, None while it is not loaded."""
        loaded = self.roster if name == "roster" else self.patients
        return None if loaded is None else loaded.report.digest

    def load(self, name: InputName, lines: Iterable[bytes]) -> bool:
        """Parse `name` from `lines` and put it in force; False when it is refused whole (the
        previous one stays) or holds exactly the bytes in force already. The source's own
        read errors (OSError, a blob download) propagate: the caller retries them."""
        try:
            if name == "roster":
                roster = load_roster(lines, self._tagger)
                report = roster.report
                unchanged = report.digest == self.digest(name)
                if not unchanged:
                    self.roster = roster
            else:
                patients = load_patients(
                    lines,
                    self._pseudonymizer,
                    self._tagger,
                    default_fhir_service=self._default_service,
                )
                report = patients.report
                unchanged = report.digest == self.digest(name)
                if not unchanged:
                    self.patients = patients
        except InputRefused as exc:
            log.error("privacy input refused; the previous one stays", input=name, why=str(exc))
            return False
        self.loads += 1
        if unchanged:
            return False
        self.directory = directory(self.roster, self.patients)
        refused = len(report.errors) + report.errors_dropped
        if refused:
            log.warning(
                "privacy input rows refused",
                input=name,
                refused=refused,
                rows=report.rows,
                first=str(report.errors[0]),
            )
        log.info(
            "privacy input loaded",
            input=name,
            rows=report.rows,
            loaded=report.loaded,
            version=self.directory.version,
        )
        return True

    def gone(self, name: InputName) -> None:
        loaded = self.roster if name == "roster" else self.patients
        if loaded is not None:
            log.warning("privacy input is gone; keeping the loaded one", input=name)


class ReportingSource(Protocol):
    """A `DirectorySource` that says what it has loaded (both sources here do)."""

    configured: tuple[InputName, ...]

    @property
    def reports(self) -> list[LoadReport]: ...


def log_inputs(source: ReportingSource | None, allow_applications: frozenset[str]) -> None:
    """The start-up line: which inputs are configured and loaded, with their row counts,
    and what is off for want of one. Counts and names only."""
    reports = {r.source: r for r in source.reports} if source is not None else {}
    loaded: dict[str, dict[str, int]] = {
        name: {"rows": r.rows, "loaded": r.loaded, "refused": len(r.errors) + r.errors_dropped}
        for name, r in reports.items()
    }
    missing = [name for name in INPUTS if name not in reports]
    off = sorted({feature for name in missing for feature in NEEDS[name]})
    log.info(
        "privacy inputs",
        configured=list(source.configured) if source is not None else [],
        loaded=loaded,
        missing=missing,
        off=off,
        allow_applications=len(allow_applications),
    )


class InputsSource:
    """What the file and blob directory sources share: the inputs they load into."""

    _inputs: Inputs

    @property
    def loads(self) -> int:
        """How many times an input was parsed (for tests and metrics)."""
        return self._inputs.loads

    @property
    def reports(self) -> list[LoadReport]:
        """The loaded inputs' reports: row counts and bad rows (never a value)."""
        return self._inputs.reports
