"""Storage blob logs normaliser (StorageRead/StorageWrite/StorageDelete): operations, results,
the three kinds of caller, the blob path that never leaves, patient patterns, PHI containers,
and the quirks of real records (next-wave.md §2, azure-formats.md §2e)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.archive.archive import decode_lines
from phiwatch.config import Settings
from phiwatch.detect.grouping import actor_key, credential_key
from phiwatch.envelope import Body, decode_body
from phiwatch.model import AccessEvent
from phiwatch.pseudonym import Pseudonymizer, load_pseudonymizer
from phiwatch.sinks.outbox import LocalOutbox
from phiwatch.sources import NormaliseContext, Record, RecordRejected, RecordSkipped, route, storage
from phiwatch.sources.verbatim import VERBATIM
from phiwatch.wiring import build_pipeline
from tests.harness import batches_of
from tests.logs_ingestion_standin import logs_ingestion
from tests.records import (
    KEY_HASH,
    SAS_HASH,
    STORAGE_APP,
    STORAGE_ID,
    STORAGE_OID,
    SUB,
    activity,
    fhir,
    keyvault,
)
from tests.records import storage as blob_record
from tests.test_fuzz_pipeline import hostile_values
from tests.test_sentinel_sink import EVENTS, StaticCredential, make_sink

__all__ = ["logs_ingestion"]  # the stand-in's fixture, used by name below

MRN = "MRN123"
PATH = f"/stphi01/discharge/{MRN}/summary.pdf"
NAMESPACE = "azure-storage/stphi01"
PATTERNS = [r"(?:^|/)(MRN\d+)(?=/|$)"]


@pytest.fixture
def run(pseudonymizer: Pseudonymizer):
    """Route and normalise one record as the pipeline does, with storage settings."""

    def go(
        value: dict[str, Any],
        *,
        patterns: list[str] | None = None,
        containers: list[str] | None = None,
    ) -> list[AccessEvent]:
        (raw,) = decode_body(Body(json.dumps({"records": [value]}).encode(), "t", "t"))
        record = Record(raw.value, raw.content_uid())
        ctx = NormaliseContext(
            pseudonymizer,
            "raw/x#0",
            storage_patient_patterns=storage.compile_patient_patterns(patterns or []),
            storage_phi_containers=storage.parse_phi_containers(containers or []),
        )
        normaliser = route(record)
        assert normaliser is storage
        return normaliser.normalise(record, ctx)

    return go


def one(events: list[AccessEvent]) -> AccessEvent:
    (event,) = events
    return event


# ------------------------------------------------------------------ the documented record


def test_oauth_blob_read_is_a_read_by_the_requester(run):
    event = one(run(blob_record(5)))
    assert (event.event_type, event.event_sub_type, event.event_result) == (
        "Read",
        "Blob",
        "Success",
    )
    assert event.event_result_details == "Success"
    assert (event.event_product, event.operation, event.source_category) == (
        "Azure Storage",
        "GetBlob",
        "StorageRead",
    )
    assert event.actor_user_id == STORAGE_OID
    assert event.actor_username == "carol.clerk@contoso-health.org"
    assert event.actor_user_type == "Regular"
    assert event.acting_app_id == STORAGE_APP
    assert event.logon_method == "OAuth"
    assert event.credential_id is None  # a principal is there: no credential to key on
    assert event.src_ip_addr == "10.3.4.5"  # the port stripped
    assert event.response_bytes == 2018
    assert event.http_user_agent == "azsdk-python-storage-blob/12.19.0 Python/3.11.9 (Linux)"
    assert event.target_resource_id == (STORAGE_ID + "/BLOBSERVICES/DEFAULT").lower()
    assert event.dvc_scope_id == SUB
    assert event.object_type == "Other"
    assert re.fullmatch(r"stphi01/discharge/bh_[0-9a-f]{32}", event.object or "")
    assert event.phi_category == "clinical"  # nothing configured: every container is PHI
    assert event.patient_ref is None
    assert actor_key(event) == f"oid:{STORAGE_OID}"


@pytest.mark.parametrize(
    ("operation", "event_type"),
    [
        ("GetBlob", "Read"),
        ("GetBlobProperties", "Read"),
        ("ListBlobs", "Read"),
        ("ListContainers", "Read"),
        ("CopyBlobSource", "Read"),
        ("QueryBlobContents", "Read"),
        ("PutBlob", "Create"),
        ("PutBlock", "Create"),
        ("PutBlockList", "Create"),
        ("CopyBlob", "Create"),
        ("CreateContainer", "Create"),
        ("SnapshotBlob", "Create"),
        ("UndeleteBlob", "Create"),
        ("AppendBlock", "Set"),
        ("PutPage", "Set"),
        ("SetBlobTier", "Set"),
        ("SetBlobMetadata", "Set"),
        ("SetContainerACL", "Set"),
        ("SetContainerAcl", "Set"),  # casing varies between docs and records
        ("DeleteBlob", "Delete"),
        ("DeleteContainer", "Delete"),
        ("DeleteBlobImmutabilityPolicy", "Delete"),
        ("GetUserDelegationKey", "Execute"),
        ("AcquireBlobLease", "Other"),
        ("AbortCopyBlob", "Other"),
        # Not in the table: judged by the verb, else Other.
        ("GetBlobSomethingNew", "Read"),
        ("PutMessage", "Create"),
        ("DeleteMessage", "Delete"),
        ("Frobnicate", "Other"),
    ],
)
def test_operation_names_map_to_event_types(run, operation, event_type):
    event = one(run(blob_record(operation=operation)))
    assert (event.event_type, event.operation) == (event_type, operation)
    assert storage.event_type_of(operation) == event_type


@pytest.mark.parametrize(
    ("status", "text", "result", "details"),
    [
        (200, "Success", "Success", "Success"),
        (201, "Success", "Success", "Success"),
        (206, "Success", "Success", "Success"),  # a range of the blob: an answer
        (304, "Success", "Success", "Success"),
        (403, "AuthorizationPermissionMismatch", "Failure", "AuthorizationPermissionMismatch"),
        ("404", "BlobNotFound", "Failure", "BlobNotFound"),  # a number as a string
        ("409.0", "ContainerAlreadyExists", "Failure", "ContainerAlreadyExists"),
        (500, None, "Failure", "500"),  # statusText missing
        ("201", None, "Success", "201"),
        (None, "SASSuccess", "Success", "SASSuccess"),
        (None, "AnonymousSuccess", "Success", "AnonymousSuccess"),
        (None, "ClientOtherError", "Failure", "ClientOtherError"),
        (None, None, "NA", None),
        ("abc", None, "NA", None),
    ],
)
def test_status_code_and_text_decide_the_result(run, status, text, result, details):
    event = one(run(blob_record(status=status, status_text=text)))
    assert (event.event_result, event.event_result_details) == (result, details)


# ------------------------------------------------------------------ who


def test_sas_request_is_keyed_by_a_keyed_hash_of_its_signature(run, pseudonymizer):
    event = one(run(blob_record(auth="SAS")))
    assert event.logon_method == "SAS"
    assert (event.actor_user_id, event.actor_username, event.acting_app_id) == (None,) * 3
    assert event.actor_user_type is None
    assert re.fullmatch(r"cr_[0-9a-f]{32}", event.credential_id or "")
    wire = event.to_json().decode().lower()
    for part in re.findall(r"\(([0-9A-Z]+)\)", SAS_HASH):
        assert part.lower() not in wire  # neither the key hash nor the signature hash
    # The actor key is the credential, before the address (credential before ip:).
    assert actor_key(event) == f"cred:{event.credential_id}" == credential_key(event)
    # The same SAS from another address is the same actor; another signature is not.
    again = one(run(blob_record(9, auth="SAS", ip="198.51.100.7:443")))
    assert again.credential_id == event.credential_id
    other = one(run(blob_record(auth="SAS", token_hash=SAS_HASH.replace("04D6", "FFFF"))))
    assert other.credential_id != event.credential_id
    # Keyed: without the key, nobody can recompute it from a token hash.
    keyed_elsewhere = Pseudonymizer(b"k" * 32).keyed_hash("storage-credential", SAS_HASH.lower())
    assert event.credential_id != f"cr_{keyed_elsewhere}"


def test_credential_id_ignores_case_and_spacing_of_the_token_hash(run):
    event = one(run(blob_record(auth="SAS")))
    spaced = SAS_HASH.lower().replace(",", ", ")
    assert one(run(blob_record(auth="SAS", token_hash=spaced))).credential_id == (
        event.credential_id
    )


@pytest.mark.parametrize("auth", ["AccountKey", "Account Key", "accountkey", "SharedKey"])
def test_account_key_request_has_a_credential_and_no_principal(run, auth):
    record = blob_record(auth="AccountKey")
    record["identity"]["type"] = auth
    event = one(run(record))
    assert event.logon_method == "AccountKey"
    assert event.credential_id and event.actor_user_id is None
    assert KEY_HASH[5:-1].lower() not in event.to_json().decode().lower()


def test_old_sas_key_spelling_is_sas(run):
    record = blob_record(auth="SAS")
    record["identity"]["type"] = "SAS Key"
    assert one(run(record)).logon_method == "SAS"


def test_anonymous_request_is_known_by_its_address_only(run):
    event = one(run(blob_record(auth="Anonymous", ip="203.0.113.50:61000")))
    assert event.logon_method == "Anonymous"
    assert (event.actor_user_id, event.credential_id) == (None, None)
    assert actor_key(event) == "ip:203.0.113.50"


def test_service_principal_has_an_app_and_no_upn(run):
    event = one(run(blob_record(upn=None)))
    assert event.actor_user_type == "ServicePrincipal"
    assert (event.actor_user_id, event.acting_app_id) == (STORAGE_OID, STORAGE_APP)


def test_oauth_without_requester_takes_the_rbac_principal(run):
    record = blob_record()
    del record["identity"]["requester"]
    event = one(run(record))
    assert event.actor_user_id == STORAGE_OID and event.actor_username is None


def test_upn_loses_control_and_bidi_characters_and_needs_an_at(run):
    record = blob_record(upn="carol\u202e.clerk@contoso-health.org\u200b")
    assert one(run(record)).actor_username == "carol.clerk@contoso-health.org"
    assert one(run(blob_record(upn="not-a-upn"))).actor_username is None


@pytest.mark.parametrize(
    ("identity", "method"),
    [
        ("Anonymous", "Anonymous"),
        ("OAuth", "OAuth"),
        ("Dr Jane Smith MRN123", None),  # a plain string naming no type is not copied
        (json.dumps({"type": "SAS", "tokenHash": SAS_HASH}), "SAS"),  # JSON in a string
        ({"tokenHash": SAS_HASH}, "SAS"),  # no type: the token hash tells
        ({"tokenHash": KEY_HASH}, "AccountKey"),
        ({"requester": {"objectId": STORAGE_OID}}, "OAuth"),
        ({"type": "TrustedAccess"}, "TrustedAccess"),
        ({"type": "Kerberos"}, "Kerberos"),
        (["OAuth"], None),
        (42, None),
    ],
)
def test_identity_quirks(run, identity, method):
    record = blob_record()
    record["identity"] = identity
    event = one(run(record))
    assert event.logon_method == method
    assert MRN not in event.to_json().decode()
    if method == "SAS":
        assert event.credential_id


# ------------------------------------------------------------------ where from


@pytest.mark.parametrize(
    ("caller", "address"),
    [
        ("10.3.4.5:50123", "10.3.4.5"),
        ("10.3.4.5", "10.3.4.5"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("<null>", None),
        ("", None),
    ],
)
def test_caller_address_without_its_port(run, caller, address):
    assert one(run(blob_record(ip=caller))).src_ip_addr == address


@pytest.mark.parametrize(
    ("size", "expected"),
    [(2018, 2018), ("2018", 2018), ("0", 0), (-5, None), ("lots", None), (None, None)],
)
def test_response_body_size_in_any_form(run, size, expected):
    assert one(run(blob_record(response_bytes=size))).response_bytes == expected


# ------------------------------------------------------------------ what


def test_container_and_account_level_operations(run):
    listing = one(run(blob_record(operation="ListBlobs", object_key="/stphi01/discharge")))
    assert (listing.object, listing.event_sub_type, listing.object_type) == (
        "stphi01/discharge",
        "Container",
        "Cloud Resource",
    )
    assert listing.phi_category == "clinical"  # listing names the blobs in a PHI container
    trailing = one(run(blob_record(operation="ListBlobs", object_key="/stphi01/discharge/")))
    assert trailing.object == "stphi01/discharge"
    account = one(run(blob_record(operation="ListContainers", object_key="/stphi01")))
    assert (account.object, account.event_sub_type, account.phi_category) == (
        "stphi01",
        "Account",
        "none",
    )


def test_missing_object_key_falls_back_to_the_account(run):
    record = blob_record(operation="GetBlobServiceProperties")
    del record["properties"]["objectKey"]
    assert one(run(record)).object == "stphi01"
    del record["properties"]["accountName"]
    assert one(run(record)).object == "stphi01"  # from the resource id


def test_object_key_under_identity_properties_as_in_the_docs_example(run):
    record = blob_record()
    key = record["properties"].pop("objectKey")
    record["identity"]["properties"] = {"metricResponseType": "Success", "objectKey": key}
    event = one(run(record))
    assert event.object == one(run(blob_record())).object
    assert MRN not in event.to_json().decode()


def test_the_path_hash_counts_distinct_blobs(run):
    def obj(key: str) -> str | None:
        return one(run(blob_record(object_key=key))).object

    first = obj(PATH)
    assert first == obj(PATH)
    assert first != obj("/stphi01/discharge/MRN124/summary.pdf")
    assert first != obj(f"/stphi01/radiology/{MRN}/summary.pdf")  # per container
    assert first == obj("/stphi01/discharge/MRN%31%323/summary.pdf")  # encoding is no disguise


def test_storage_settings_parse_and_fail_clearly(monkeypatch):
    monkeypatch.setenv("PHIWATCH_STORAGE_PATIENT_PATTERNS", json.dumps(PATTERNS))
    monkeypatch.setenv("PHIWATCH_STORAGE_PHI_CONTAINERS", json.dumps(["stphi01/discharge"]))
    settings = Settings()
    assert settings.storage_patient_patterns == PATTERNS
    assert settings.storage_phi_containers == ["stphi01/discharge"]
    for bad in ["(unclosed", r"MRN\d+", r"(MRN)(\d+)", "(x?)"]:
        monkeypatch.setenv("PHIWATCH_STORAGE_PATIENT_PATTERNS", json.dumps([bad]))
        with pytest.raises(ValueError, match="PHIWATCH_STORAGE_PATIENT_PATTERNS"):
            Settings()
    monkeypatch.setenv("PHIWATCH_STORAGE_PATIENT_PATTERNS", "[]")
    for bad_entry in ["", " ", "/", "//discharge"]:
        monkeypatch.setenv("PHIWATCH_STORAGE_PHI_CONTAINERS", json.dumps([bad_entry]))
        with pytest.raises(ValueError, match="PHIWATCH_STORAGE_PHI_CONTAINERS"):
            Settings()


# ------------------------------------------------------------------ patients


def test_a_configured_pattern_keeps_the_path_with_the_patient_as_its_ref(run, pseudonymizer):
    event = one(run(blob_record(), patterns=PATTERNS))
    ref = pseudonymizer.patient_ref(NAMESPACE, MRN)
    assert event.patient_ref == ref
    assert event.object == f"stphi01/discharge/{ref}/summary.pdf"
    assert MRN not in event.to_json().decode()
    # A path the pattern does not match is hashed as without patterns.
    other = one(run(blob_record(object_key="/stphi01/discharge/misc/a.pdf"), patterns=PATTERNS))
    assert other.patient_ref is None and "/bh_" in (other.object or "")


def test_patient_refs_are_per_account(run, pseudonymizer):
    event = one(run(blob_record(object_key=f"/starchive/discharge/{MRN}/x"), patterns=PATTERNS))
    assert event.patient_ref == pseudonymizer.patient_ref("azure-storage/starchive", MRN)
    assert event.patient_ref != pseudonymizer.patient_ref(NAMESPACE, MRN)


def test_two_patients_in_one_path_are_two_events(run, pseudonymizer):
    key = "/stphi01/transfers/MRN1/to/MRN2/letter.pdf"
    events = run(blob_record(object_key=key), patterns=PATTERNS)
    refs = [pseudonymizer.patient_ref(NAMESPACE, m) for m in ("MRN1", "MRN2")]
    assert [e.patient_ref for e in events] == refs
    assert len({e.event_uid for e in events}) == 2
    assert {e.object for e in events} == {f"stphi01/transfers/{refs[0]}/to/{refs[1]}/letter.pdf"}


# ------------------------------------------------------------------ PHI containers


@pytest.mark.parametrize(
    ("configured", "key", "category"),
    [
        ([], "/stphi01/public-assets/logo.png", "clinical"),
        (["stphi01/discharge"], PATH, "clinical"),
        (["stphi01/discharge"], "/stphi01/public-assets/logo.png", "none"),
        (["stphi01/dis"], PATH, "clinical"),  # a container prefix
        (["stphi01"], "/stphi01/anything/x", "clinical"),  # every container of the account
        (["STPHI01/Discharge/"], PATH, "clinical"),
        (["stphi"], PATH, "none"),  # the account is a name, not a prefix
        (["starchive/discharge"], PATH, "none"),
    ],
)
def test_phi_containers_set_the_category(run, configured, key, category):
    assert one(run(blob_record(object_key=key), containers=configured)).phi_category == category


# ------------------------------------------------------------------ no path leaves


def _plant(value: Any, marker: str) -> Any:
    if isinstance(value, str):
        return f"{value}/{marker}" if value else marker
    if isinstance(value, dict):
        return {k: _plant(v, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(v, marker) for v in value]
    return value


_STRUCTURAL = {"time", "category", "statusCode", "callerIpAddress", "type"}


@pytest.mark.parametrize("auth", ["OAuth", "SAS", "Anonymous"])
@pytest.mark.parametrize("marker", ["MRN99881", "555-12-3456", "48815162342"])
@pytest.mark.parametrize("patterns", [[], PATTERNS])
def test_no_identifier_planted_anywhere_reaches_an_event(run, auth, marker, patterns):
    """An identifier in every string of the record (path, uri, request URL, user agent,
    identity, status text, ...): none reaches the event, with or without patient patterns."""
    record = blob_record(auth=auth)
    record["properties"]["requestUrl"] = "https://stphi01.blob.core.windows.net" + PATH
    record["properties"]["destinationUri"] = record["uri"]
    for key in list(record):
        if key not in _STRUCTURAL and key != "identity":
            record[key] = _plant(record[key], marker)
    for key in list(record["properties"]):
        record["properties"][key] = _plant(record["properties"][key], marker)
    record["identity"] = {
        k: v if k in _STRUCTURAL else _plant(v, marker) for k, v in record["identity"].items()
    }
    events = run(record, patterns=patterns)
    assert events
    for event in events:
        dumped = event.model_dump()
        for name in VERBATIM:
            assert marker not in str(dumped[name] or ""), name
        assert marker not in event.to_json().decode()
        assert MRN not in event.to_json().decode()


@pytest.mark.parametrize("auth", ["OAuth", "SAS", "Anonymous"])
def test_a_path_is_hidden_even_where_no_identifier_pattern_would_see_it(run, auth):
    """`pat-Q7Z` is shaped like no identifier pattern: only the path's hashing hides it."""
    secret = "pat-Q7Z"
    record = blob_record(auth=auth, object_key=f"/stphi01/discharge/{secret}/summary.pdf")
    record["uri"] += f"&x={secret}"
    record["properties"]["requestUrl"] = f"https://stphi01.blob.core.windows.net/x/{secret}"
    record["properties"]["destinationUri"] = record["uri"]
    event = one(run(record))
    assert secret not in event.to_json().decode()
    # With patterns, a path they match keeps its shape: only the identifier is replaced
    # (the choice), so the rest of the path is as named.
    matched = one(run(blob_record(object_key=PATH + f"/{secret}"), patterns=PATTERNS))
    assert matched.object == f"stphi01/discharge/{matched.patient_ref}/summary.pdf/{secret}"
    assert MRN not in matched.to_json().decode()


