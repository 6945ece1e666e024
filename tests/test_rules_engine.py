"""The local KQL engine: the schema's tables in DuckDB, queries with a pinned now()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phiwatch.model import AccessEvent, Alert
from phiwatch.rules.engine import KqlEngine, QueryFailed, RowError, UnsupportedConstruct

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine():
    with KqlEngine() as engine:
        yield engine


def reads(actor: str, patients: int, minutes_ago: float) -> list[dict]:
    at = NOW - timedelta(minutes=minutes_ago)
    return [
        {
            "TimeGenerated": (at + timedelta(seconds=i)).isoformat(),
            "ActorUserId": actor,
            "PatientRef": f"p{i}",
            "EventResult": "Success",
        }
        for i in range(patients)
    ]


def test_every_schema_table_exists_empty(engine):
    for table in ("PhiAccessEvents_CL", "PhiAlerts_CL", "AzureActivity", "SigninLogs"):
        assert len(engine.run(f"{table} | take 5", NOW)) == 0


def test_now_and_ago_are_pinned(engine):
    engine.load_rows("PhiAccessEvents_CL", reads("alice", 3, 5) + reads("bob", 2, 70))
    query = (
        "PhiAccessEvents_CL | where TimeGenerated > ago(1h)"
        " | summarize Patients = dcount(PatientRef), Last = max(TimeGenerated) by ActorUserId"
        " | extend Now = now()"
    )
    result = engine.run(query, NOW)
    assert result.columns == ["ActorUserId", "Patients", "Last", "Now"]
    assert result.types == ["string", "long", "datetime", "datetime"]
    assert result.records() == [
        {
            "ActorUserId": "alice",
            "Patients": 3,
            "Last": NOW - timedelta(minutes=5) + timedelta(seconds=2),
            "Now": NOW,
        }
    ]
    later = engine.run(query, NOW + timedelta(hours=2))  # same data, another now
    assert later.rows == []


def test_times_with_offsets_and_naive_times_are_utc(engine):
    engine.load_rows(
        "PhiAccessEvents_CL",
        [
            {"TimeGenerated": "2026-01-15T12:30:00+01:00", "EventUid": "offset"},
            {"TimeGenerated": datetime(2026, 1, 15, 11, 30), "EventUid": "naive"},
            {"TimeGenerated": "2026-01-15T11:30:00Z", "EventUid": "zulu"},
        ],
    )
    result = engine.run("PhiAccessEvents_CL | summarize make_set(EventUid) by TimeGenerated", NOW)
    ((when, uids),) = result.rows
    assert when == datetime(2026, 1, 15, 11, 30, tzinfo=UTC)
    assert sorted(uids) == ["naive", "offset", "zulu"]


def test_dynamic_results_are_parsed_json(engine):
    engine.load_rows(
        "PhiAlerts_CL",
        [{"TimeGenerated": NOW, "AlertId": "a", "Tactics": ["Collection", "Exfiltration"]}],
    )
    result = engine.run(
        "PhiAlerts_CL | project Tactics, First = tostring(Tactics[0]),"
        ' Joined = strcat_array(Tactics, ",")',
        NOW,
    )
    assert result.types == ["dynamic", "string", "string"]
    assert result.rows == [
        (["Collection", "Exfiltration"], "Collection", "Collection,Exfiltration")
    ]


def test_unknown_columns_and_tables_and_bad_times_are_row_errors(engine):
    with pytest.raises(RowError, match="has no column actoruserid") as caught:
        engine.load_rows("PhiAccessEvents_CL", [{"EventUid": "x"}, {"actoruserid": "a"}])
    assert (caught.value.index, caught.value.column) == (1, "actoruserid")
    with pytest.raises(RowError, match="unknown table PhiAccessEvent_CL"):
        engine.load_rows("PhiAccessEvent_CL", [])
    with pytest.raises(RowError, match="not an ISO 8601 time"):
        engine.load_rows("PhiAccessEvents_CL", [{"TimeGenerated": "yesterday"}])


def test_unsupported_constructs_are_reported_not_guessed(engine):
    with pytest.raises(UnsupportedConstruct) as caught:
        engine.run("PhiAlerts_CL | extend Ingested = ingestion_time()", NOW)
    assert "ingestion_time" in caught.value.construct


def test_broken_queries_fail(engine):
    with pytest.raises(QueryFailed):
        engine.run("PhiAccessEvents_CL | where", NOW)
    with pytest.raises(QueryFailed):
        engine.run("PhiAccessEvents_CL | where NoSuchColumn == 1", NOW)


def test_models_load_as_the_rows_log_analytics_stores(engine):
    event = AccessEvent(
        time_generated=NOW - timedelta(minutes=1),
        event_uid="e1",
        event_type="Read",
        event_result="Success",
        event_product="FHIR Service",
        operation="read",
        source_category="AuditLogs",
        raw_record_ref="raw/x#1",
    )
    alert = Alert(
        alert_id="a1",
        rule_id="mass-record-access",
        rule_name="Mass",
        severity="High",
        tactics=["Collection"],
        techniques=["T1530"],
        title="Mass patient record access",
        description="d",
        reasons=["r"],
        window_start=NOW,
        window_end=NOW,
        first_event_time=NOW,
        last_event_time=NOW,
        event_count=1,
        evidence_event_uids=["e1"],
        detected_at=NOW - timedelta(minutes=3),
    )
    assert engine.load_records([event, alert]) == {"PhiAccessEvents_CL": 1, "PhiAlerts_CL": 1}
    events = engine.run("PhiAccessEvents_CL | project EventSchema, EventVendor", NOW)
    assert events.rows == [("AuditEvent", "Microsoft")]
    alerts = engine.run("PhiAlerts_CL | project TimeGenerated, AlertTitle", NOW)
    assert alerts.rows == [(NOW - timedelta(minutes=3), "Mass patient record access")]


def test_clear_and_ndjson(engine, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"TimeGenerated": "2026-01-15T11:00:00Z", "EventUid": "a", "NotAColumn": 1}\n'
        '{"TimeGenerated": "2026-01-15T11:01:00Z", "EventUid": "b"}\n',
        encoding="utf-8",
    )
    assert engine.load_ndjson("PhiAccessEvents_CL", [path]) == 2
    assert len(engine.run("PhiAccessEvents_CL", NOW)) == 2
    engine.clear()
    assert len(engine.run("PhiAccessEvents_CL", NOW)) == 0
