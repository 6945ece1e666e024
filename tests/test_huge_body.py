"""One big body through the pipeline: what bounds its memory changes nothing it outputs
(issue #18). bench/huge_body.py measures the memory itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phiwatch import pipeline as pipeline_module
from phiwatch.archive.archive import decode_lines
from phiwatch.batch import Batch
from phiwatch.envelope import Body
from tests import records
from tests.harness import make_pipeline


def big_body() -> bytes:
    recs = []
    for i in range(300):
        recs.append(records.fhir(i, path=f"Patient/{i % 40}", upn=f"user{i % 7}@contoso.example"))
        recs.append(records.keyvault(i, operation="SecretGet" if i % 3 else "SecretList"))
        if i % 50 == 0:
            recs.append(records.activity())
    return json.dumps({"records": recs}).encode()


def run(tmp_path: Path) -> tuple[int, list[bytes], list[bytes], dict[str, list[bytes]]]:
    pipeline, _ = make_pipeline(tmp_path)
    body = Body(big_body(), "t", "b0")
    result = pipeline.process(Batch("t", 0, 0, [body]))
    assert result.counts.accounted
    events = [e.to_json() for e in result.events]
    fields = [sorted(e.model_fields_set) for e in result.events]
    root = pipeline.archive.store.root
    archived = {
        p.relative_to(root).as_posix(): decode_lines(p.read_bytes())
        for p in sorted(root.rglob("*.jsonl.gz"))
    }
    distinct = len({id(e.__pydantic_fields_set__) for e in result.events})
    return distinct, events, [json.dumps(f).encode() for f in fields], archived


def test_shared_field_sets_change_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    plain_sets, *plain = run(tmp_path / "plain")
    monkeypatch.setattr(pipeline_module, "SHARE_FIELDS_FROM", 1)
    shared_sets, *shared = run(tmp_path / "shared")
    assert plain == shared
    assert len(plain[0]) > 300
    assert (plain_sets, shared_sets) == (len(plain[0]), 3)


def test_records_are_released_once_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    seen = []
    real = pipeline_module.Pipeline._normalise

    def spy(self, raw, *args, **kwargs):
        seen.append(raw)
        return real(self, raw, *args, **kwargs)

    monkeypatch.setattr(pipeline_module.Pipeline, "_normalise", spy)
    pipeline, _ = make_pipeline(tmp_path)
    pipeline.process(Batch("t", 0, 0, [Body(big_body(), "t", "b0")]))
    assert len(seen) > 600
    assert all(r.value is None for r in seen)
    assert all(r.error_code is None for r in seen[:2])