def test_properties_that_are_not_json_are_a_dead_letter_without_the_path(run):
    record = blob_record()
    record["properties"] = '{"objectKey": "' + PATH  # cut short
    with pytest.raises(RecordRejected) as rejected:
        run(record)
    assert MRN not in rejected.value.reason


def test_mrn_paths_reach_no_event_dead_letter_sentinel_row_or_log_end_to_end(
    logs_ingestion, tmp_path, monkeypatch, capsys
):
    """Through the real pipeline, settings from the environment, into Sentinel's stand-in."""
    monkeypatch.setenv("PHIWATCH_STORAGE_PATIENT_PATTERNS", json.dumps(PATTERNS))
    monkeypatch.setenv("PHIWATCH_STORAGE_PHI_CONTAINERS", json.dumps(["stphi01/discharge"]))
    broken = blob_record(3)
    broken["properties"] = json.dumps(broken["properties"])[:-9]
    wrong_time = blob_record(4)
    wrong_time["time"] = f"{MRN}"
    records = [
        blob_record(1),
        blob_record(2, auth="SAS", object_key="/stphi01/discharge/misc/MRN777-scan.pdf"),
        broken,
        wrong_time,
        blob_record(5, auth="Anonymous", object_key="/stphi01/public-assets/MRN555.png"),
    ]
    sentinel = make_sink(logs_ingestion, LocalOutbox(tmp_path / "outbox"), StaticCredential())
    settings = Settings()
    pipeline = build_pipeline(settings, tmp_path / "archive", [sentinel])
    events, dead = [], []
    for batch in batches_of(records):
        result = pipeline.process(batch)
        events += result.events
        dead += result.dead_letters
        assert result.counts.accounted
    assert len(events) == 3 and len(dead) == 2
    rows = logs_ingestion.rows(EVENTS)
    assert len(rows) == 3
    ref = load_pseudonymizer(settings).patient_ref(NAMESPACE, MRN)
    assert [row.get("PatientRef") for row in rows] == [ref, None, None]
    assert [row["PhiCategory"] for row in rows] == ["clinical", "clinical", "none"]
    derived = [
        line
        for path in (tmp_path / "archive").rglob("*.jsonl.gz")
        if "raw" not in path.relative_to(tmp_path / "archive").parts
        for line in decode_lines(path.read_bytes())
    ]
    assert derived  # events and dead-letters were archived
    out = capsys.readouterr()
    # The first path matches a pattern and keeps its shape (summary.pdf); the others are hashed.
    for secret in ("MRN123", "MRN777", "MRN555", "scan.pdf", ".png"):
        assert secret not in json.dumps(rows)
        assert secret not in "".join(d.to_json().decode() for d in dead)
        assert secret not in "".join(e.to_json().decode() for e in events)
        assert secret not in out.out + out.err
        assert not any(secret.encode() in line for line in derived)


