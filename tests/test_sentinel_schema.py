"""Sentinel/Log Analytics infra stays in step with the models, and the rule and workbook only
use columns that exist.

(a) the committed infra/generated/log-analytics-schema.json equals a fresh generation, and
    the comparison catches a new model field; (b) the analytic-rule YAML respects Sentinel's
    template limits and, like the workbook, references only real columns; (c) the Bicep loads
    the generated schema and grants the right role on the DCR; (d) `phiwatch schema` prints
    every stream and transform.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from detections import detection_classes
from phiwatch.archive.archive import IntegrityConflict
from phiwatch.archive.integrity_alert import integrity_alert
from phiwatch.commands.app import app
from phiwatch.model import Alert
from phiwatch.quarantine import quarantine_alert
from phiwatch.rules.engine import KqlEngine
from phiwatch.rules.entities import ENTITY_IDENTIFIERS
from phiwatch.rules.fixtures import load_case
from phiwatch.rules.kql_check import analyze
from phiwatch.rules.loader import HUNTING_DIR
from phiwatch.rules.mitre import TACTICS, TECHNIQUE_TACTICS
from phiwatch.schema.export import (
    DCR_DESTINATION,
    bicep_document,
    describe_drift,
    render_bicep_json,
)
from phiwatch.schema.tables import SYSTEM_COLUMNS, TABLES, by_table, table_columns, transform_kql

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "infra" / "generated" / "log-analytics-schema.json"
SENTINEL = ROOT / "infra" / "sentinel"
RULE = ROOT / "kql" / "phiwatch-alerts-incident.yaml"
WORKBOOK = SENTINEL / "phiwatch-workbook.json"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
REGENERATE = "phiwatch schema --format bicep-json --out infra/generated/log-analytics-schema.json"

runner = CliRunner()


# --- (a) drift between the models and the committed schema -------------------------------


def test_committed_schema_equals_a_fresh_generation():
    committed = GENERATED.read_text(encoding="utf-8")
    fresh = render_bicep_json()
    if committed != fresh:
        problems = describe_drift(json.loads(committed), json.loads(fresh))
        pytest.fail("schema drift, run `" + REGENERATE + "`:\n" + "\n".join(problems))


def test_a_new_model_field_is_detected_as_drift():
    class AlertWithTriageNote(Alert):
        triage_note: str | None = None

    tables = tuple(
        replace(spec, model=AlertWithTriageNote) if spec.model is Alert else spec for spec in TABLES
    )
    committed = GENERATED.read_text(encoding="utf-8")
    fresh = render_bicep_json(tables)
    assert fresh != committed
    problems = describe_drift(json.loads(committed), json.loads(fresh))
    assert "PhiAlerts_CL.columns: column TriageNote added (string)" in problems
    assert "PhiAlerts_CL.streamColumns: column TriageNote added (string)" in problems
    assert all(p.startswith("PhiAlerts_CL.") for p in problems), problems


def test_schema_check_passes_on_the_committed_file_and_fails_on_drift(tmp_path):
    ok = runner.invoke(app, ["schema", "-f", "bicep-json", "--out", str(GENERATED), "--check"])
    assert ok.exit_code == 0, ok.output

    stale = json.loads(GENERATED.read_text(encoding="utf-8"))
    stale["tables"][0]["columns"].pop()
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    drift = runner.invoke(app, ["schema", "-f", "bicep-json", "--out", str(path), "--check"])
    assert drift.exit_code == 1
    assert "column RowId added" in drift.output
    assert json.loads(path.read_text(encoding="utf-8")) == stale  # --check never writes


def test_generation_is_deterministic_and_sorted():
    text = render_bicep_json()
    assert text == render_bicep_json()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


# --- KQL column references -----------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_COMMENTS = re.compile(r"//[^\n]*")
_WORKBOOK_PARAMS = re.compile(r"\{[A-Za-z][\w:]*\}")
# Identifiers that look like columns: PascalCase, or Log Analytics' _PascalCase.
_COLUMN_LIKE = re.compile(r"(?<![\w.])_?[A-Z][A-Za-z0-9_]*")
# `Name = ...` in let/extend/project/summarize/by defines a name (not ==, !=, <=, >=).
_DEFINED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*=(?!=)")
_TABLE_NAMES = {spec.table for spec in TABLES}


def _strip(query: str) -> str:
    query = _STRINGS.sub('""', query)
    query = _COMMENTS.sub("", query)
    return _WORKBOOK_PARAMS.sub("", query)


def unknown_columns(query: str) -> set[str]:
    """Column-like names the query uses that neither its tables nor the query define."""
    code = _strip(query)
    tokens = set(_COLUMN_LIKE.findall(code))
    tables = tokens & _TABLE_NAMES
    assert tables, f"query reads no phiwatch table:\n{query}"
    known = {name for name, _ in SYSTEM_COLUMNS} | _TABLE_NAMES
    for table in tables:
        known |= {c["name"] for c in table_columns(by_table(table))}
    known |= set(_DEFINED.findall(code))
    return tokens - known


def test_the_column_check_catches_a_misspelt_column():
    assert unknown_columns('PhiAlerts_CL | where AlertTitel == "x"') == {"AlertTitel"}
    assert unknown_columns("PhiAlerts_CL | where Title != ''") == {"Title"}  # renamed by the DCR
    assert unknown_columns("PhiAlerts_CL | extend N = EventCount | where N > 1") == set()
    assert unknown_columns("PhiAccessEvents_CL | where TimeGenerated {TimeRange}") == set()


# --- (b) the analytic rule -----------------------------------------------------------------

# Sentinel's tactics, the ATT&CK tactics of each technique, and the entity identifiers: the
# tables `phiwatch rules lint` uses.
VALID_TACTICS = TACTICS
SEVERITIES = {"Informational", "Low", "Medium", "High"}
_DURATION = re.compile(r"^(\d+)([mhd])$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def duration(text: str) -> timedelta:
    match = _DURATION.match(str(text))
    assert match, f"not a Sentinel duration: {text!r}"
    value, unit = int(match[1]), match[2]
    return {"m": timedelta(minutes=value), "h": timedelta(hours=value)}.get(
        unit, timedelta(days=value)
    )


@pytest.fixture(scope="module")
def rule() -> dict[str, Any]:
    return yaml.safe_load(RULE.read_text(encoding="utf-8"))


def projected_columns(query: str) -> list[str]:
    """Output columns of the query's final `| project` (with `Name = expr` items)."""
    code = _COMMENTS.sub("", query)
    last = list(re.finditer(r"\|\s*project\s", code))
    assert last, "the rule query must end with an explicit | project"
    body = code[last[-1].end() :]
    assert "|" not in _STRINGS.sub('""', body), "| project must be the last operator"
    items, depth, current = [], 0, ""
    for char in body:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.split("=", 1)[0].strip() for item in items if item.strip()]


