"""Key Vault AuditEvent normaliser against the quirks of real records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phiwatch.sources import RecordRejected
from tests.records import KV_ID, SUB, keyvault


def test_secret_read_is_a_read_event_with_actor_target_and_scope(normalise):
    (event,) = normalise(keyvault(5, upn="ops.tool@contoso-health.org"))
    assert event.time_generated == datetime(2026, 11, 2, 8, 0, 5, tzinfo=UTC)
    assert (event.event_type, event.event_sub_type, event.event_result) == (
        "Read",
        "Secret",
        "Success",
    )
    assert event.event_result_details == "200"
    assert event.event_product == "Key Vault"
    assert event.operation == "SecretGet"
    assert event.object == "https://kv-phi.vault.azure.net/secrets/fhir-client-secret"
    assert event.actor_user_id == "11111111-aaaa-4bbb-8ccc-000000000001"
    assert event.actor_username == "ops.tool@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.acting_app_id == "22222222-aaaa-4bbb-8ccc-000000000002"
    assert event.target_resource_id == KV_ID.lower()
    assert event.dvc_scope_id == SUB
    assert event.http_user_agent == "azsdk-python-keyvault-secrets/4.8.0"
    assert event.patient_ref is None and event.phi_category == "none"
    assert event.source_category == "AuditEvent"
    assert event.raw_record_ref == "raw/x#0"


def test_long_and_short_claim_names_give_the_same_actor(normalise):
    (short,) = normalise(keyvault(upn="a@b.org"))
    (long,) = normalise(keyvault(upn="a@b.org", long_claims=True))
    assert (short.actor_user_id, short.actor_username) == (long.actor_user_id, long.actor_username)
    assert long.actor_username == "a@b.org"


@pytest.mark.parametrize(
    ("status", "result"), [(403, "Failure"), ("403", "Failure"), ("200", "Success")]
)
def test_http_status_as_number_or_string_decides_the_result(normalise, status, result):
    (event,) = normalise(keyvault(status=status))
    assert event.event_result == result
    assert event.event_result_details == str(status)


def test_result_type_success_is_not_trusted_over_the_status_code(normalise):
    record = keyvault(status=401, operation="Authentication")
    assert record["resultType"] == "Success"
    (event,) = normalise(record)
    assert (event.event_type, event.event_result, event.event_result_details) == (
        "Logon",
        "Failure",
        "401",
    )


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("10.1.2.3:51234", "10.1.2.3"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("10.1.2.0/24", "10.1.2.0"),
        ("not-an-ip", None),
    ],
)
def test_caller_addresses_are_normalised(normalise, ip, expected):
    (event,) = normalise(keyvault(ip=ip))
    assert event.src_ip_addr == expected


def test_service_principal_without_upn(normalise):
    (event,) = normalise(keyvault())
    assert event.actor_user_type == "ServicePrincipal"
    assert event.actor_username is None


@pytest.mark.parametrize(
    ("operation", "event_type"),
    [
        ("SecretSet", "Set"),
        ("SecretDelete", "Delete"),
        ("KeyPurge", "Delete"),
        ("KeyUnwrap", "Read"),
        ("KeySign", "Execute"),
        ("VaultGet", "Read"),
        ("CertificateImport", "Create"),
    ],
)
def test_operation_verbs_map_to_asim_event_types(normalise, operation, event_type):
    (event,) = normalise(keyvault(operation=operation))
    assert event.event_type == event_type


def test_properties_as_json_string_and_capitalised_keys(normalise):
    record = keyvault()
    record["properties"] = '{"httpStatusCode": 404, "id": "https://kv/secrets/x"}'
    record["Level"] = "Informational"
    record["ResourceId"] = record.pop("resourceId")
    (event,) = normalise(record)
    assert (event.event_result, event.object) == ("Failure", "https://kv/secrets/x")
    assert event.target_resource_id == KV_ID.lower()


def test_non_iso_and_seven_digit_times(normalise):
    record = keyvault()
    record["time"] = "2026-11-02 08:01:29Z"
    (event,) = normalise(record)
    assert event.time_generated == datetime(2026, 11, 2, 8, 1, 29, tzinfo=UTC)
    record["time"] = "2026-11-02T08:01:29.1234567Z"
    (event,) = normalise(record)
    assert event.time_generated.microsecond == 123456


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        ({"time": None}, "no-timestamp", "no timestamp"),
        ({"time": "yesterday"}, "bad-timestamp", "timestamp is not a recognisable date/time"),
        ({"properties": "{'id': x, broken"}, "properties-not-json", "properties is not valid JSON"),
        (
            {"properties": [1, 2]},
            "properties-wrong-type",
            "properties is a JSON list, not an object",
        ),
    ],
)
def test_broken_records_are_rejected_with_an_operator_reason(normalise, change, code, reason):
    record = keyvault()
    for key, value in change.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert (info.value.code, info.value.reason) == (code, reason)


def test_single_quoted_pseudo_json_properties_are_recovered(normalise):
    record = keyvault()
    record["properties"] = "{'httpStatusCode': 403, 'id': 'https://kv/secrets/y'}"
    (event,) = normalise(record)
    assert (event.event_result, event.object) == ("Failure", "https://kv/secrets/y")
