"""Azure SQL audit (`SQLSecurityAuditEvents`) normaliser on documented shapes and every quirk
(issue #14 item 1, "Bad input"); the statement text never leaves."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from phiwatch.config import Settings
from phiwatch.detect.grouping import actor_key
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route
from phiwatch.sources.sql_sensitivity import parse_sensitivity
from phiwatch.sources.sql_statement import statement_kind
from phiwatch.wiring import build_pipeline
from tests.conftest import TEST_KEY_HEX
from tests.harness import batches_of
from tests.records import (
    SQL_DB_ID,
    SQL_SENSITIVITY_FULL,
    SQL_SENSITIVITY_SHORT,
    SQL_SERVER_ID,
    SUB,
    sql,
    sql_failed_login,
)

MRN = "MRN4471992"
NAME = "Hortensia Quackenbush"  # a name no identifier pattern can recognise


def test_documented_batch_completed_select_is_a_read_with_every_mapped_field(normalise):
    (event,) = normalise(sql(5))
    assert event.time_generated == datetime(2026, 11, 2, 8, 0, 5, tzinfo=UTC)
    assert (event.event_type, event.event_sub_type, event.event_result) == (
        "Read",
        "SELECT",
        "Success",
    )
    assert event.event_result_details is None
    assert (event.event_product, event.operation) == ("Azure SQL", "BCM")
    assert (event.object, event.object_type) == ("sql-phi/ehr", "Database")
    assert event.actor_username == "alice.nurse@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.acting_app_name == "Microsoft SQL Server Management Studio - Query"
    assert event.http_user_agent == "WKS-NURSE-12"
    assert event.src_ip_addr == "10.40.1.7"
    assert event.record_count == 42
    assert event.target_resource_id == SQL_DB_ID.lower()
    assert event.dvc_scope_id == SUB
    assert event.phi_category == "clinical"
    assert event.sensitivity_labels == ["Confidential - GDPR", "Highly Confidential"]
    assert event.sensitivity_rank == 30
    assert event.source_category == "SQLSecurityAuditEvents"
    assert event.event_original_uid == "5d3e8a1c-0000-4000-8000-000000000005"
    assert event.patient_ref is None


# ------------------------------------------------------------------ action ids


@pytest.mark.parametrize(
    ("action", "statement", "event_type", "sub_type", "result"),
    [
        ("DBAS", "", "Logon", None, "Success"),
        ("DBAF", "", "Logon", None, "Failure"),
        ("LGIF", "", "Logon", None, "Failure"),
        ("LGIS", "", "Logon", None, "Success"),
        ("SL", "SELECT * FROM dbo.patients", "Read", "SELECT", "Success"),
        ("SL", "", "Read", "SELECT", "Success"),
        ("RCM", "EXEC dbo.get_chart @mrn = 'MRN1'", "Execute", "EXEC", "Success"),
        ("IN", "", "Create", "INSERT", "Success"),
        ("UP", "", "Set", "UPDATE", "Success"),
        ("DL", "", "Delete", "DELETE", "Success"),
        ("G", "GRANT SELECT ON dbo.patients TO [intern]", "Set", "GRANT", "Success"),
        ("D", "DENY SELECT ON dbo.patients TO [intern]", "Set", "DENY", "Success"),
        ("R", "REVOKE SELECT ON dbo.patients FROM [intern]", "Set", "REVOKE", "Success"),
        ("G", "", "Set", "GRANT", "Success"),
        ("CR", "CREATE USER [eve] WITHOUT LOGIN", "Create", "CREATE USER", "Success"),
        ("AL", "ALTER TABLE dbo.patients ADD note nvarchar(max)", "Set", "ALTER TABLE", "Success"),
        ("DR", "DROP TABLE dbo.patients", "Delete", "DROP TABLE", "Success"),
        ("CR", "", "Create", "CREATE", "Success"),
        ("APRL", "ALTER ROLE db_owner ADD MEMBER [eve]", "Set", "ALTER ROLE ADD MEMBER", "Success"),
        ("APRL", "", "Set", "ALTER ROLE ADD MEMBER", "Success"),
        (
            "DPRL",
            "ALTER ROLE db_owner DROP MEMBER [eve]",
            "Set",
            "ALTER ROLE DROP MEMBER",
            "Success",
        ),
        (
            "APRL",
            "EXEC sp_addrolemember 'db_owner', 'eve'",
            "Set",
            "EXEC sp_addrolemember",
            "Success",
        ),
        ("BCM", "", "Other", None, "Success"),
        ("ZZZZ", "SELECT 1", "Read", "SELECT", "Success"),
        ("", "", "Other", None, "Success"),
    ],
)
def test_action_ids_map_to_event_type_and_operation(
    normalise, action, statement, event_type, sub_type, result
):
    record = sql(
        action=action, statement=statement, succeeded="true" if result == "Success" else "false"
    )
    (event,) = normalise(record)
    assert (event.event_type, event.event_sub_type, event.event_result) == (
        event_type,
        sub_type,
        result,
    )
    assert event.operation == (action or "UNKNOWN")


def test_logons_carry_no_record_count(normalise):
    (event,) = normalise(sql_failed_login(response_rows=5))
    assert event.record_count is None


# ------------------------------------------------------------------ statement kinds


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT * FROM patients", "SELECT"),
        ("  select top 10 * from patients", "SELECT"),
        ("-- who is in ICU\nSELECT name FROM patients", "SELECT"),
        ("/* outer /* nested */ still */ SELECT 1", "SELECT"),
        ("WITH x AS (SELECT * FROM a) SELECT * FROM x", "SELECT"),
        ("WITH x AS (SELECT * FROM a) DELETE FROM b WHERE id IN (SELECT id FROM x)", "DELETE"),
        ("INSERT INTO audit_copy SELECT * FROM patients", "INSERT"),
        ("UPDATE patients SET ward = 'ICU' WHERE mrn = 'MRN1'", "UPDATE"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", "MERGE"),
        ("SELECT * FROM a JOIN b ON a.x = b.x OPTION (MERGE JOIN)", "SELECT"),
        ("DELETE FROM notes WHERE mrn = 'MRN1'", "DELETE"),
        ("TRUNCATE TABLE notes", "TRUNCATE"),
        ("SET NOCOUNT ON; SELECT 1; DROP TABLE dbo.patients", "DROP TABLE"),
        ("SELECT 'DROP TABLE x' AS joke", "SELECT"),
        ('SELECT "DROP" FROM [DELETE]', "SELECT"),
        ("SELECT N'O''Brien; DROP TABLE x' ", "SELECT"),
        ("CREATE TABLE t (id int REFERENCES u(id) ON DELETE CASCADE)", "CREATE TABLE"),
        ("CREATE OR ALTER PROCEDURE dbo.p AS SELECT 1", "CREATE PROCEDURE"),
        ("CREATE PROC dbo.p AS SELECT 1", "CREATE PROCEDURE"),
        ("CREATE UNIQUE NONCLUSTERED INDEX ix ON t(a)", "CREATE INDEX"),
        ("CREATE TRIGGER tr ON t AFTER INSERT, UPDATE AS SELECT 1", "CREATE TRIGGER"),
        ("ALTER TABLE t DROP COLUMN ssn", "ALTER TABLE"),
        ("ALTER TABLE t DROP CONSTRAINT ck", "ALTER TABLE"),
        ("ALTER SERVER ROLE sysadmin ADD MEMBER [eve]", "ALTER SERVER ROLE ADD MEMBER"),
        (
            "ALTER DATABASE AUDIT SPECIFICATION s WITH (STATE = OFF)",
            "ALTER DATABASE AUDIT SPECIFICATION",
        ),
        (
            "DROP SENSITIVITY CLASSIFICATION FROM dbo.patients.diagnosis",
            "DROP SENSITIVITY CLASSIFICATION",
        ),
        (
            "ADD SENSITIVITY CLASSIFICATION TO dbo.p.dx WITH (LABEL = 'Highly Confidential')",
            "ADD SENSITIVITY CLASSIFICATION",
        ),
        ("GRANT SELECT, UPDATE ON patients TO eve WITH GRANT OPTION", "GRANT"),
        ("GRANT EXECUTE ON dbo.p TO eve", "GRANT"),
        ("REVOKE DELETE ON patients FROM eve", "REVOKE"),
        (
            "EXEC sp_set_firewall_rule N'all', '0.0.0.0', '255.255.255.255'",
            "EXEC sp_set_firewall_rule",
        ),
        (
            "EXECUTE sys.sp_set_database_firewall_rule N'x', '1.2.3.4', '1.2.3.4'",
            "EXEC sp_set_database_firewall_rule",
        ),
        ("exec [sys].[sp_delete_firewall_rule] 'x'", "EXEC sp_delete_firewall_rule"),
        ("EXEC master.dbo.xp_cmdshell 'dir'", "EXEC xp_cmdshell"),
        ("EXEC @rc = dbo.find_patient 'MRN1'", "EXEC"),
        ("EXEC dbo.find_patient @name = 'Jane Doe'", "EXEC"),
        ("EXEC ('DROP TABLE x')", "EXEC"),
        ("INSERT INTO t EXEC dbo.p", "INSERT"),
        ("IF EXISTS (SELECT 1 FROM t) DROP TABLE t", "DROP TABLE"),
        ("DECLARE @x int; SET @x = 1", "OTHER"),
        ("BEGIN TRAN", "OTHER"),
        ("SELECT 'unterminated", "SELECT"),
        ("/* unterminated comment SELECT", None),
        ("", None),
        ("   ", None),
    ],
)
def test_statement_kinds_come_from_the_vocabulary_only(statement, kind):
    assert statement_kind(statement) == kind


@pytest.mark.parametrize("statement", ["", "   ", "SELECT 1", "(((", "'", "[", '"', "--", "/*"])
def test_odd_statements_never_raise(statement):
    statement_kind(statement * 50)


def test_a_huge_statement_is_scanned_in_bounded_time():
    kind = statement_kind("SELECT " + "a, " * 200_000 + "b FROM t; DROP TABLE t")
    assert kind == "SELECT"  # the DROP lies past the scanned prefix


# ------------------------------------------------------------------ result


@pytest.mark.parametrize(
    ("succeeded", "result"),
    [
        ("true", "Success"),
        ("false", "Failure"),
        ("True", "Success"),
        ("FALSE", "Failure"),
        (" true ", "Success"),
        (True, "Success"),
        (False, "Failure"),
        (1, "Success"),
        (0, "Failure"),
        ("1", "Success"),
        ("0", "Failure"),
        (None, "NA"),
        ("maybe", "NA"),
        (7, "NA"),
        ([], "NA"),
    ],
)
def test_succeeded_as_string_bool_or_number(normalise, succeeded, result):
    (event,) = normalise(sql(succeeded=succeeded))
    assert event.event_result == result


def test_missing_succeeded_is_na_except_where_the_action_names_the_outcome(normalise):
    record = sql()
    del record["properties"]["succeeded"]
    (event,) = normalise(record)
    assert event.event_result == "NA"
    for action, result in [("DBAF", "Failure"), ("LGIF", "Failure"), ("DBAS", "Success")]:
        (event,) = normalise(sql_failed_login(action=action, succeeded=None))
        assert event.event_result == result


@pytest.mark.parametrize(
    ("additional", "code"),
    [
        ("<login_information><error_code>18456</error_code></login_information>", "18456"),
        ("<error_code> 40532 </error_code>", "40532"),
        (
            "<login_information><failure_reason>Err 18456, Level 14, State 8, Login failed for"
            f" user '{NAME}'. {MRN}</failure_reason></login_information>",
            "18456",
        ),
        (f"<failure_reason>Login failed for {NAME}</failure_reason>", None),
        ("", None),
        ("not xml at all " + MRN, None),
    ],
)
def test_failures_keep_only_the_error_number(normalise, additional, code):
    (event,) = normalise(sql_failed_login(additional_information=additional))
    assert (event.event_result, event.event_result_details) == ("Failure", code)
    assert NAME not in event.to_json().decode()
    assert MRN not in event.to_json().decode()


def test_a_success_keeps_no_error_code(normalise):
    (event,) = normalise(sql(additional_information="<error_code>0</error_code>"))
    assert event.event_result_details is None


# ------------------------------------------------------------------ actor


def test_entra_user_is_the_actor_username_and_one_key_on_every_server(normalise):
    (one,) = normalise(sql(principal="Alice.Nurse@Contoso-Health.org"))
    other = sql(resource_id=SQL_SERVER_ID.replace("SQL-PHI", "SQL-TWO") + "/DATABASES/LAB")
    other["properties"]["server_principal_name"] = "alice.nurse@contoso-health.org"
    (two,) = normalise(other)
    assert one.actor_username == "alice.nurse@contoso-health.org"
    assert one.actor_user_type == "Regular"
    assert actor_key(one) == actor_key(two) and actor_key(one) is not None
    assert actor_key(one).startswith("oid:sql:")  # type: ignore[union-attr]


def test_sql_login_is_no_username_but_a_per_server_actor(normalise):
    (event,) = normalise(sql(principal="sqladmin"))
    assert event.actor_username is None
    assert event.actor_user_id == "sql:sql-phi/sqladmin"
    assert event.actor_user_type == "Other"
    other = sql(principal="sqladmin", resource_id=SQL_SERVER_ID.replace("SQL-PHI", "SQL-TWO"))
    (elsewhere,) = normalise(other)
    assert elsewhere.actor_user_id == "sql:sql-two/sqladmin"


def test_failed_and_successful_logins_of_one_login_share_the_actor(normalise):
    (failed,) = normalise(sql_failed_login(principal="sqladmin"))
    (ok,) = normalise(sql(action="DBAS", statement="", principal="sqladmin"))
    assert actor_key(failed) == actor_key(ok) == "oid:sql:sql-phi/sqladmin"


def test_without_a_principal_the_address_is_the_actor(normalise):
    record = sql_failed_login(principal=None, database_principal="")
    (event,) = normalise(record)
    assert event.actor_user_id is None and event.actor_username is None
    assert actor_key(event) == "ip:10.40.1.7"


def test_contained_database_user_when_no_server_principal(normalise):
    record = sql(principal=None, database_principal="bob@contoso-health.org")
    (event,) = normalise(record)
    assert event.actor_username == "bob@contoso-health.org"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.40.1.7", "10.40.1.7"),
        ("::ffff:10.40.1.7", "10.40.1.7"),
        ("10.40.1.7:50123", "10.40.1.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("<null>", None),
        ("", None),
        ("local machine", None),
    ],
)
def test_client_ip_is_normalised(normalise, ip, expected):
    (event,) = normalise(sql(client_ip=ip))
    assert event.src_ip_addr == expected


# ------------------------------------------------------------------ record count


@pytest.mark.parametrize(
    ("statement", "response", "affected", "count"),
    [
        ("SELECT * FROM patients", 1200, 0, 1200),
        ("SELECT * FROM patients", "1200", "0", 1200),
        ("SELECT * FROM patients", "1200.0", 0, 1200),
        ("SELECT * FROM patients", 0, 0, 0),
        ("UPDATE patients SET a = 1", 0, 37, 37),
        ("DELETE FROM notes", "0", "5", 5),
        ("INSERT INTO t SELECT * FROM patients", 0, 900, 900),
        ("EXEC dbo.report", 310, 0, 310),
        ("EXEC dbo.purge", 0, 12, 12),
        ("DROP TABLE t", 0, 0, None),
        ("SELECT * FROM patients", -5, 0, None),
        ("SELECT * FROM patients", "many", 0, None),
        ("SELECT * FROM patients", None, None, None),
    ],
)
def test_response_rows_for_reads_affected_rows_for_writes(
    normalise, statement, response, affected, count
):
    (event,) = normalise(sql(statement=statement, response_rows=response, affected_rows=affected))
    assert event.record_count == count


# ------------------------------------------------------------------ sensitivity


def test_full_documented_form():
    documented = (
        '<sensitivity_attributes max_rank="20" max_rank_desc="Medium"><sensitivity_attribute '
        'label="Confidential - GDPR" label_id="bf91e08c-f4f0-478a-b016-23422b2a65ff" '
        'information_type="Name" information_type_id="57845286-7598-22f5-3422-15b24aeb125e" '
        'rank="20" rank_desc="Medium"/></sensitivity_attributes>'
    )
    found = parse_sensitivity(documented)
    assert (found.category, found.labels, found.rank) == (
        "demographic",
        ["Confidential - GDPR"],
        20,
    )


@pytest.mark.parametrize(
    ("text", "category", "labels", "rank"),
    [
        (SQL_SENSITIVITY_FULL, "clinical", ["Confidential - GDPR", "Highly Confidential"], 30),
        (SQL_SENSITIVITY_SHORT, "financial", ["Confidential"], None),
        # The short form without its root element.
        (
            '<sensitivity_attribute label="Public" information_type="Health"/>',
            "clinical",
            ["Public"],
            None,
        ),
        # rank_desc without rank, max_rank_desc without max_rank.
        (
            '<sensitivity_attributes max_rank_desc="Critical"><sensitivity_attribute '
            'label="Highly Confidential" information_type="National ID"/></sensitivity_attributes>',
            "demographic",
            ["Highly Confidential"],
            40,
        ),
        (
            '<sensitivity_attributes><sensitivity_attribute label="A" information_type="Name" '
            'rank_desc="Low"/><sensitivity_attribute label="B" information_type="Credit Card" '
            'rank_desc="High"/></sensitivity_attributes>',
            "financial",
            ["A", "B"],
            30,
        ),
        (
            '<?xml version="1.0"?><sensitivity_attributes><sensitivity_attribute label="x" '
            'information_type="Date Of Birth"/></sensitivity_attributes>',
            "demographic",
            ["x"],
            None,
        ),
        (
            '<sensitivity_attribute label="x" information_type="contact   info"/>',
            "demographic",
            ["x"],
            None,
        ),
        ('<sensitivity_attribute label="x" information_type="SSN"/>', "demographic", ["x"], None),
        ('<sensitivity_attribute label="x" information_type="Banking"/>', "financial", ["x"], None),
        ('<sensitivity_attribute label="x" information_type="Medical"/>', "clinical", ["x"], None),
        (
            '<sensitivity_attribute label="x" information_type="Diagnosis codes"/>',
            "clinical",
            ["x"],
            None,
        ),
        ('<sensitivity_attribute label="x" information_type="Networking"/>', "none", ["x"], None),
        ('<sensitivity_attribute label="x" information_type="Credentials"/>', "none", ["x"], None),
        (
            '<sensitivity_attribute label="A &amp; B" information_type="Health"/>',
            "clinical",
            ["A & B"],
            None,
        ),
        # Cut short at 4,000 characters: the complete elements still count.
        (
            '<sensitivity_attributes max_rank="30"><sensitivity_attribute label="HC" '
            'information_type="Health" rank="30"/><sensitivity_attribute label="C" informat',
            "clinical",
            ["HC"],
            30,
        ),
        ("", "none", [], None),
        ("not xml", "none", [], None),
        ("<sensitivity_attributes/>", "none", [], None),
    ],
)
def test_sensitivity_forms(text, category, labels, rank):
    found = parse_sensitivity(text)
    assert (found.category, found.labels, found.rank) == (category, labels, rank)


@pytest.mark.parametrize(
    "hostile",
    [
        # Billion laughs: an entity defined in a DTD, expanded exponentially.
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        '<sensitivity_attributes><sensitivity_attribute label="&lol3;" information_type="Health"/>'
        "</sensitivity_attributes>",
        # External entity.
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><sensitivity_attributes>'
        '<sensitivity_attribute label="&xxe;" information_type="Health"/></sensitivity_attributes>',
        '<sensitivity_attribute label="&undefined;" information_type="Health"/><![CDATA[x]]>',
    ],
)
def test_dtds_and_entities_are_refused_never_expanded(hostile):
    found = parse_sensitivity(hostile)
    assert all("lol" not in label and "root" not in label for label in found.labels)
    assert found.category == "none"  # a refused fragment classifies nothing


def test_an_undefined_entity_falls_back_to_the_scan_without_expanding():
    found = parse_sensitivity('<sensitivity_attribute label="&nope;" information_type="Health"/>')
    assert (found.category, found.labels) == ("clinical", ["&nope;"])


@pytest.mark.parametrize("value", [None, 42, True, ["x"], {"a": 1}, "x" * 100_000])
def test_sensitivity_of_odd_values_is_none(value):
    assert parse_sensitivity(value).category == "none"


def test_sensitivity_on_the_event(normalise):
    (event,) = normalise(sql(sensitivity=SQL_SENSITIVITY_SHORT))
    assert (event.phi_category, event.sensitivity_labels, event.sensitivity_rank) == (
        "financial",
        ["Confidential"],
        None,
    )
    (plain,) = normalise(sql(sensitivity=""))
    assert (plain.phi_category, plain.sensitivity_labels, plain.sensitivity_rank) == (
        "none",
        None,
        None,
    )


# ------------------------------------------------------------------ quirks


def test_continuation_records_of_a_long_statement_are_counted_skips(normalise):
    for sequence in (2, "3"):
        with pytest.raises(RecordSkipped) as skipped:
            normalise(sql(sequence_number=sequence))
        assert skipped.value.code == "statement-continuation"
    for sequence in (1, "1", None, "x"):
        assert normalise(sql(sequence_number=sequence))


def test_properties_as_json_text(normalise):
    record = sql()
    record["properties"] = json.dumps(record["properties"])
    (event,) = normalise(record)
    assert (event.event_type, event.record_count) == ("Read", 42)


def test_level_and_level_and_capitalised_keys(normalise):
    record = sql()
    record["Level"] = 4
    record["level"] = "Informational"
    record["ResourceId"] = record.pop("resourceId")
    record["Category"] = record.pop("category")
    record["properties"]["Action_Id"] = record["properties"].pop("action_id")
    (event,) = normalise(record)
    assert (event.operation, event.target_resource_id) == ("BCM", SQL_DB_ID.lower())


def test_us_locale_time(normalise):
    record = sql()
    record["time"] = "11/2/2026 8:01:29 AM"
    del record["originalEventTimestamp"]
    (event,) = normalise(record)
    assert event.time_generated == datetime(2026, 11, 2, 8, 1, 29, tzinfo=UTC)


def test_original_event_timestamp_then_event_time(normalise):
    record = sql(5)
    del record["time"]
    (event,) = normalise(record)
    assert event.time_generated.second == 5
    del record["originalEventTimestamp"]
    (event,) = normalise(record)
    assert event.time_generated.second == 5
    del record["properties"]["event_time"]
    with pytest.raises(RecordRejected) as rejected:
        normalise(record)
    assert rejected.value.code == "no-timestamp"


def test_log_analytics_suffixed_names(normalise):
    record = sql()
    props = record["properties"]
    for key in ("action_id", "client_ip", "statement", "server_principal_name", "succeeded"):
        props[f"{key}_s"] = props.pop(key)
    props["response_rows_d"] = props.pop("response_rows")
    (event,) = normalise(record)
    assert (event.operation, event.src_ip_addr, event.event_sub_type) == (
        "BCM",
        "10.40.1.7",
        "SELECT",
    )
    assert (event.record_count, event.event_result) == (42, "Success")


def test_missing_fields_still_make_an_event(normalise):
    record = {
        "time": "2026-11-02T08:00:00Z",
        "category": "SQLSecurityAuditEvents",
        "resourceId": SQL_DB_ID,
        "properties": {"action_id": "SL"},
    }
    (event,) = normalise(record)
    assert (event.event_type, event.event_result, event.object) == ("Read", "NA", "sql-phi/ehr")
    record.pop("resourceId")
    record["properties"] = {}
    (event,) = normalise(record)
    assert (event.operation, event.object, event.target_resource_id) == ("UNKNOWN", None, None)


def test_managed_instance_and_server_level_records(normalise):
    mi = (
        f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.SQL/MANAGEDINSTANCES/MI-1"
        "/DATABASES/EHR"
    )
    (event,) = normalise(sql(resource_id=mi))
    assert event.object == "mi-1/ehr"
    record = sql(resource_id=SQL_SERVER_ID + "/DATABASES/MASTER")
    del record["properties"]["database_name"]
    (event,) = normalise(record)
    assert event.object == "sql-phi/master"


# ------------------------------------------------------------------ no PHI leaves


_COPIED = {"application_name", "host_name", "database_name", "server_principal_name"}


def _plant(record: dict[str, Any], marker: str, *, copied: bool) -> dict[str, Any]:
    planted = copy.deepcopy(record)
    props = planted["properties"]
    for key, value in props.items():
        kept = key in {"action_id", "event_time", "succeeded"} or (not copied and key in _COPIED)
        if isinstance(value, str) and not kept:
            props[key] = f"{value} {marker}" if value else marker
    props["statement"] = f"SELECT * FROM patients WHERE mrn = '{MRN}' AND name = N'{NAME}'"
    return planted


@pytest.mark.parametrize("marker", [MRN, NAME, "555-12-3456"])
def test_nothing_planted_in_fields_not_copied_reaches_the_event(normalise, marker):
    for base in (sql(), sql_failed_login(), sql(action="APRL", statement="")):
        (event,) = normalise(_plant(base, marker, copied=False))
        text = event.to_json().decode()
        assert marker not in text and MRN not in text and NAME not in text


@pytest.mark.parametrize("marker", [MRN, "555-12-3456", "48815162342"])
def test_identifiers_in_copied_fields_are_redacted(normalise, marker):
    (event,) = normalise(_plant(sql(principal="svc-etl"), marker, copied=True))
    assert marker not in event.to_json().decode()


def test_no_statement_literal_in_events_dead_letters_or_logs_through_the_pipeline(tmp_path):
    statement = f"SELECT * FROM patients WHERE mrn = '{MRN}' AND name = N'{NAME}'"
    good = sql(1, statement=statement)
    bad_time = sql(2, statement=statement)
    bad_time["time"] = bad_time["originalEventTimestamp"] = f"{NAME} {MRN}"
    bad_props = sql(3, statement=statement)
    bad_props["properties"] = f"{{not json {MRN} {NAME}"
    continuation = sql(4, statement=statement, sequence_number=2)
    records = [good, bad_time, bad_props, continuation]
    pipeline = build_pipeline(
        Settings(pseudonym_key=TEST_KEY_HEX, home=tmp_path / "home"), tmp_path / "archive"
    )
    results = []
    with capture_logs() as logs:
        for batch in batches_of(records):
            results.append(pipeline.process(batch))
    events = [e for r in results for e in r.events]
    dead = [d for r in results for d in r.dead_letters]
    counts = [r.counts.as_dict() for r in results]
    assert len(events) == 1 and len(dead) == 2
    assert sum(r.counts.skipped["statement-continuation"] for r in results) == 1
    assert all(r.counts.accounted for r in results)
    written = json.dumps(
        [e.to_wire() for e in events] + [d.to_wire() for d in dead] + counts + logs, default=str
    )
    for secret in (MRN, NAME, "patients"):
        assert secret.lower() not in written.lower(), secret


# ------------------------------------------------------------------ hypothesis


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["true", "false", "<null>", "1", "-1", "1e400", "NaN", "<a>", "&lol;"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_BASES = [
    sql(),
    sql_failed_login(),
    sql(action="G", statement="GRANT SELECT ON t TO u"),
    sql(sensitivity=SQL_SENSITIVITY_SHORT),
]
_PROPERTY_KEYS = sorted(_BASES[0]["properties"])


@given(
    base=st.sampled_from(_BASES),
    changes=st.lists(
        st.tuples(
            st.sampled_from([*_PROPERTY_KEYS, "statement", "data_sensitivity_information"]),
            _FIELD_VALUES,
        ),
        max_size=6,
    ),
    drops=st.lists(st.sampled_from(_PROPERTY_KEYS), max_size=4),
    statement=st.text(max_size=200),
    sensitivity=st.text(alphabet="<>/=\"' &;!abcdefgilmnorstuy_", max_size=200),
)
def test_random_field_values_never_raise_out_of_normalise(
    base, changes, drops, statement, sensitivity
):
    record = copy.deepcopy(base)
    props = record["properties"]
    props["statement"] = statement
    props["data_sensitivity_information"] = sensitivity
    for key, value in changes:
        props[key] = value
    for key in drops:
        props.pop(key, None)
    pseudonymizer = Pseudonymizer(bytes.fromhex(TEST_KEY_HEX))
    parsed = Record(record, "uid")
    try:
        events = route(parsed).normalise(parsed, NormaliseContext(pseudonymizer, "raw/x#0"))
    except (RecordRejected, RecordSkipped):
        return
    for event in events:
        event.to_json()
        assert event.event_product == "Azure SQL"
