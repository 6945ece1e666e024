"""Entra ID sign-in logs: the four categories, result codes, geography, risk, methods, quirks."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route
from phiwatch.sources import signins as signins_source
from tests.mutations import mutate, wire_values
from tests.records import AADIAM_ID, TENANT, at, signin, workload_signin


def test_interactive_success(normalise):
    (event,) = normalise(signin(1))
    assert (event.event_type, event.event_result, event.event_result_details) == (
        "Logon",
        "Success",
        "0",
    )
    assert event.event_product == "Entra ID"
    assert event.event_sub_type == "Interactive"
    assert event.source_category == "SignInLogs"
    assert event.operation == "Sign-in activity"
    assert event.time_generated == at(1)
    assert event.actor_user_id == "55555555-aaaa-4bbb-8ccc-000000000005"
    assert event.actor_username == "carol.doctor@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.src_ip_addr == "198.51.100.7"
    assert (event.src_geo_country, event.src_geo_region, event.src_geo_city) == (
        "US",
        "Washington",
        "Seattle",
    )
    assert (event.src_geo_latitude, event.src_geo_longitude) == (47.6062, -122.3321)
    assert event.src_asn == 8075
    assert event.is_interactive is True
    assert event.conditional_access_status == "success"
    assert event.logon_method == "Multi factor authentication"
    assert (event.target_app_id, event.target_app_name) == (
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Azure Portal",
    )
    assert event.target_resource_id == AADIAM_ID.lower()
    assert event.phi_category == "none" and event.patient_ref is None


@pytest.mark.parametrize("code", ["50126", "50053", "50057", "500121", "7000222", "50074"])
def test_any_other_code_is_a_failure_with_the_code_kept(normalise, code):
    (event,) = normalise(signin(result=code))
    assert (event.event_result, event.event_result_details) == ("Failure", code)


def test_failure_reason_text_never_reaches_the_event(normalise):
    record = signin(result="50126")
    record["properties"]["status"]["failureReason"] = "Invalid password for MRN-4455667"
    record["properties"]["status"]["additionalDetails"] = "typed MRN-4455667"
    record["resultDescription"] = "Invalid password for MRN-4455667"
    (event,) = normalise(record)
    assert "4455667" not in event.to_json().decode()
    assert event.event_result_details == "50126"


def test_missing_result_type_falls_back_to_the_status_code(normalise):
    record = signin(result="50126")
    del record["resultType"]
    (event,) = normalise(record)
    assert (event.event_result, event.event_result_details) == ("Failure", "50126")
    ok = signin(result=None)
    (event,) = normalise(ok)
    assert (event.event_result, event.event_result_details) == ("Success", "0")


def test_no_code_at_all_is_na(normalise):
    record = signin(result=None)
    del record["properties"]["status"]
    (event,) = normalise(record)
    assert (event.event_result, event.event_result_details) == ("NA", None)


def test_result_type_as_a_number(normalise):
    record = signin()
    record["resultType"] = 0
    (event,) = normalise(record)
    assert event.event_result == "Success"


def test_non_interactive_category_is_non_interactive_even_without_the_field(normalise):
    for flag in (None, True, "true"):
        (event,) = normalise(signin(category="NonInteractiveUserSignInLogs", interactive=flag))
        assert event.is_interactive is False
        assert event.event_sub_type == "NonInteractive"
        assert event.source_category == "NonInteractiveUserSignInLogs"


@pytest.mark.parametrize(("flag", "expected"), [(True, True), ("false", False), (None, True)])
def test_interactive_log_reads_the_field(normalise, flag, expected):
    (event,) = normalise(signin(interactive=flag))
    assert event.is_interactive is expected


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(0, 0), (0.0, 0.0), (None, None), ("", ""), (47.6, None), (91, 10), ("nan", 1), (True, 1)],
)
def test_missing_or_zero_coordinates_are_unknown(normalise, latitude, longitude):
    (event,) = normalise(signin(latitude=latitude, longitude=longitude))
    assert (event.src_geo_latitude, event.src_geo_longitude) == (None, None)


def test_coordinates_as_strings(normalise):
    (event,) = normalise(signin(latitude="51.5072", longitude="-0.1276"))
    assert (event.src_geo_latitude, event.src_geo_longitude) == (51.5072, -0.1276)


def test_missing_location_and_location_as_text(normalise):
    record = signin()
    del record["properties"]["location"]
    (event,) = normalise(record)
    assert event.src_geo_latitude is None
    assert event.src_geo_country == "US"  # the envelope's own country code
    record = signin()
    record["properties"]["location"] = json.dumps(record["properties"]["location"])
    (event,) = normalise(record)
    assert event.src_geo_city == "Seattle" and event.src_geo_latitude == 47.6062


@pytest.mark.parametrize(("asn", "expected"), [("8075", 8075), (0, None), (-1, None), ("x", None)])
def test_asn(normalise, asn, expected):
    (event,) = normalise(signin(asn=asn))
    assert event.src_asn == expected


@pytest.mark.parametrize(
    ("during", "aggregated", "expected"),
    [
        ("none", "none", "none"),
        ("high", "low", "high"),
        ("low", "high", "high"),
        ("MEDIUM", "none", "medium"),
        ("hidden", "hidden", "hidden"),
        ("hidden", "low", "low"),
        ("bogus", "bogus", None),
    ],
)
def test_risk_level_is_the_higher_of_during_and_aggregated(normalise, during, aggregated, expected):
    (event,) = normalise(signin(risk_during=during, risk_aggregated=aggregated))
    assert event.risk_level == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [("atRisk", "atRisk"), ("confirmedcompromised", "confirmedCompromised"), ("x", None)],
)
def test_risk_state(normalise, state, expected):
    (event,) = normalise(signin(risk_state=state))
    assert event.risk_state == expected


@pytest.mark.parametrize(
    ("requirement", "methods", "expected"),
    [
        (
            "multiFactorAuthentication",
            ("Password", "Mobile app notification"),
            "Multi factor authentication",
        ),
        ("singleFactorAuthentication", ("Password",), "Username & Password"),
        ("singleFactorAuthentication", ("FIDO2 security key",), "Passwordless"),
        ("singleFactorAuthentication", ("Windows Hello for Business",), "Passwordless"),
        ("", ("X.509 Certificate",), "PKI"),
        ("", (), None),
    ],
)
def test_logon_method(normalise, requirement, methods, expected):
    (event,) = normalise(signin(requirement=requirement, methods=methods))
    assert event.logon_method == expected


def test_authentication_details_as_text(normalise):
    record = signin(requirement="", methods=("Password",))
    details = record["properties"]["authenticationDetails"]
    record["properties"]["authenticationDetails"] = json.dumps(details)
    (event,) = normalise(record)
    assert event.logon_method == "Username & Password"


@pytest.mark.parametrize("category", ["ServicePrincipalSignInLogs", "ManagedIdentitySignInLogs"])
def test_workload_sign_in_actor_is_the_principal(normalise, category):
    (event,) = normalise(workload_signin(category=category, result="7000215"))
    assert event.actor_user_id == "66666666-aaaa-4bbb-8ccc-000000000006"
    assert event.acting_app_id == "77777777-aaaa-4bbb-8ccc-000000000007"
    assert event.acting_app_name == "ehr-integration"
    assert event.actor_username is None
    assert (event.target_app_id, event.target_app_name) == (
        "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
        "Azure Key Vault",
    )
    assert (event.event_result, event.event_result_details) == ("Failure", "7000215")
    assert event.is_interactive is False
    # 0,0 and empty location strings are unknown.
    assert event.src_geo_latitude is None and event.src_geo_city is None
    if category == "ManagedIdentitySignInLogs":
        assert event.actor_user_type == "ManagedIdentity"
        assert event.logon_method == "Managed Identity"
    else:
        assert event.actor_user_type == "ServicePrincipal"
        assert event.logon_method == "Service Principal"


def test_unknown_user_id_is_no_actor_id(normalise):
    record = signin(result="50034", user_id="00000000-0000-0000-0000-000000000000")
    (event,) = normalise(record)
    assert event.actor_user_id is None
    assert event.src_ip_addr == "198.51.100.7"  # the actor grouping falls back to the address


def test_upn_that_is_an_object_id_is_no_username(normalise):
    (event,) = normalise(
        signin(category="NonInteractiveUserSignInLogs", upn="c3813493-bf92-5123-2717-8a8b2979c38b")
    )
    assert event.actor_username is None
    assert event.actor_user_id == "55555555-aaaa-4bbb-8ccc-000000000005"


def test_quirks_level_both_cases_properties_as_text_us_locale_time(normalise):
    record = signin()
    record["level"] = "Informational"  # with Level (int) already there
    record["properties"] = json.dumps(record["properties"])
    record["time"] = "11/02/2026 08:00:00 AM"
    record["durationMs"] = "0"
    (event,) = normalise(record)
    assert event.time_generated == at(0)
    assert event.actor_user_id == "55555555-aaaa-4bbb-8ccc-000000000005"


def test_ip_fallback_and_unspecified_address(normalise):
    record = signin()
    del record["properties"]["ipAddress"]
    record["callerIpAddress"] = "198.51.100.0/24"  # a CIDR, seen in Entra
    (event,) = normalise(record)
    assert event.src_ip_addr == "198.51.100.0"
    record = workload_signin(ip="0.0.0.0")
    (event,) = normalise(record)
    assert event.src_ip_addr is None


def test_created_date_time_when_the_envelope_has_no_time(normalise):
    record = signin(5)
    del record["time"]
    (event,) = normalise(record)
    assert event.time_generated == at(5)
    del record["properties"]["createdDateTime"]
    with pytest.raises(RecordRejected) as info:
        normalise(record)
    assert info.value.code == "no-timestamp"


def test_categories_match_case_insensitively_and_nothing_else():
    for category in ("SignInLogs", "signinlogs", "MANAGEDIDENTITYSIGNINLOGS"):
        assert signins_source.matches(Record(signin(category=category), "u"))
    assert not signins_source.matches(Record(signin(category="AuditLogs"), "u"))
    assert route(Record(signin(category="NonInteractiveUserSignInLogs"), "u")) is signins_source


def test_tenant_id_is_not_a_subscription(normalise):
    (event,) = normalise(signin())
    assert event.dvc_scope_id is None
    assert TENANT in (event.target_resource_id or "")


# ------------------------------------------------------------------ hostile input

_VALUES = wire_values("0", "50126", "-1", "", "nan", "[]", "{}", '{"latitude": 1}', "1e400")
_KEYS = [
    "resultType",
    "time",
    "category",
    "callerIpAddress",
    "location",
    "properties",
    "properties.userId",
    "properties.userPrincipalName",
    "properties.ipAddress",
    "properties.location",
    "properties.location.geoCoordinates",
    "properties.location.geoCoordinates.latitude",
    "properties.location.countryOrRegion",
    "properties.status",
    "properties.status.errorCode",
    "properties.isInteractive",
    "properties.autonomousSystemNumber",
    "properties.riskLevelDuringSignIn",
    "properties.riskState",
    "properties.conditionalAccessStatus",
    "properties.authenticationDetails",
    "properties.mfaDetail",
    "properties.appId",
    "properties.servicePrincipalId",
    "properties.createdDateTime",
]


@given(
    base=st.sampled_from(
        [
            signin(),
            signin(category="NonInteractiveUserSignInLogs", result="50126"),
            workload_signin(),
            workload_signin(category="ManagedIdentitySignInLogs"),
        ]
    ),
    changes=st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), min_size=1, max_size=5),
)
def test_mutated_sign_ins_never_raise_anything_but_rejected_or_skipped(base, changes):
    record = copy.deepcopy(base)
    for path, value in changes:
        mutate(record, path, value)
    rec = Record(record, "uid")
    ctx = NormaliseContext(Pseudonymizer(b"k" * 32), "raw/x#0")
    try:
        normaliser = route(rec)
        events = normaliser.normalise(rec, ctx)
    except (RecordRejected, RecordSkipped):
        return
    for event in events:
        event.to_json()  # serialisable, as the archive and Sentinel need
        assert event.event_type == "Logon" or normaliser is not signins_source