def test_rule_has_the_required_fields_and_values(rule):
    for key in (
        "id",
        "name",
        "description",
        "severity",
        "requiredDataConnectors",
        "queryFrequency",
        "queryPeriod",
        "triggerOperator",
        "triggerThreshold",
        "tactics",
        "relevantTechniques",
        "query",
        "entityMappings",
        "version",
        "kind",
    ):
        assert key in rule, key
    assert _GUID.match(rule["id"])
    assert rule["id"] == "007c8ebe-dc17-4030-827e-32581ffdc89b"  # never change a rule id
    assert 0 < len(rule["name"]) <= 256
    assert 0 < len(rule["description"]) <= 5000
    assert rule["description"].startswith("Identifies")
    assert rule["severity"] == "Medium"
    assert rule["requiredDataConnectors"] == []
    assert rule["kind"] == "Scheduled"
    assert rule["version"] == "1.0.0" and len(rule["version"]) <= 20
    assert rule["triggerOperator"] in {"gt", "lt", "eq", "ne"}
    assert 0 <= rule["triggerThreshold"] <= 10000
    assert rule["eventGroupingSettings"] == {"aggregationKind": "AlertPerResult"}


def test_rule_schedule_is_within_sentinel_limits(rule):
    frequency, period = duration(rule["queryFrequency"]), duration(rule["queryPeriod"])
    for value in (frequency, period):
        assert timedelta(minutes=5) <= value <= timedelta(days=14)
    assert period >= frequency
    if period >= timedelta(days=2):
        assert frequency >= timedelta(hours=1)
    assert frequency == timedelta(minutes=5)


