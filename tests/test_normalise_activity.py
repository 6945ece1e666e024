"""Activity Log administrative normaliser: diagnostic settings, roles, deletes, Start pairs."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phiwatch.envelope import Body, decode_body
from phiwatch.model import AccessEvent
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route
from phiwatch.sources.activity import diagnostic_setting_target
from phiwatch.sources.activity_changes import (
    NEW_VALUE_MAX_CHARS,
    OMITTED,
    REDACTED,
    StartBuffer,
    body_properties,
    new_value,
)
from tests.records import KV_ID, STORAGE_ID, SUB, activity, activity_export

DIAG_ID = KV_ID + "/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/TO-HUB"


def test_diagnostic_setting_delete(normalise):
    (event,) = normalise(activity(3))
    assert (event.event_type, event.event_result) == ("Delete", "Success")
    assert event.operation == "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"
    assert event.event_sub_type == "microsoft.insights/diagnosticsettings"
    assert event.object_type == "Configuration Atom"
    assert event.object == "to-hub"
    assert event.target_resource_id == DIAG_ID.lower()
    assert event.dvc_scope_id == SUB
    assert event.actor_user_id == "44444444-aaaa-4bbb-8ccc-000000000004"
    assert event.actor_username == "mallory.admin@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.src_ip_addr == "203.0.113.9"
    assert event.event_product == "Azure Resource Manager"
    assert event.source_category == "Administrative"


def test_monitored_resource_of_a_diagnostic_setting():
    assert diagnostic_setting_target(DIAG_ID) == KV_ID.lower()
    assert diagnostic_setting_target(STORAGE_ID) is None


@pytest.mark.parametrize("category", ["Administrative", "Write", "Delete", "Action"])
def test_streamed_category_variants_are_all_administrative(normalise, category):
    (event,) = normalise(activity(category=category))
    assert event.source_category == "Administrative"


@pytest.mark.parametrize("result", ["Start", "Accept"])
def test_non_terminal_records_are_skipped(normalise, result):
    with pytest.raises(RecordSkipped) as info:
        normalise(activity(result=result))
    assert info.value.code == "non-terminal"


def test_failure_result(normalise):
    (event,) = normalise(activity(result="Failure"))
    assert event.event_result == "Failure"


def _body(enabled: list[bool]) -> str:
    logs = [{"category": f"C{i}", "enabled": e} for i, e in enumerate(enabled)]
    return json.dumps({"properties": {"eventHubName": "diagnostics", "logs": logs}})


@pytest.mark.parametrize(
    ("body", "event_type"),
    [
        (_body([False, False]), "Disable"),
        (_body([]), "Set"),
        (_body([False, True]), "Set"),
        ("not json", "Set"),
        (None, "Set"),
    ],
)
def test_diagnostic_write_that_turns_every_log_off_is_disable(normalise, body, event_type):
    record = activity(operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=body)
    (event,) = normalise(record)
    assert event.event_type == event_type


def test_terminal_record_response_body_shows_the_resulting_settings(normalise):
    record = activity(
        operation="MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", request_body=_body([True])
    )
    record["properties"]["responseBody"] = _body([False])
    (event,) = normalise(record)
    assert event.event_type == "Disable"


def test_role_assignment_and_created_status(normalise):
    rid = f"/SUBSCRIPTIONS/{SUB.upper()}/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/RA1"
    (event,) = normalise(
        activity(
            operation="MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
            resource_id=rid,
            status_code="Created",
        )
    )
    assert (event.event_type, event.object_type) == ("Create", "Policy Rule")


def test_resource_delete(normalise):
    (event,) = normalise(
        activity(operation="MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", resource_id=STORAGE_ID)
    )
    assert (event.event_type, event.object_type) == ("Delete", "Cloud Resource")
    assert event.target_resource_id == STORAGE_ID.lower()


def test_policy_events_are_counted_skips(normalise):
    with pytest.raises(RecordSkipped) as info:
        normalise(activity(category="Action", event_category="Policy"))
    assert info.value.reason == "activity log category 'Policy' is not monitored"
    with pytest.raises(RecordSkipped):
        normalise(activity(category="Policy"))


def test_unknown_categories_are_dead_letters_naming_the_category(normalise):
    # (StorageRead was the example until Storage got its normaliser.)
    gateway = f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/"
    gateway += "APPLICATIONGATEWAYS/AGW"
    record = activity(category="ApplicationGatewayFirewallLog", resource_id=gateway)
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "unknown-category"
    assert info.value.reason == (
        "no normaliser for category 'ApplicationGatewayFirewallLog' from "
        "microsoft.network/applicationgateways"
    )


def test_principal_type_from_authorization_evidence(normalise):
    record = activity()
    record["identity"]["claims"] = {"appid": "app-9"}
    record["identity"]["authorization"]["evidence"]["principalType"] = "ServicePrincipal"
    (event,) = normalise(record)
    assert (event.actor_user_type, event.acting_app_id) == ("ServicePrincipal", "app-9")


# ---------------------------------------------------------------- changes (NewValue)

ROLE_OP = "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"
ROLE_ID = f"/SUBSCRIPTIONS/{SUB.upper()}/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/RA1"
OWNER = "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
PRINCIPAL = "e33af42a-948f-4f05-9ab5-acd62655c582"
STORAGE_OP = "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE"


@pytest.fixture
def stream(pseudonymizer):
    """Normalise records one after another with one StartBuffer, each its own committed
    batch, the way the pipeline carries a Start to its terminal record."""
    buffer = StartBuffer()

    def run(value: dict) -> AccessEvent | None:
        (raw,) = decode_body(Body(json.dumps({"records": [value]}).encode(), "t", "t"))
        record = Record(raw.value, raw.content_uid())
        context = NormaliseContext(pseudonymizer, "raw/x#0", buffer)
        try:
            (event,) = route(record).normalise(record, context)
        except RecordSkipped as skip:
            assert skip.code == "non-terminal"
            return None
        finally:
            buffer.commit(float("-inf"))
        return event

    run.buffer = buffer  # type: ignore[attr-defined]
    return run


def _role_body(old_api: bool = False) -> str:
    if old_api:  # API versions before 2018 write PascalCase (Sentinel checks both)
        props = {
            "RoleDefinitionId": OWNER,
            "PrincipalId": PRINCIPAL,
            "Scope": f"/subscriptions/{SUB}",
        }
        return json.dumps({"Id": "ra1", "Properties": props})
    props = {"roleDefinitionId": OWNER, "principalId": PRINCIPAL, "scope": f"/subscriptions/{SUB}"}
    return json.dumps({"id": "ra1", "properties": props})


def _write(result: str, body: str | None = None, *, op: str = ROLE_OP, rid: str = ROLE_ID):
    return activity(7, operation=op, resource_id=rid, result=result, request_body=body)


@pytest.mark.parametrize("old_api", [False, True])
def test_the_start_request_body_becomes_the_new_value_of_the_success(stream, old_api):
    assert stream(_write("Start", _role_body(old_api))) is None  # a counted skip still
    event = stream(_write("Success"))
    assert json.loads(event.new_value) == {
        "roleDefinitionId": OWNER,
        "principalId": PRINCIPAL,
        "scope": f"/subscriptions/{SUB}",
    }
    assert len(stream.buffer) == 0  # taken by its terminal record


def test_both_api_versions_give_one_new_value(stream):
    values = []
    for old_api in (False, True):
        stream(_write("Start", _role_body(old_api)))
        values.append(stream(_write("Success")).new_value)
    assert values[0] == values[1]


def test_a_failed_write_has_no_new_value_and_takes_its_start(stream):
    stream(_write("Start", _role_body()))
    assert stream(_write("Failure")).new_value is None
    # A later success of the same key (a retry with the same correlation id but without its
    # own Start) must not inherit the failed request.
    assert stream(_write("Success")).new_value is None


def test_a_terminal_record_without_its_start_is_still_an_event(stream):
    event = stream(_write("Success"))
    assert (event.event_type, event.event_result, event.new_value) == ("Set", "Success", None)
    record = _write("Success")
    record["properties"]["responseBody"] = json.dumps({"properties": {"publicAccess": "Blob"}})
    assert json.loads(stream(record).new_value) == {"publicAccess": "Blob"}


def test_request_and_response_bodies_unite_the_response_winning(stream):
    start_body = {"properties": {"allowBlobPublicAccess": True, "minimumTlsVersion": "TLS1_0"}}
    stream(_write("Start", json.dumps(start_body), op=STORAGE_OP, rid=STORAGE_ID))
    accept = _write("Accept", op=STORAGE_OP, rid=STORAGE_ID)
    accept["properties"]["responseBody"] = json.dumps(
        {"properties": {"provisioningState": "Updating"}}
    )
    assert stream(accept) is None  # Accept stays a counted skip, its body is kept
    end = _write("Success", op=STORAGE_OP, rid=STORAGE_ID)
    end["properties"]["responseBody"] = json.dumps(
        {"properties": {"minimumTlsVersion": "TLS1_2", "provisioningState": "Succeeded"}}
    )
    assert json.loads(stream(end).new_value) == {
        "allowBlobPublicAccess": True,
        "minimumTlsVersion": "TLS1_2",
        "provisioningState": "Succeeded",
    }


def test_one_correlation_id_many_operations_each_gets_its_own(stream):
    """A template deployment gives every operation its correlation id."""
    other = STORAGE_ID.replace("STPHI01", "STPHI02")
    for rid, flag in ((STORAGE_ID, True), (other, False)):
        body = json.dumps({"properties": {"allowBlobPublicAccess": flag}})
        stream(_write("Start", body, op=STORAGE_OP, rid=rid))
    for rid, flag in ((other, False), (STORAGE_ID, True)):
        event = stream(_write("Success", op=STORAGE_OP, rid=rid))
        assert json.loads(event.new_value) == {"allowBlobPublicAccess": flag}


def test_secrets_never_reach_the_new_value(stream):
    body = {
        "properties": {
            "administratorLogin": "sqladmin",
            "administratorLoginPassword": "Hunter2!x",
            "nested": {"clientSecret": "s3cr3t-v", "storageAccountAccessKey": "AAAkey=="},
        }
    }
    sql = STORAGE_ID.replace("MICROSOFT.STORAGE/STORAGEACCOUNTS", "MICROSOFT.SQL/SERVERS")
    stream(_write("Start", json.dumps(body), op="MICROSOFT.SQL/SERVERS/WRITE", rid=sql))
    value = stream(_write("Success", op="MICROSOFT.SQL/SERVERS/WRITE", rid=sql)).new_value
    for secret in ("Hunter2!x", "s3cr3t-v", "AAAkey=="):
        assert secret not in value
    assert json.loads(value)["administratorLogin"] == "sqladmin"
    assert json.loads(value)["administratorLoginPassword"] == REDACTED


@pytest.mark.parametrize(
    ("op", "suffix"),
    [
        ("MICROSOFT.KEYVAULT/VAULTS/SECRETS/WRITE", "/SECRETS/DB-PASSWORD"),
        ("MICROSOFT.WEB/SITES/CONFIG/WRITE", "/CONFIG/APPSETTINGS"),
    ],
)
def test_writes_whose_properties_are_secrets_keep_only_the_names(stream, op, suffix):
    rid = KV_ID + suffix
    body = {"properties": {"value": "pa55-w0rd", "DB_CONN": "Server=x;Password=pa55-w0rd"}}
    stream(_write("Start", json.dumps(body), op=op, rid=rid))
    value = stream(_write("Success", op=op, rid=rid)).new_value
    assert "pa55-w0rd" not in value
    assert json.loads(value) == {"value": REDACTED, "DB_CONN": REDACTED}


def test_the_new_value_is_bounded_keeping_the_small_flags(stream):
    rules = [{"name": f"rule-{i}", "sourceAddressPrefix": "10.0.0.0/8"} for i in range(2000)]
    body = {"properties": {"securityRules": rules, "allowBlobPublicAccess": True}}
    stream(_write("Start", json.dumps(body), op=STORAGE_OP, rid=STORAGE_ID))
    value = stream(_write("Success", op=STORAGE_OP, rid=STORAGE_ID)).new_value
    assert len(value) <= NEW_VALUE_MAX_CHARS
    assert json.loads(value) == {"allowBlobPublicAccess": True, OMITTED: ["securityRules"]}


def test_identifiers_in_the_new_value_are_redacted_and_it_stays_json(stream):
    body = {"properties": {"tags": {"case": "MRN123456"}, "maxSizeBytes": 268435456}}
    stream(_write("Start", json.dumps(body), op=STORAGE_OP, rid=STORAGE_ID))
    value = stream(_write("Success", op=STORAGE_OP, rid=STORAGE_ID)).new_value
    parsed = json.loads(value)  # still JSON: a digit run is a number, not a bare token
    assert "MRN123456" not in value and "268435456" not in value
    assert parsed["tags"]["case"].startswith("pt_")
    assert isinstance(parsed["maxSizeBytes"], str) and parsed["maxSizeBytes"].startswith("pt_")


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", '"{\\"properties\\": 5}"', '{"properties": [1]}', "[" * 5000, "NaN"],
)
def test_unusable_bodies_give_no_new_value_and_no_error(stream, body):
    stream(_write("Start", body))
    assert stream(_write("Success")).new_value is None


def test_a_body_encoded_twice_is_read(stream):
    stream(_write("Start", json.dumps(_role_body())))
    assert json.loads(stream(_write("Success")).new_value)["principalId"] == PRINCIPAL


def test_a_start_without_correlation_id_or_time_is_a_skip_and_not_kept(stream):
    for drop in ("correlationId", "time"):
        record = _write("Start", _role_body())
        del record[drop]
        assert stream(record) is None
        assert len(stream.buffer) == 0


def test_without_a_buffer_every_record_stands_alone(normalise):
    with pytest.raises(RecordSkipped):
        normalise(_write("Start", _role_body()))
    (event,) = normalise(_write("Success", _role_body()))  # its own request body
    assert json.loads(event.new_value)["roleDefinitionId"] == OWNER


def test_the_diagnostics_disabled_decision_is_unchanged_by_the_buffer(stream):
    """A setting's terminal record decides Disable from its own bodies, as before."""
    op = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE"
    stream(activity(8, operation=op, result="Start", request_body=_body([False])))
    event = stream(activity(8, operation=op))
    assert event.event_type == "Set"
    assert json.loads(event.new_value)["logs"] == [{"category": "C0", "enabled": False}]


