"""The pipelines the stages measure, built from the real parts; only the archive varies."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

import detections
from phiwatch.archive.archive import Archive
from phiwatch.archive.manifest import ObjectEntry
from phiwatch.archive.signer import Ed25519Signer
from phiwatch.archive.store import LocalStore
from phiwatch.batch import Sink
from phiwatch.config import Settings
from phiwatch.detect.engine import DetectionEngine
from phiwatch.hosts import collector
from phiwatch.logs import configure_logging
from phiwatch.pipeline import Pipeline
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.wiring import directory_source

Kind = Literal["normalise", "detect", "full"]
PSEUDONYM_KEY = bytes.fromhex("5e" * 32)
SIGNING_SEED = bytes.fromhex("a7" * 32)
LATENESS = float(Settings.model_fields["allowed_lateness_seconds"].default)


class NullArchive:
    """Accepts every object without encoding, compressing, hashing, signing or writing it.

    Implements what `Pipeline` uses of `Archive`: `batch_name`, `put`, `seal` and
    `take_integrity_conflicts` (plus the counters replay reads)."""

    location = "null"

    def __init__(self) -> None:
        self.derived_conflicts: list[str] = []
        self.objects_written = 0
        self.objects_unchanged = 0
        self.manifests_written = 0

    def put(self, name: str, lines: Sequence[bytes], *, derived: bool = False) -> ObjectEntry:
        self.objects_written += 1
        return ObjectEntry.model_construct(
            name=name,
            kind=name.split("/", 1)[0],
            sha256="",
            bytes=0,
            records=len(lines),
            merkle_root="",
        )

    def batch_name(self, stream: str, batch: str, hour: object, raw_lines: object) -> str:
        return batch  # nothing is stored, so no name can clash

    def take_integrity_conflicts(self) -> list:
        return []

    def seal(self, **_: object) -> str:
        self.manifests_written += 1
        return ""


def quiet_logging() -> None:
    """Production logging (INFO, JSON, PHI redaction) into /dev/null: paid for, not shown."""
    configure_logging("INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime


@dataclass(frozen=True)
class Scenario:
    """How the generated tenant is configured (its ground_truth.json): the detection
    parameters (sanctioned exporters, public containers) and the privacy inputs, as `make
    demo` passes them. Without it, the rules that need them stay off or misjudge."""

    params: dict[str, dict[str, Any]]
    roster: Path | None = None
    patients: Path | None = None
    allow_applications: frozenset[str] = frozenset()

    @classmethod
    def of(cls, corpus: Path) -> Scenario:
        truth = orjson.loads((corpus / "ground_truth.json").read_bytes())
        privacy = truth.get("privacy") or {}

        def local(key: str) -> Path | None:
            name = privacy.get(key)
            return corpus / name if name and (corpus / name).is_file() else None

        return cls(
            params=truth.get("detection_params") or {},
            roster=local("roster"),
            patients=local("patients"),
            allow_applications=frozenset(privacy.get("allow_applications") or ()),
        )


def make_engine(
    with_detections: bool = True,
    cls: type[DetectionEngine] = DetectionEngine,
    scenario: Scenario | None = None,
) -> DetectionEngine:
    params = scenario.params if scenario else {}
    rules = detections.load_detections(params, lateness=LATENESS) if with_detections else []
    return cls(rules, LATENESS)


def make_pipeline(
    kind: Kind,
    archive_dir: Path | None = None,
    sinks: Sequence[Sink] = (),
    engine: DetectionEngine | None = None,
    scenario: Scenario | None = None,
) -> Pipeline:
    """normalise: no detections, NullArchive; detect: + detections; full: + real archive.
    With a scenario, configured as that tenant is (parameters, privacy stamping)."""
    if kind == "full":
        if archive_dir is None:
            raise ValueError("the full pipeline needs an archive directory")
        archive = Archive(LocalStore(archive_dir), Ed25519Signer.from_seed(SIGNING_SEED))
    else:
        archive = NullArchive()
    pseudonymizer = Pseudonymizer(PSEUDONYM_KEY)
    directory = None
    if scenario is not None and (scenario.roster or scenario.patients):
        directory = directory_source(
            Settings(), pseudonymizer, roster_file=scenario.roster, patients_file=scenario.patients
        )
    engine = engine or make_engine(kind != "normalise", scenario=scenario)
    # As every host does once its parts exist (phiwatch/hosts/collector.py).
    collector.tune()
    return Pipeline(
        pseudonymizer=pseudonymizer,
        engine=engine,
        archive=archive,  # type: ignore[arg-type]
        sinks=sinks,
        directory=directory,
        allow_applications=scenario.allow_applications if scenario else frozenset(),
    )