def test_rule_lookback_is_ingestion_delay_safe(rule):
    query = rule["query"]
    lets = dict(re.findall(r"let (\w+) = (\w+);", query))
    lookback, delay = duration(lets["rule_lookback"]), duration(lets["ingestion_delay"])
    # Each ingested row is claimed by exactly one run...
    assert lookback == duration(rule["queryFrequency"])
    assert "| where ingestion_time() > ago(rule_lookback)" in query
    # ...and rows whose TimeGenerated (= first detection) is older still fall in the period.
    assert lookback + delay == duration(rule["queryPeriod"])
    assert "| where TimeGenerated > ago(rule_lookback + ingestion_delay)" in query
    assert delay >= timedelta(minutes=15)  # at least the default allowed lateness


def test_rule_keeps_the_latest_version_of_each_alert(rule):
    query = rule["query"]
    assert "sort by AlertId asc, LastEventTime desc, EventCount desc, SeverityRank desc" in query
    assert "row_number(1, prev(AlertId) != AlertId)" in query
    assert "| where VersionRank == 1" in query


def test_rule_query_fits_and_uses_only_existing_columns(rule):
    assert 0 < len(rule["query"]) <= 10000
    assert "PhiAlerts_CL" in rule["query"]
    assert unknown_columns(rule["query"]) == set()


def test_rule_entity_mappings_are_valid(rule):
    mappings = rule["entityMappings"]
    assert 1 <= len(mappings) <= 5
    outputs = set(projected_columns(rule["query"]))
    for mapping in mappings:
        kind = mapping["entityType"]
        assert kind in ENTITY_IDENTIFIERS, kind
        fields = mapping["fieldMappings"]
        assert 1 <= len(fields) <= 3
        identifiers = [f["identifier"] for f in fields]
        assert len(set(identifiers)) == len(identifiers), f"duplicate identifier in {kind}"
        for field in fields:
            assert field["identifier"] in ENTITY_IDENTIFIERS[kind], field
            assert re.match(r"^[a-zA-Z_]+\w*$", field["columnName"])
            assert field["columnName"] in outputs, field
    by_type = {
        m["entityType"]: {f["identifier"]: f["columnName"] for f in m["fieldMappings"]}
        for m in mappings
    }
    assert by_type["Account"]["AadUserId"] == "ActorUserId"
    assert by_type["IP"] == {"Address": "SrcIpAddr"}
    assert by_type["AzureResource"] == {"ResourceId": "TargetResourceId"}


def test_rule_custom_details_and_alert_overrides_are_valid(rule):
    details = rule["customDetails"]
    outputs = set(projected_columns(rule["query"]))
    assert len(details) <= 20
    assert {"RuleId", "DistinctPatientCount", "EventCount", "Reasons"} <= set(details)
    for key, column in details.items():
        assert re.match(r"^[a-zA-Z]+\w*$", key) and len(key) <= 20, key
        assert re.match(r"^[a-zA-Z_]+\w*$", column), column
        assert column in outputs, column

    override = rule["alertDetailsOverride"]
    assert override["alertDisplayNameFormat"] == "{{AlertTitle}}"
    assert override["alertDescriptionFormat"] == "{{Description}}"
    for key in ("alertDisplayNameFormat", "alertDescriptionFormat"):
        placeholders = re.findall(r"\{\{(\w+)\}\}", override[key])
        assert 1 <= len(placeholders) <= 3
        assert set(placeholders) <= outputs
    assert len(override["alertDisplayNameFormat"]) <= 256
    assert override["alertSeverityColumnName"] == "Severity" in outputs
    assert override["alertTacticsColumnName"] == "Tactics" in outputs
    # Tactics is a dynamic array in the table: the rule must hand Sentinel a string column.
    assert "Tactics = strcat_array(Tactics," in rule["query"]


