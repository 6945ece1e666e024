"""No PHI in application logs: the redaction processor, and the pipeline end to end."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from phiwatch.logs import configure_logging, redact_text
from phiwatch.sources import fhir as fhir_source
from tests.harness import run
from tests.records import fhir

PATIENT_IDS = ["MRN-4471-ZZ", "8d1f0c7e-5a2b-4c3d-9e8f-000000000042"]
PATIENT_UPN = "jane.patient@patients.contoso-health.org"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    configure_logging("WARNING", stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /Patient/MRN-4471-ZZ/Observation", "GET /Patient/[redacted]/Observation"),
        ("search Observation?patient=MRN-1&code=x", "search Observation?patient=[redacted]&code=x"),
        ("subject:Patient=77 ok", "subject:Patient=[redacted] ok"),
        ("by jane.patient@patients.org today", "by [upn] today"),
        ("batch diagnostics-p0-000000000001", "batch diagnostics-p0-000000000001"),
        # Issue #12 item 8: the encodings and forms the event model now reads.
        ("GET Observation?patient%3DMRN-1", "GET Observation?patient=[redacted]"),
        ("GET Observation?patient%253D77&x", "GET Observation?patient=[redacted]&x"),
        ("GET Patient/$match/77", "GET Patient/$match/[redacted]"),
        ("GET Observation?Patient/77", "GET Observation?Patient/[redacted]"),
        ("GET Observation?patient._id=77", "GET Observation?patient._id=[redacted]"),
        (
            "https://kv.vault.azure.net/secrets/pt-x/1",
            "https://kv.vault.azure.net/secrets/[redacted]/1",
        ),
        ("name patient-MRN12345-key", "name patient-[id]-key"),
        ("ssn 123-45-6789 seen", "ssn [id] seen"),
        ("100% of 7 done", "100% of 7 done"),
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text) == expected


def test_processor_redacts_keys_values_and_nested_structures(log_stream):
    log = structlog.get_logger("test")
    log.info(
        f"read Patient/{PATIENT_IDS[0]} for {PATIENT_UPN}",
        uri=f"https://fhir/Patient/{PATIENT_IDS[1]}",
        patient_id=PATIENT_IDS[0],
        detail={"query": f"Observation?subject=Patient/{PATIENT_IDS[1]}", "n": 3},
        items=[f"Encounter?patient={PATIENT_IDS[0]}"],
    )
    output = log_stream.getvalue()
    for secret in [*PATIENT_IDS, PATIENT_UPN]:
        assert secret not in output
    (line,) = lines(log_stream)
    assert line["uri"] == "[redacted]" and line["patient_id"] == "[redacted]"
    assert line["detail"]["n"] == 3
    assert line["level"] == "info"


def test_user_agents_secret_names_and_correlation_ids_are_masked_by_key(log_stream):
    log = structlog.get_logger("test")
    log.warning(
        "odd record",
        user_agent="PortalApp/2.1 (kiosk ward-7 jane)",
        http_user_agent="PortalApp/2.1 (kiosk ward-7 jane)",
        client_info="PortalApp/2.1 (kiosk ward-7 jane)",
        secret_name="jane-doe-key",
        correlation_id="lookup-jane-doe",
        resource_name="kv-jane-doe",
        batch="diagnostics-p0-000000000001",
    )
    output = log_stream.getvalue()
    assert "jane" not in output
    (line,) = lines(log_stream)
    assert line["batch"] == "diagnostics-p0-000000000001"


def phi_records() -> list[dict]:
    records = []
    for i, pid in enumerate(PATIENT_IDS * 40):
        records.append(
            fhir(i, path=f"Patient/{pid}/Observation?subject=Patient/{pid}", upn=PATIENT_UPN)
        )
        records.append(fhir(i, path=f"Patient/{pid}", result="Started", upn=PATIENT_UPN))
    broken = fhir(999, path=f"Patient/{PATIENT_IDS[0]}")
    broken["properties"] = f"{{'requestUri': 'Patient/{PATIENT_IDS[0]}', broken"
    records.append(broken)
    return records


def test_pipeline_logs_carry_no_phi_even_when_a_normaliser_crashes(
    log_stream, tmp_path, monkeypatch
):
    original = fhir_source.normalise

    def flaky(record, ctx):
        if record.get("time").endswith(":05Z"):
            raise ValueError(f"cannot parse Patient/{PATIENT_IDS[0]} for {PATIENT_UPN}")
        return original(record, ctx)

    monkeypatch.setattr(fhir_source, "normalise", flaky)
    sink = run(phi_records(), tmp_path, per_body=7, bodies_per_batch=2)
    output = log_stream.getvalue()
    assert lines(log_stream), "the pipeline logged nothing: the test would prove nothing"
    assert any(line["event"] == "normaliser failed" for line in lines(log_stream))
    for secret in [*PATIENT_IDS, PATIENT_UPN]:
        assert secret not in output
    # The dead-letters, which reach Sentinel and the local outputs, are PHI-free too.
    dead = "".join(d.to_json().decode() for d in sink.dead)
    assert {d.reason_code for d in sink.dead} >= {"normaliser-error", "properties-not-json"}
    for secret in PATIENT_IDS:
        assert secret not in dead