# ------------------------------------------------------------------ actor key contract


def _actor_key_before_credentials(event: AccessEvent) -> str | None:
    """actor_key as it was before Storage: the contract the other sources' AlertIds hang on."""
    if event.actor_user_id:
        return f"oid:{event.actor_user_id}"
    if event.acting_app_id:
        return f"app:{event.acting_app_id}"
    return f"ip:{event.src_ip_addr}" if event.src_ip_addr else None


@pytest.mark.parametrize(
    "record",
    [
        keyvault(),
        keyvault(oid=None),
        fhir(),
        activity(),
    ],
    ids=["keyvault", "keyvault-app", "fhir", "activity"],
)
def test_actor_keys_of_other_sources_are_unchanged(normalise, record):
    for event in normalise(record):
        assert event.credential_id is None
        assert actor_key(event) == _actor_key_before_credentials(event)
        bare = event.model_copy(update={"actor_user_id": None, "acting_app_id": None})
        assert actor_key(bare) == _actor_key_before_credentials(bare)


def test_a_principal_wins_over_a_credential(run):
    event = one(run(blob_record(auth="SAS")))
    with_oid = event.model_copy(update={"actor_user_id": STORAGE_OID})
    assert actor_key(with_oid) == f"oid:{STORAGE_OID}"
    with_app = event.model_copy(update={"acting_app_id": STORAGE_APP})
    assert actor_key(with_app) == f"app:{STORAGE_APP}"