def test_rule_tactics_and_techniques_are_consistent(rule):
    tactics, techniques = set(rule["tactics"]), set(rule["relevantTechniques"])
    assert tactics <= VALID_TACTICS
    for technique in techniques:
        assert re.match(r"^T\d{4}$", technique)
        assert TECHNIQUE_TACTICS[technique] & tactics, f"{technique} has no listed tactic"
    assert tactics == {
        "Collection",
        "Exfiltration",
        "CredentialAccess",
        "Discovery",
        "DefenseEvasion",
        "Impact",
        "PrivilegeEscalation",
        "InitialAccess",
        "Persistence",
    }


def test_rule_covers_every_phiwatch_detection(rule):
    tactics, techniques = set(rule["tactics"]), set(rule["relevantTechniques"])
    conflict = IntegrityConflict(name="n", existing_sha256="0" * 64, kept_as="k")
    integrity = integrity_alert(conflict, None)
    sources = [(cls.rule_id, cls.tactics, cls.techniques) for cls in detection_classes()]
    sources.append((integrity.rule_id, integrity.tactics, integrity.techniques))
    quarantined = quarantine_alert("b", "raw/b", 1, "ValueError", 5, None)
    sources.append((quarantined.rule_id, quarantined.tactics, quarantined.techniques))
    for rule_id, rule_tactics, rule_techniques in sources:
        assert set(rule_tactics) <= tactics, rule_id
        assert {t.split(".")[0] for t in rule_techniques} <= techniques, rule_id


def test_rule_incident_configuration(rule):
    config = rule["incidentConfiguration"]
    assert config["createIncident"] is True
    grouping = config["groupingConfiguration"]
    assert grouping["enabled"] is True
    assert grouping["matchingMethod"] == "Selected"
    assert duration(grouping["lookbackDuration"]) == timedelta(hours=5)
    mapped = {m["entityType"] for m in rule["entityMappings"]}
    assert grouping["groupByEntities"] and set(grouping["groupByEntities"]) <= mapped
    assert "Account" in grouping["groupByEntities"]
    assert rule["suppressionEnabled"] is False


def test_rule_durations_convert_to_iso8601_in_bicep(rule):
    # rule.bicep turns '5m' into 'PT5M': only minutes and hours survive that conversion.
    values = [
        rule["queryFrequency"],
        rule["queryPeriod"],
        rule["suppressionDuration"],
        rule["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"],
    ]
    for value in values:
        assert re.match(r"^\d+[mh]$", value), value


def test_rule_file_is_ascii():
    RULE.read_text(encoding="utf-8").encode("ascii")  # Sentinel CI rejects non-ASCII


# --- (b) the workbook ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def workbook() -> dict[str, Any]:
    return json.loads(WORKBOOK.read_text(encoding="utf-8"))


def _items(items: list[dict[str, Any]]):
    for item in items:
        yield item
        yield from _items(item.get("content", {}).get("items", []))


def _queries(workbook: dict[str, Any]) -> dict[str, str]:
    return {
        item["name"]: item["content"]["query"]
        for item in _items(workbook["items"])
        if item["type"] == 3
    }


def test_workbook_has_a_time_range_parameter(workbook):
    assert workbook["version"] == "Notebook/1.0"
    parameters = [
        p
        for item in _items(workbook["items"])
        if item["type"] == 9
        for p in item["content"]["parameters"]
    ]
    assert any(p["name"] == "TimeRange" and p["type"] == 4 for p in parameters)
    for item in _items(workbook["items"]):
        if item["type"] == 3:
            content = item["content"]
            assert content["resourceType"] == "microsoft.operationalinsights/workspaces"
            if "{TimeRange" in content["query"]:
                assert content.get("timeContextFromParameter") == "TimeRange", item["name"]
            else:
                assert "timeContext" in content, item["name"]


def test_workbook_queries_use_only_existing_columns(workbook):
    queries = _queries(workbook)
    assert len(queries) >= 6
    for name, query in queries.items():
        assert unknown_columns(query) == set(), name
    used = set().union(*(set(_COLUMN_LIKE.findall(_strip(q))) for q in queries.values()))
    assert used >= _TABLE_NAMES


