"""The sources added on top of the original scenario: each category in its Event Hubs
diagnostic-settings shape, with the quirks and the PHI the normalisers must cope with."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from phiwatch.samplegen import generate
from phiwatch.samplegen.added_sources import ADDED, source_rng
from phiwatch.samplegen.incidents_sql import INCIDENT_LOGIN, NEAR_LIMIT_LOGIN, UNLABELLED_LOGIN

from .test_samplegen import Parsed, parse_dir, props

MRN = re.compile(r"MRN\d{8}")


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Parsed:
    root = tmp_path_factory.mktemp("added")
    return parse_dir(root, generate(root))


def of(gen: Parsed, *categories: str) -> list[dict[str, Any]]:
    return [r for r in gen.objects if r.get("category") in categories]


def test_every_added_category_is_present_in_volume(gen: Parsed) -> None:
    counts = Counter(r.get("category") for r in gen.objects)
    for category in (
        "SQLSecurityAuditEvents",
        "StorageRead",
        "StorageWrite",
        "StorageDelete",
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
    ):
        assert counts[category] >= 5, category
    directory = [r for r in of(gen, "AuditLogs") if "microsoft.aadiam" in r["resourceId"].lower()]
    assert len(directory) >= 20
    by_added = gen.truth["added_sources"]["records_by_added_source"]
    assert set(by_added) == set(ADDED)
    assert all(n > 0 for n in by_added.values())


def test_sources_draw_from_their_own_seeded_generators() -> None:
    assert source_rng(7, "sql").random() == source_rng(7, "sql").random()
    assert source_rng(7, "sql").random() != source_rng(7, "storage").random()
    assert source_rng(7, "sql").random() != source_rng(8, "sql").random()


def test_sql_audit_shape(gen: Parsed) -> None:
    recs = of(gen, "SQLSecurityAuditEvents")
    assert all(r["resourceId"].endswith("/DATABASES/MASTER") for r in recs)
    assert all(r["operationName"] == "AuditEvent" and "time" in r for r in recs)
    ps = [p for r in recs if (p := props(r)) is not None]
    assert len(ps) == len(recs)
    assert any(isinstance(r["properties"], str) for r in recs)  # properties as a JSON string
    actions = Counter(p["action_id"] for p in ps)
    assert {"BCM", "RCM", "DBAS"} <= set(actions) and actions["DBAF"] + actions["LGIF"] > 0
    assert {p["succeeded"] for p in ps} >= {"true", "false"}
    assert any(isinstance(p["response_rows"], str) for p in ps)  # numbers as strings
    # MRNs live in statement literals: what the normaliser must never copy.
    assert sum(1 for p in ps if MRN.search(p["statement"])) > len(ps) // 2
    xml = [p["data_sensitivity_information"] for p in ps if p["data_sensitivity_information"]]
    full = [x for x in xml if "max_rank=" in x and "information_type_id=" in x]
    short = [x for x in xml if "max_rank=" not in x and "rank=" not in x]
    assert full and short and len(full) + len(short) == len(xml)
    assert any('information_type="Health"' in x for x in xml)
    failures = [p for p in ps if p["action_id"] in ("DBAF", "LGIF")]
    assert all("<error_code>18456</error_code>" in p["additional_information"] for p in failures)
    # Ordinary reads stay under the mass-read floor: only the injected incident and its
    # look-alikes (phiwatch/samplegen/incidents_sql.py) read more.
    scenario = {INCIDENT_LOGIN, NEAR_LIMIT_LOGIN, UNLABELLED_LOGIN}
    ordinary = [p for p in ps if p["server_principal_name"] not in scenario]
    assert max(int(p["response_rows"]) for p in ordinary) < 500


def test_blob_log_shape(gen: Parsed) -> None:
    recs = of(gen, "StorageRead", "StorageWrite", "StorageDelete")
    assert all(r["resourceId"].endswith("/blobServices/default") for r in recs)
    assert all(re.fullmatch(r"[\d.]+:\d+", r["callerIpAddress"]) for r in recs)
    kinds = Counter(r["identity"]["type"] for r in recs)
    assert {"OAuth", "SAS", "AccountKey", "Anonymous"} <= set(kinds)
    assert {"GetBlob", "PutBlob", "ListBlobs", "DeleteBlob"} <= {r["operationName"] for r in recs}
    oauth = [r for r in recs if r["identity"]["type"] == "OAuth"]
    assert any("upn" in r["identity"]["requester"] for r in oauth)
    assert any("upn" not in r["identity"]["requester"] for r in oauth)
    sas = [r for r in recs if r["identity"]["type"] == "SAS"]
    assert all("SasSignature(" in r["identity"]["tokenHash"] for r in sas)
    assert all("sig=XXXXX" in r["uri"] for r in sas)
    keys = [r["properties"]["objectKey"] for r in recs]
    assert sum(1 for k in keys if MRN.search(k)) > len(keys) // 3
    assert any(isinstance(r["statusCode"], str) for r in recs)
    assert {r["statusCode"] for r in recs if isinstance(r["statusCode"], int)} >= {200, 201, 409}


def test_signin_shape(gen: Parsed) -> None:
    recs = of(
        gen,
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
    )
    assert all(r["operationName"] == "Sign-in activity" for r in recs)
    assert all(isinstance(r["resultType"], str) for r in recs)
    assert {"0", "50126"} <= {r["resultType"] for r in recs}
    assert all(isinstance(r["identity"], str) for r in recs)
    assert any("Level" in r and "level" in r for r in recs)
    assert any(isinstance(r.get("Level"), str) for r in recs)
    # The original scenario's few unknown-category sign-ins (records_bad) carry no location.
    users = [
        r
        for r in recs
        if r["category"] in ("SignInLogs", "NonInteractiveUserSignInLogs")
        and "location" in r["properties"]
    ]
    assert len(users) > 1_000
    coords = [r["properties"]["location"]["geoCoordinates"] for r in users]
    assert all(isinstance(c["latitude"], float) for c in coords)
    assert all(isinstance(r["properties"]["autonomousSystemNumber"], int) for r in users)
    assert {r["properties"]["isInteractive"] for r in users} == {True, False}
    assert {"none", "low"} <= {r["properties"]["riskLevelDuringSignIn"] for r in users}
    assert any("mfaDetail" in r["properties"] for r in users)
    mi = [r for r in recs if r["category"] == "ManagedIdentitySignInLogs"]
    assert all(r["properties"]["location"] == {} for r in mi)  # no coordinates: unknown


def test_directory_audit_shape(gen: Parsed) -> None:
    recs = [r for r in of(gen, "AuditLogs") if "microsoft.aadiam" in r["resourceId"].lower()]
    assert all("resultType" not in r for r in recs)
    assert any(r["callerIpAddress"] == "<null>" for r in recs)
    services = {r["properties"]["loggedByService"] for r in recs}
    assert services == {"PIM", "Core Directory"}
    role_adds = [r for r in recs if r["operationName"] == "Add member to role"]
    assert role_adds
    for r in role_adds:
        assert r["properties"]["initiatedBy"]["app"]["displayName"] == "MS-PIM"
        names = {
            m["displayName"] for m in r["properties"]["targetResources"][0]["modifiedProperties"]
        }
        assert {"Role.DisplayName", "Role.TemplateId"} <= names
        values = [
            m["newValue"] for m in r["properties"]["targetResources"][0]["modifiedProperties"]
        ]
        assert all(json.loads(v) for v in values)  # JSON-quoted values


def test_fhir_vocabulary(gen: Parsed) -> None:
    fhir = [r for r in of(gen, "AuditLogs") if "HealthcareApis" in r["operationName"]]
    subtypes = {r["operationName"].rsplit("/", 1)[-1] for r in fhir}
    assert {"export", "everything", "batch", "transaction", "patch", "history-type"} <= subtypes
    assert {r["operationName"].split("/")[1] for r in fhir} == {"services", "workspaces"}
    uris = [r["uri"] for r in fhir]
    assert any("/Patient/$export" in u for u in uris)
    assert any("/Group/" in u and "$export" in u for u in uris)
    assert any(u.endswith("/$export?_type=Patient,Encounter") for u in uris)
    assert any("/_operations/export/" in u for u in uris)
    assert any("identifier=urn:oid:" in u and "%7CMRN" in u for u in uris)
    assert any("identifier=urn:oid:" in u and "|MRN" in u for u in uris)
    headed = [p for r in fhir if (p := props(r)) and "X-MS-AZUREFHIR-AUDIT-USERID" in p]
    assert headed and all("X-MS-AZUREFHIR-AUDIT-PURPOSEOFUSE" in p for p in headed)


def test_activity_writes_carry_both_bodies(gen: Parsed) -> None:
    acts = [r for r in gen.objects if r.get("operationName", "").startswith("MICROSOFT.")]
    starts = {r["correlationId"]: props(r) for r in acts if r["resultType"] == "Start"}
    done = [r for r in acts if r["resultType"] == "Success" and "responseBody" in (props(r) or {})]
    camel = 0
    for r in done:
        start = starts.get(r["correlationId"]) or {}
        if "requestbody" not in start:
            continue
        body = json.loads(start["requestbody"])
        camel += "properties" in body and "roleDefinitionId" in body["properties"]
        assert isinstance(json.loads((props(r) or {})["responseBody"]), dict)
    assert camel > 0


def test_size_scales_with_records(tmp_path: Path) -> None:
    # The added sources' traffic grows with --records (about 40 % on top); the scenarios'
    # incidents and look-alikes are a fixed number of records whatever the size.
    counts = {}
    for records in (3_000, 6_000):
        report = generate(tmp_path / str(records), records=records)
        truth = json.loads((tmp_path / str(records) / "ground_truth.json").read_text())
        added = truth["added_sources"]
        assert report.records == added["original_records"] + added["records"]
        counts[records] = added["records"]
    assert 0.35 * 3_000 <= counts[6_000] - counts[3_000] <= 0.45 * 3_000