# ---------------------------------------------------------------- not the diagnostic shape


def test_the_rest_activity_export_is_refused_whole(normalise):
    with pytest.raises(RecordRejected) as info:
        normalise(activity_export())
    assert info.value.code == "not-diagnostic-shape"
    assert "localizedValue" in info.value.reason
    assert "mallory" not in info.value.reason


def test_submission_timestamp_without_time_is_refused(normalise):
    record = activity()
    record["submissionTimestamp"] = record.pop("time")
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "not-diagnostic-shape"


@pytest.mark.parametrize("key", ["operationName", "category", "status"])
def test_any_localized_field_refuses_the_record(normalise, key):
    record = activity()
    record[key] = {"value": "x", "localizedValue": "x"}
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "not-diagnostic-shape"


# ---------------------------------------------------------------- identity hygiene


def test_bidi_override_in_the_upn_is_stripped(normalise):
    (event,) = normalise(activity(upn="mallory\u202e@contoso-health.org\u2066\u200b"))
    assert event.actor_username == "mallory@contoso-health.org"


# ---------------------------------------------------------------- property test


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)
_bodies = st.one_of(
    _json.map(json.dumps),
    st.dictionaries(st.sampled_from(["properties", "Properties", "id"]), _json).map(json.dumps),
    st.dictionaries(st.sampled_from(["properties", "Properties"]), _json),
    st.text(max_size=40),
    _json,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=_bodies,
    end=_bodies,
    results=st.lists(st.sampled_from(["Start", "Accept", "Success", "Failure", None]), max_size=4),
)
def test_random_bodies_never_raise_and_new_values_are_json(pseudonymizer, start, end, results):
    buffer = StartBuffer()
    for result in ["Start", *results, "Success"]:
        record = _write(result or "Success")
        if result is None:
            del record["resultType"]
        record["properties"]["requestbody"] = start
        record["properties"]["responseBody"] = end
        view = Record(record, "uid")
        try:
            events = route(view).normalise(view, NormaliseContext(pseudonymizer, "r#0", buffer))
        except (RecordSkipped, RecordRejected):
            continue
        for event in events:
            if event.new_value is not None:
                assert isinstance(json.loads(event.new_value), dict)
                assert len(event.new_value) <= NEW_VALUE_MAX_CHARS + 1024  # tokens may grow
        buffer.commit(0.0)


def test_numbers_json_cannot_hold_become_null():
    """A body given as an object (as a decoder may hand it): no text limit applied yet."""
    body = {"properties": {"huge": 10**5000, "big": 2**70, "inf": float("inf"), "ok": 5}}
    change = body_properties({"responseBody": body}, ["responsebody"], secret=False)
    assert json.loads(new_value(change) or "") == {
        "huge": None,
        "big": None,
        "inf": None,
        "ok": 5,
    }
    text = '{"properties": {"inf": 1e400, "ok": 1}}'
    assert body_properties({"requestbody": text}, ["requestbody"], secret=False) == {
        "inf": None,
        "ok": 1,
    }