def test_workbook_has_the_required_views(workbook):
    queries = _queries(workbook)
    text = "\n".join(queries.values())
    assert "EventProduct" in queries["access-volume"] and "PhiCategory" in queries["access-volume"]
    assert "dcount(PatientRef" in queries["top-actors"] and "top 20" in queries["top-actors"]
    assert "by AlertId" in queries["alerts-over-time"] and "RuleId" in queries["alerts-over-time"]
    rates = queries["error-rates"]
    assert "sum(DeadLetters)" in rates and "sum(Records)" in rates
    assert "sum(Late)" in rates and "sum(Events)" in rates
    seen = queries["source-last-seen"]
    assert "mv-expand" in seen and "SourceLastSeen" in seen and "max(SeenAt)" in seen
    assert '> 1h, "Stale"' in seen
    stale = next(i for i in _items(workbook["items"]) if i["name"] == "source-last-seen")
    grid = stale["content"]["gridSettings"]["formatters"][0]["formatOptions"]["thresholdsGrid"]
    assert any(t["thresholdValue"] == "Stale" for t in grid)
    assert "ingestion_time()" in text


# Workbook parameters as Sentinel substitutes them, with values that make the query plain KQL
# (a time range becomes a `>` comparison, as `{TimeRange}` expands to a between/>= filter).
_WORKBOOK_VALUES = {
    "{TimeRange}": "> ago(1d)",
    "{TimeRange:grain}": "1h",
    "{PatientRef:escape}": "pat-example",
}


def _substituted(query: str) -> str:
    for placeholder, value in _WORKBOOK_VALUES.items():
        query = query.replace(placeholder, value)
    left = _WORKBOOK_PARAMS.findall(_STRINGS.sub('""', query)) + re.findall(r"\{\w+[:\w]*\}", query)
    assert not left, f"no test value for workbook parameter(s) {left}"
    return query


def test_every_workbook_query_lints_with_kusto_language(workbook):
    """The queries as Kusto.Language reads them, against kql/schema/tables.json (the schema the
    rules lint against): a syntax error, a wrong column or its wrong case fails here."""
    queries = {name: _substituted(query) for name, query in _queries(workbook).items()}
    analyses = analyze(queries)
    problems = {
        name: [
            f"{d.code} {d.message}"
            for d in analysis.diagnostics
            if d.severity in ("Error", "Warning")
        ]
        for name, analysis in analyses.items()
    }
    assert {name: found for name, found in problems.items() if found} == {}
    broken = analyze(
        {"broken": queries["patient-accesses"].replace("and PatientRef ==", "and PatientRefs ==")}
    )
    assert [d.code for d in broken["broken"].errors] == ["KS142"]


def _item(workbook: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in _items(workbook["items"]) if i["name"] == name)


def test_workbook_patient_view(workbook):
    parameters = [p for p in _item(workbook, "patient-parameters")["content"]["parameters"]]
    (patient,) = parameters
    assert patient["name"] == "PatientRef" and patient["type"] == 1 and patient["value"] == ""
    queries = _queries(workbook)
    for name in ("patient-accesses", "patient-alerts"):
        item = _item(workbook, name)
        # Hidden until a pseudonym is entered: an empty PatientRef would list every
        # access without one (sign-ins, control-plane events).
        assert item["conditionalVisibility"] == {
            "parameterName": "PatientRef",
            "comparison": "isNotEqualTo",
            "value": "",
        }
        # The value is escaped into a string literal, never pasted into the query as code.
        assert 'let patient = "{PatientRef:escape}";' in queries[name]
        assert "| where isnotempty(patient) and PatientRef == patient" in queries[name]
    accesses = queries["patient-accesses"]
    for column in (
        "ActorUserId",
        "ActorUsername",
        "ActingAppId",
        "Operation",
        "EventResult",
        "SrcIpAddr",
        "EventUid",
        "RawRecordRef",
    ):
        assert column in accesses.split("| project", 1)[1], column
    assert "arg_min(TimeGenerated, *) by EventUid" in accesses
    alerts = queries["patient-alerts"]
    assert "mv-expand EventUid = EvidenceEventUids" in alerts and "by AlertId" in alerts


