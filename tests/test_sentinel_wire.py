"""The compact rows the Sentinel sink sends rebuild today's table rows exactly.

For every event, alert version and health row of a generated corpus (the samples generator
through the real normalisers and detections), the table row Log Analytics stores after the DCR
transform is the same from the compact row as from the previous version's full row, and equals
the model's own columns (constants added, TimeGenerated from DetectedAt, Title renamed, the
same RowId). Three evaluations of the transform: Python's (`phiwatch.schema.wire`, over the
whole corpus), the transform *text* through the DuckDB KQL engine (a sample), and
Kusto.Language's compile of the text (it must yield exactly the table's columns and types).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from bench.corpus import CorpusSpec, batches, generate_all, read_messages
from bench.pipelines import make_pipeline
from phiwatch.batch import BatchResult
from phiwatch.model import AccessEvent, Alert
from phiwatch.rules.kql_check import ValidatorUnavailable, analyze
from phiwatch.rules.tables import TableSchemas
from phiwatch.samplegen.generator import MIN_RECORDS
from phiwatch.schema.tables import (
    COMPACT_ROW_ID,
    ROW_ID,
    TABLES,
    TableSpec,
    full_wire_row,
    plan_for,
    spec_for,
    stream_columns,
    table_columns,
    transform_kql,
    wire_row,
)
from phiwatch.schema.wire import KEYS, PACKED, WirePlan, code_of, parse_datetime
from phiwatch.sinks.outbox import LocalOutbox
from phiwatch.sinks.sentinel import SentinelSink
from tests.logs_ingestion_standin import logs_ingestion
from tests.test_sentinel_sink import credential, make_sink
from tests.test_sentinel_sink import result as sink_result

__all__ = ["credential", "logs_ingestion"]  # fixtures, used by name below

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


class Capture:
    def __init__(self) -> None:
        self.models: list[BaseModel] = []

    def emit(self, result: BatchResult) -> None:
        self.models += [*result.events, *result.alerts]
        if result.health is not None:
            self.models.append(result.health)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[BaseModel]]:
    root = tmp_path_factory.mktemp("wire-corpus")
    (stage,) = generate_all([CorpusSpec(7, MIN_RECORDS, 0)], root, 1)
    capture = Capture()
    pipeline = make_pipeline("detect", sinks=[capture])
    for batch in batches(read_messages(stage)):
        pipeline.process(batch)
    pipeline.finish()
    by_table: dict[str, list[BaseModel]] = defaultdict(list)
    for model in capture.models:
        by_table[spec_for(model).table].append(model)
    assert set(by_table) == {spec.table for spec in TABLES}
    return dict(by_table)


def table_row(spec: TableSpec, model: BaseModel) -> dict[str, Any]:
    """Today's table row, straight from the model: what the previous transform stored."""
    row = full_wire_row(spec, model)
    row.update(dict(spec.constants))
    if spec.time_from:
        row["TimeGenerated"] = row[spec.time_from]
    for old, new in spec.renames:
        if old in row:
            row[new] = row.pop(old)
    return {c["name"]: normal(row.get(c["name"]), c["type"]) for c in table_columns(spec)}


def normal(value: Any, kind: str) -> Any:
    """As Log Analytics holds a value: a missing string is "", a datetime is an instant."""
    if kind == "string":
        return "" if value is None else value
    if kind == "datetime" and isinstance(value, str):
        return parse_datetime(value)
    if kind == "datetime" and isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def rebuilt(spec: TableSpec, row: dict[str, Any]) -> dict[str, Any]:
    got = plan_for(spec).rebuild(json.loads(orjson.dumps(row)))
    return {c["name"]: normal(got[c["name"]], c["type"]) for c in table_columns(spec)}


