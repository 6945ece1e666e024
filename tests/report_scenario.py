"""A real archive for the report tests: a small generated scenario replayed, and the input
records read back independently of the normalisers (what a report must match)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from phiwatch.envelope import decode_body, discover, read_file_bodies
from phiwatch.hosts.replay import replay
from phiwatch.samplegen import generate
from tests.conftest import TEST_KEY_HEX, TEST_SIGNING_SEED_HEX
from tests.scenario_inputs import privacy_files, scenario_settings

# The generator's terminal result types; Started/Start precede them and are no access.
_NON_TERMINAL = {"start", "started", "accept", "accepted"}


@dataclass(frozen=True)
class InputRecord:
    uid: str  # the EventUid the pipeline gives it (its content digest)
    value: dict[str, Any]

    @property
    def uri(self) -> str:
        props = self.value.get("properties")
        uri = self.value.get("uri") or (props.get("requestUri") if isinstance(props, dict) else "")
        text = str(uri or "")
        for _ in range(3):  # the records encode `|` as %7C, some twice
            text = unquote(text)
        return text

    @property
    def service(self) -> str:
        return str(self.value.get("resourceId", "")).lower()


@dataclass(frozen=True)
class Scenario:
    gen: Path
    archive: Path
    truth: dict[str, Any]
    fhir: list[InputRecord]  # terminal FHIR AuditLogs records, each once


def _fhir_records(logs: Path) -> Iterator[InputRecord]:
    seen: set[str] = set()
    for path in discover([logs]):
        for body in read_file_bodies(path):
            for raw in decode_body(body):
                value = raw.value
                if not isinstance(value, dict) or str(value.get("category")) != "AuditLogs":
                    continue
                if (
                    "/providers/microsoft.healthcareapis/"
                    not in str(value.get("resourceId", "")).lower()
                ):
                    continue
                if str(value.get("resultType", "")).lower() in _NON_TERMINAL:
                    continue
                uid = raw.content_uid()
                if uid not in seen:  # a redelivered copy is one access
                    seen.add(uid)
                    yield InputRecord(uid, value)


def names_patient(record: InputRecord, patient_id: str) -> bool:
    """Whether the request names this FHIR id: `Patient/<id>` in the path or a reference,
    or the bare id as a `patient` search parameter."""
    path, _, query = record.uri.partition("?")
    segments = path.split("/")
    if any(a == "Patient" and b == patient_id for a, b in itertools.pairwise(segments)):
        return True
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        for item in value.split(","):
            if item == f"Patient/{patient_id}":
                return True
            if key.split(":")[0] == "patient" and item == patient_id:
                return True
            if key == "_id" and path.rstrip("/").endswith("Patient") and item == patient_id:
                return True
    return False


def searches_identifier(record: InputRecord, system: str, value: str) -> bool:
    _, _, query = record.uri.partition("?")
    return any(
        pair.partition("=")[0] == "identifier" and pair.partition("=")[2] in (f"{system}|{value}",)
        for pair in query.split("&")
    )


def build(root: Path) -> Scenario:
    with pytest.MonkeyPatch.context() as patch:
        # The keys every test runs with (conftest's autouse fixture is function-scoped).
        patch.setenv("PHIWATCH_PSEUDONYM_KEY", TEST_KEY_HEX)
        patch.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
        patch.setenv("PHIWATCH_HOME", str(root / "home"))
        generate(root / "gen", seed=11, records=3000)
        truth = json.loads((root / "gen" / "ground_truth.json").read_text())
        summary = replay(
            [root / "gen" / "logs"],
            root / "out",
            scenario_settings(truth),
            **privacy_files(root / "gen", truth),
        )
    assert summary.problems == []
    return Scenario(
        root / "gen", root / "out" / "archive", truth, list(_fhir_records(root / "gen" / "logs"))
    )