def test_workbook_items_are_well_formed(workbook):
    """What the workbook editor needs to load the file: known item types, unique item names and
    parameter ids, every {Parameter} a query or visibility condition names is defined."""
    assert workbook["$schema"].endswith("/workbook.json")
    items = list(_items(workbook["items"]))
    assert {i["type"] for i in items} <= {1, 3, 9, 12}
    names = [i["name"] for i in items]
    assert len(names) == len(set(names))
    parameters = [p for i in items if i["type"] == 9 for p in i["content"]["parameters"]]
    ids = [p["id"] for p in parameters]
    assert len(ids) == len(set(ids))
    defined = {p["name"] for p in parameters}
    for item in items:
        condition = item.get("conditionalVisibility")
        if condition:
            assert condition["parameterName"] in defined, item["name"]
        if item["type"] == 3:
            used = set(re.findall(r"\{(\w+)(?::\w+)?\}", item["content"]["query"]))
            assert used <= defined, (item["name"], used - defined)


def test_workbook_coverage_view(workbook):
    coverage = _queries(workbook)["resource-coverage"]
    assert "by Resource, Category, Hour = bin(TimeGenerated, 1h)" in coverage
    for column in ("FirstRecord", "LastRecord", "SilentHours", "Status"):
        assert column in coverage.rsplit("| project", 1)[1], column
    grid = _item(workbook, "resource-coverage")["content"]["gridSettings"]
    thresholds = grid["formatters"][0]["formatOptions"]["thresholdsGrid"]
    assert any(t["thresholdValue"] == "Stale" for t in thresholds)


def test_workbook_patient_query_lists_what_the_hunting_query_lists(workbook):
    """The workbook's patient table and kql/hunting/phiwatch-patient-access.yaml, run on the
    hunting query's own case: the same events, in the same order."""
    case = load_case(
        HUNTING_DIR / "tests" / "phiwatch-patient-access" / "fires-every-access-to-the-patient.yaml"
    ).case
    query = _queries(workbook)["patient-accesses"]
    query = query.replace("{PatientRef:escape}", case.parameters["patient"])
    query = query.replace("{TimeRange}", "> ago(30d)")
    with KqlEngine() as engine:
        for table, rows in case.tables.items():
            engine.load_rows(table, rows)
        result = engine.run(query, case.now)
    uids = [row["EventUid"] for row in result.records()]
    assert uids == [row["EventUid"] for row in case.expected.rows]


# --- (c) Bicep -----------------------------------------------------------------------------

_LOADS = re.compile(r"load(?:Json|Yaml|Text)Content\('([^']+)'\)")


def _bicep(name: str) -> str:
    return (SENTINEL / name).read_text(encoding="utf-8")


def test_bicep_files_load_files_that_exist():
    files = sorted(SENTINEL.glob("*.bicep"))
    assert {f.name for f in files} >= {
        "main.bicep",
        "tables.bicep",
        "dcr.bicep",
        "dce.bicep",
        "rule.bicep",
        "workbook.bicep",
    }
    for file in files:
        text = file.read_text(encoding="utf-8")
        for path in _LOADS.findall(text):
            assert (file.parent / path).resolve().is_file(), f"{file.name}: {path}"
        for module in re.findall(r"^module \w+ '([^']+)'", text, flags=re.MULTILINE):
            assert (file.parent / module).is_file(), f"{file.name}: {module}"


def test_tables_and_dcr_are_built_from_the_generated_schema():
    load = "loadJsonContent('../generated/log-analytics-schema.json')"
    tables, dcr = _bicep("tables.bicep"), _bicep("dcr.bicep")
    assert load in tables and load in dcr
    assert "plan: 'Analytics'" in tables
    assert "columns: t.columns" in tables
    # Every field the Bicep reads from the schema exists in every generated table entry.
    document = json.loads(GENERATED.read_text(encoding="utf-8"))
    for text in (tables, dcr):
        for key in set(re.findall(r"\bt\.(\w+)", text)):
            assert all(key in table for table in document["tables"]), key
    # Declarations are built with a for loop (checkov's Bicep parser has no lambdas), keyed by
    # each table's stream and holding its stream columns.
    assert "streamDeclarations: streamDeclarations" in dcr
    assert "for t in schema.tables" in dcr
    assert "t.stream" in dcr and "t.streamColumns" in dcr