def json_round_trip(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(orjson.dumps(row))


# ---------------------------------------------------------------------------- Python


def test_every_corpus_row_rebuilds_its_table_row(corpus):
    for table, models in corpus.items():
        spec = next(s for s in TABLES if s.table == table)
        for model in models:
            expected = table_row(spec, model)
            compact = wire_row(spec, model)
            assert rebuilt(spec, compact) == expected
            assert rebuilt(spec, full_wire_row(spec, model)) == expected  # previous version's
            assert compact[COMPACT_ROW_ID] == full_wire_row(spec, model)[ROW_ID]
            # The encoder's quick checks decide as evaluating the whole transform would.
            assert plan_for(spec).encode(full_wire_row(spec, model), check_all=True) == compact
            for plan in plan_for(spec).columns:
                for form in plan.forms:
                    if form.decode is not None and form.key in compact:
                        assert form.decode(compact) == plan.expression.eval(compact)
            assert plan_for(spec).expand(json_round_trip(compact)) == json_round_trip(
                full_wire_row(spec, model)
            )


def test_compact_rows_are_much_smaller(corpus):
    full = compact = 0
    for table, models in corpus.items():
        spec = next(s for s in TABLES if s.table == table)
        for model in models:
            full += len(orjson.dumps(full_wire_row(spec, model)))
            compact += len(orjson.dumps(wire_row(spec, model)))
    # Measured on this corpus: 0.53 (0.635 → 0.338 of raw on the bench's 20,000 records).
    assert compact < 0.56 * full


def test_unusual_values_go_in_full_and_still_rebuild():
    spec = spec_for(_event(0))
    odd = _event(
        1,
        actor_user_id="sql:pt_15c1e9f814274ff0",  # not a GUID: its own key
        operation="SomeNewOperation",  # not in the vocabulary
        object="a|b/p-3f9a/c",  # the patient form's separator in the path
        raw_record_ref="raw/2026/11/02/08/local-file.jsonl.gz#7",  # no sequence numbers
        target_resource_id="/SUBSCRIPTIONS/abc/resourceGroups/rg/providers/x/y",
        dvc_scope_id="abc",
    )
    compact = wire_row(spec, odd)
    assert rebuilt(spec, compact) == table_row(spec, odd)
    assert {"Operation", "RawRecordRef", "TargetResourceId"} <= set(compact)
    assert "ActorUserId" not in compact and compact["av"] == odd.actor_user_id


def test_keys_and_codes_are_distinct_and_never_full_names():
    for spec in TABLES:
        full = {c["name"].lower() for c in stream_columns(spec) if len(c["name"]) > 3}
        keys = [c["name"] for c in stream_columns(spec) if c["name"].lower() not in full]
        assert len(keys) == len(set(keys)) == len({k.lower() for k in keys})
        assert all(k == k.lower() and k not in ("id", "as", "in", "on", "by", "or") for k in keys)
        assert set(KEYS[spec.table].values()) <= set(keys)
    for packed in PACKED:
        assert len(set(packed.values)) == len(packed.values), packed.column
        assert len(code_of(len(packed.values) - 1, packed.width)) == packed.width


# ---------------------------------------------------------------------------- the text


def _sample(models: list[BaseModel], per_kind: int = 25) -> list[BaseModel]:
    """A few rows of each shape (source category, or every row of a small table)."""
    kinds: dict[str, list[BaseModel]] = defaultdict(list)
    for model in models:
        key = model.source_category if isinstance(model, AccessEvent) else "*"
        kinds[key].append(model)
    return [m for group in kinds.values() for m in group[:per_kind]]


def test_the_transform_text_run_by_duckdb_rebuilds_the_rows(corpus):
    engine_module = pytest.importorskip("phiwatch.rules.engine")
    for table, models in corpus.items():
        spec = next(s for s in TABLES if s.table == table)
        sample = _sample(models)
        schema = TableSchemas({"source": {c["name"]: c["type"] for c in stream_columns(spec)}})
        with engine_module.KqlEngine(schema) as engine:
            # The full form's expressions are the compact form's outer branch; DuckDB's SQL
            # for the events transform takes about 25 s to plan, so that one runs once.
            forms = (wire_row,) if table == "PhiAccessEvents_CL" else (wire_row, full_wire_row)
            for form in forms:
                engine.clear()
                engine.load_rows("source", [json_round_trip(form(spec, m)) for m in sample])
                result = engine.run(transform_kql(spec), datetime.now(UTC))
                got = {r["RowId"]: r for r in result.records()}
                for model in sample:
                    expected = table_row(spec, model)
                    row = got[expected["RowId"]]
                    for column in table_columns(spec):
                        name = column["name"]
                        value = normal(row[name], column["type"])
                        if isinstance(value, float):
                            assert math.isclose(value, expected[name]), name
                        else:
                            assert value == expected[name], (form.__name__, name)


def test_kusto_compiles_the_transform_to_the_table_columns():
    for spec in TABLES:
        schema = TableSchemas({"source": {c["name"]: c["type"] for c in stream_columns(spec)}})
        try:
            (analysis,) = analyze({"t": transform_kql(spec)}, schema).values()
        except ValidatorUnavailable as exc:
            pytest.skip(str(exc))
        assert analysis.errors == [], spec.table
        want = [
            (c["name"], {"boolean": "bool"}.get(c["type"], c["type"])) for c in table_columns(spec)
        ]
        assert analysis.result_columns == want


def test_the_transform_uses_only_what_a_dcr_transform_may():
    # The DCR subset (data-collection-transformations-kql): no coalesce, no replace_string.
    allowed = {"iif", "case", "strcat", "substring", "indexof", "strlen", "split", "tostring"}
    allowed |= {"isnotempty", "isnotnull", "todatetime"}
    for spec in TABLES:
        text = transform_kql(spec)
        assert text.startswith("source | ") and " | project " in text
        called = set(_calls(text))
        assert called <= allowed, called - allowed


def _calls(text: str) -> Iterator[str]:
    stripped = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    yield from re.findall(r"([a-z_]+)\(", stripped)


# ---------------------------------------------------------------------------- the outbox


def test_rows_the_previous_version_queued_are_delivered_as_they_are(
    logs_ingestion, credential, tmp_path
):
    outbox = LocalOutbox(tmp_path / "outbox")
    events = [_event(i) for i in range(3)]
    spec = spec_for(events[0])
    old = [json_round_trip(full_wire_row(spec, e)) for e in events]
    outbox.add(spec.stream, old)
    sink: SentinelSink = make_sink(logs_ingestion, outbox, credential)
    report = sink.deliver_outbox()
    assert report.entries_delivered == 1 and outbox.pending_count() == 0
    assert logs_ingestion.wire_rows(spec.stream) == old  # not re-encoded, not re-keyed
    plan: WirePlan = plan_for(spec)
    assert [rebuilt(spec, r) for r in old] == [table_row(spec, e) for e in events]
    assert [plan.expand(r) for r in old] == old


def _event(i: int, **overrides: Any) -> AccessEvent:
    values: dict[str, Any] = {
        "time_generated": T0,
        "event_uid": f"{i:032x}",
        "event_type": "Read",
        "event_result": "Success",
        "event_product": "FHIR Service",
        "operation": "Microsoft.HealthcareApis/services/fhir-R4/read",
        "object": "Patient/p-3f9a",
        "object_type": "Other",
        "actor_user_id": "11111111-aaaa-4bbb-8ccc-000000000001",
        "patient_ref": "p-3f9a",
        "target_resource_id": "/subscriptions/abc/resourcegroups/rg/providers/x/y",
        "dvc_scope_id": "abc",
        "phi_category": "clinical",
        "source_category": "AuditLogs",
        "raw_record_ref": (
            f"raw/2026/11/02/08/hub-p0-000000000000-000000000099-t20261102T080108915Z.jsonl.gz#{i}"
        ),
    }
    return AccessEvent(**{**values, **overrides})


def test_an_alert_keeps_its_title_and_time():
    model = Alert(
        alert_id="00000000-0000-4000-8000-000000000001",
        rule_id="mass-record-access",
        rule_name="Mass record access",
        severity="High",
        tactics=["Collection"],
        techniques=["T1530"],
        title="Mass record access",
        description="d",
        reasons=["r"],
        window_start=T0,
        window_end=T0,
        first_event_time=T0,
        last_event_time=T0,
        event_count=1,
        evidence_event_uids=["u"],
        detected_at=T0,
    )
    spec = spec_for(model)
    row = rebuilt(spec, wire_row(spec, model))
    assert row["AlertTitle"] == "Mass record access" and row["TimeGenerated"] == T0


@pytest.mark.parametrize("compact", [True, False])
def test_the_sink_sends_compact_rows_unless_told_to_send_full_ones(
    logs_ingestion, credential, tmp_path, compact: bool
):
    """PHIWATCH_SENTINEL_COMPACT_ROWS=false: full rows, for a workspace whose DCR is older
    than this code (it would drop the compact keys)."""
    events = [_event(i) for i in range(3)]
    spec = spec_for(events[0])
    sink = make_sink(logs_ingestion, LocalOutbox(tmp_path / "o"), credential, compact_rows=compact)
    sink.emit(sink_result(events))
    sent = logs_ingestion.wire_rows(spec.stream)
    expected = [wire_row(spec, e) if compact else full_wire_row(spec, e) for e in events]
    assert sent == [json_round_trip(r) for r in expected]
    assert [rebuilt(spec, r) for r in sent] == [table_row(spec, e) for e in events]