# ------------------------------------------------------------------ properties


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found += _paths(item, (*prefix, key))
    return found


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    auth = draw(st.sampled_from(["OAuth", "SAS", "AccountKey", "Anonymous"]))
    key = draw(st.sampled_from([PATH, "/stphi01/discharge", "/stphi01", "", "//", "/a/b/MRN9"]))
    record = copy.deepcopy(blob_record(auth=auth, object_key=key or "/x"))
    if not key:
        record["properties"]["objectKey"] = key
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(record)))
        parent: Any = record
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent[path[-1]] = draw(hostile_values)
        else:
            parent.pop(path[-1], None)
    return record


@given(record=mutated_records(), with_patterns=st.booleans())
def test_random_and_mutated_fields_never_raise_out_of_normalise(record, with_patterns):
    pseudonymizer = Pseudonymizer(b"p" * 32)
    ctx = NormaliseContext(
        pseudonymizer,
        "raw/x#0",
        storage_patient_patterns=storage.compile_patient_patterns(
            PATTERNS if with_patterns else []
        ),
        storage_phi_containers=storage.parse_phi_containers(["stphi01/discharge"]),
    )
    parsed = Record(json.loads(json.dumps(record, allow_nan=True)), "uid")
    try:
        if not storage.matches(parsed):
            return  # the category was mutated away: routing's business, not this one's
        events = storage.normalise(parsed, ctx)
    except (RecordRejected, RecordSkipped):
        return
    assert events
    for event in events:
        # model_dump: a lone surrogate the mutation planted is the pipeline's to repair.
        dumped = str(event.model_dump()).lower()
        assert MRN.lower() not in dumped
        # Without patterns no part of a path is kept; with them, a matched path's shape is.
        assert with_patterns or "summary.pdf" not in dumped
        assert "04d64c2b3a704145" not in dumped  # the SAS signature hash


def test_the_path_hash_survives_identifier_redaction(pseudonymizer):
    """A hash with a 7-digit run would otherwise read as an identifier and be re-tokenised
    (each blob then counted under a token, not its hash); only the exact shape is spared."""
    digest = "1234567" + "ab" * 12 + "c"
    assert pseudonymizer.redact_identifiers(f"stphi01/discharge/bh_{digest}") == (
        f"stphi01/discharge/bh_{digest}"
    )
    assert "48815162342" not in pseudonymizer.redact_identifiers("bh_48815162342")


@pytest.mark.parametrize(
    ("metric", "result"), [("Success", "Success"), ("AuthorizationFailure", "Failure")]
)
def test_metric_response_type_decides_when_status_and_text_are_missing(run, metric, result):
    # Panther's bulk-extraction test records carry only this (tests/reference_cases).
    record = blob_record(status=None, status_text=None)
    record["properties"]["metricResponseType"] = metric
    assert one(run(record)).event_result == result