def test_dcr_streams_match_schema_tables():
    document = json.loads(GENERATED.read_text(encoding="utf-8"))
    assert [t["stream"] for t in document["tables"]] == [spec.stream for spec in TABLES]
    assert [t["table"] for t in document["tables"]] == [spec.table for spec in TABLES]
    for entry, spec in zip(document["tables"], TABLES, strict=True):
        assert entry["stream"].startswith("Custom-")
        assert entry["outputStream"] == f"Custom-{spec.table}"
        assert entry["transformKql"] == transform_kql(spec)
        assert entry["table"].endswith("_CL")
    dcr = _bicep("dcr.bicep")
    assert f"var destinationName = '{DCR_DESTINATION}'" in dcr


def test_dcr_grants_monitoring_metrics_publisher_on_the_dcr():
    dcr = _bicep("dcr.bicep")
    assert f"'{MONITORING_METRICS_PUBLISHER}'" in dcr
    assert "Microsoft.Authorization/roleAssignments" in dcr
    assert "scope: dcr" in dcr
    assert "kind: useDce ? null : 'Direct'" in dcr
    assert "output immutableId string = dcr.properties.immutableId" in dcr
    main = _bicep("main.bicep")
    assert "publisherPrincipalId: functionAppPrincipalId" in main
    assert "param useDce bool = false" in main


def test_rule_bicep_reads_only_fields_the_template_has(rule):
    text = _bicep("rule.bicep")
    assert "loadYamlContent('../../kql/phiwatch-alerts-incident.yaml')" in text
    assert "Microsoft.SecurityInsights/alertRules@" in text and "kind: 'Scheduled'" in text
    for key in re.findall(r"\btemplate\.(\w+)", text):
        assert key in rule, key
    grouping = rule["incidentConfiguration"]["groupingConfiguration"]
    for key in re.findall(r"\bgrouping\.(\w+)", text):
        assert key in grouping, key


def test_workbook_bicep_deploys_the_workbook_json():
    text = _bicep("workbook.bicep")
    assert "loadJsonContent('phiwatch-workbook.json')" in text
    assert "Microsoft.Insights/workbooks@" in text and "category: 'sentinel'" in text


def test_example_parameters_match_main_bicep():
    main = _bicep("main.bicep")
    params = dict(re.findall(r"^param (\w+) \w+( = .*)?$", main, flags=re.MULTILINE))
    example = json.loads((SENTINEL / "main.parameters.example.json").read_text(encoding="utf-8"))
    given = set(example["parameters"])
    assert given <= set(params), given - set(params)
    required = {name for name, default in params.items() if not default}
    assert required <= given, required - given


# --- (d) the CLI -----------------------------------------------------------------------------


def test_schema_dcr_prints_every_stream_and_transform():
    result = runner.invoke(app, ["schema", "--format", "dcr"])
    assert result.exit_code == 0, result.output
    for spec in TABLES:
        assert spec.stream in result.output
        assert transform_kql(spec) in result.output
    document = json.loads(result.output)
    assert list(document["streamDeclarations"]) == [spec.stream for spec in TABLES]
    flows = {flow["streams"][0]: flow for flow in document["dataFlows"]}
    for spec in TABLES:
        assert flows[spec.stream]["transformKql"] == transform_kql(spec)
        assert flows[spec.stream]["outputStream"] == f"Custom-{spec.table}"
        assert flows[spec.stream]["destinations"] == [DCR_DESTINATION]


def test_schema_table_and_json_formats(tmp_path):
    table = runner.invoke(app, ["schema", "--format", "table"])
    assert table.exit_code == 0, table.output
    for spec in TABLES:
        assert spec.table in table.output
    assert "AlertTitle" in table.output and "renamed by the DCR" in table.output

    out = tmp_path / "all.json"
    result = runner.invoke(app, ["schema", "--format", "json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [t["table"] for t in document["tables"]] == [spec.table for spec in TABLES]
    assert document["dcr"]["streamDeclarations"]
    assert bicep_document()["tables"][1]["transformKql"] == document["tables"][1]["transformKql"]


def test_readme_queries_use_only_existing_columns():
    readme = (SENTINEL / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```kusto\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        assert unknown_columns(block) == set(), block
