"""kql/schema/tables.json: generated from the models, shared by lint and the engine, and a
test fails when the committed copy is stale."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.model import AccessEvent
from phiwatch.rules import tables
from phiwatch.rules.tables import SCHEMA_FILE, load_schema, render_schema, schema_drift
from phiwatch.schema.tables import TABLES

runner = CliRunner()


def test_committed_schema_file_equals_a_fresh_generation():
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    if committed != render_schema():
        problems = schema_drift(json.loads(committed), json.loads(render_schema()))
        raise AssertionError(
            "kql/schema/tables.json is stale, run `phiwatch rules schema --write`:\n"
            + "\n".join(problems)
        )


def test_a_new_model_field_is_drift(monkeypatch):
    class EventWithWard(AccessEvent):
        ward: str | None = None

    altered = tuple(
        replace(s, model=EventWithWard) if s.model is AccessEvent else s for s in TABLES
    )
    monkeypatch.setattr(tables, "TABLES", altered)
    fresh = json.loads(render_schema())
    problems = schema_drift(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")), fresh)
    assert problems == ["PhiAccessEvents_CL: column Ward added (string)"]


def test_check_passes_on_the_committed_file_and_fails_on_a_stale_one(tmp_path):
    ok = runner.invoke(app, ["rules", "schema", "--check"])
    assert ok.exit_code == 0, ok.output
    stale = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    del stale["tables"]["PhiAlerts_CL"]["columns"]["AlertTitle"]
    stale["tables"]["SigninLogs"]["columns"]["IsInteractive"] = "string"
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    drift = runner.invoke(app, ["rules", "schema", "--check", "--path", str(path)])
    assert drift.exit_code == 1
    assert "PhiAlerts_CL: column AlertTitle added (string)" in drift.output
    assert "SigninLogs.IsInteractive: type string -> bool" in drift.output
    assert "phiwatch rules schema --write" in drift.output
    write = runner.invoke(app, ["rules", "schema", "--write", "--path", str(path)])
    assert write.exit_code == 0 and path.read_text(encoding="utf-8") == render_schema()


def test_tables_are_the_dcr_transformed_models_plus_log_analytics_columns():
    schema = load_schema()
    events = schema.columns("PhiAccessEvents_CL")
    assert list(events)[:2] == ["TimeGenerated", "EventUid"]
    assert events["RecordCount"] == "long" and events["SrcGeoLatitude"] == "real"
    assert events["EventSchema"] == "string"  # a constant the DCR transform adds back
    alerts = schema.columns("PhiAlerts_CL")
    assert "AlertTitle" in alerts and "Title" not in alerts  # renamed by the DCR
    assert alerts["TimeGenerated"] == "datetime" and alerts["Tactics"] == "dynamic"
    for table in ("PhiAccessEvents_CL", "PhiAlerts_CL", "PhiPipelineHealth_CL", "AzureActivity"):
        for column in ("TenantId", "Type", "_ResourceId", "_SubscriptionId", "SourceSystem"):
            assert column in schema.columns(table), (table, column)
    assert schema.columns("AzureActivity")["OperationNameValue"] == "string"
    assert schema.columns("AzureDiagnostics")["httpStatusCode_d"] == "real"
    assert schema.columns("SigninLogs")["LocationDetails"] == "dynamic"
    kusto = schema.for_kusto()
    assert kusto["SigninLogs"]["IsInteractive"] == "bool"
    assert kusto["PhiPipelineHealth_CL"]["Records"] == "long"


def test_print_writes_nothing(tmp_path):
    result = runner.invoke(app, ["rules", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(render_schema())
