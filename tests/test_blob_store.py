"""BlobStore against Azurite (the real Azure SDK, no mocks), and the store contract run over
both backends (`store` fixture: LocalStore and BlobStore)."""

from __future__ import annotations

import gzip
import hashlib
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import ContainerClient

from phiwatch.archive.blob_store import (
    ArchiveContainerMissing,
    ArchiveNotImmutable,
    BlobStore,
    ImmutabilityStatus,
    check_immutability,
    content_type_for,
)
from phiwatch.archive.store import ObjectMissing, ObjectStore, PutOutcome
from tests.azurite import ACCOUNT, ACCOUNT_KEY, CLIENT_KWARGS, Azurite

RAW = "raw/2024/03/05/14/ehA-p0-o100.jsonl.gz"
ORIGINAL = gzip.compress(b'{"a": 1}\n', mtime=0)
TAMPERED = gzip.compress(b'{"a": 2}\n', mtime=0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the contract, shared by both backends -------------------------------------------------


def run_store_scenario(store: ObjectStore) -> list[tuple]:
    """Drive a store through create, redelivery, conflict, reads and listings; return what it
    said at each step. Both backends must produce `EXPECTED_SCENARIO` exactly."""
    seen: list[tuple] = [("empty list", list(store.list()))]
    seen.append(("create", store.put_if_absent(RAW, ORIGINAL)))
    seen.append(("redeliver", store.put_if_absent(RAW, ORIGINAL)))
    seen.append(("conflict", store.put_if_absent(RAW, TAMPERED)))
    seen.append(("after conflict", store.get(RAW)))
    try:
        store.get("raw/2024/03/05/14/nope.jsonl.gz")
        seen.append(("missing", "returned"))
    except ObjectMissing as e:
        seen.append(("missing", type(e).__name__, str(e)))
    for name in (
        "events/2024/03/05/14/b.jsonl.gz",
        "events/2024/03/05/14/a.jsonl.gz",
        "events/2024/03/05/13/z.jsonl.gz",
        "events/undated/x.jsonl.gz",
        "manifests/2024-03-05T14.json",
        "eventsX.json",
    ):
        seen.append(("put " + name, store.put_if_absent(name, name.encode())[0]))
    seen.append(("list events/", list(store.list("events/"))))
    seen.append(("list events", list(store.list("events"))))
    seen.append(("list raw/2024/03/05/14/", list(store.list("raw/2024/03/05/14/"))))
    seen.append(("list nothing", list(store.list("alerts/"))))
    seen.append(("list all", list(store.list())))
    seen.append(("nested get", store.get("events/undated/x.jsonl.gz")))
    for bad in ("../escape.json", "/abs.json"):
        try:
            store.put_if_absent(bad, b"x")
            seen.append(("bad name " + bad, "accepted"))
        except ValueError:
            seen.append(("bad name " + bad, "ValueError"))
    seen.append(("list after bad names", list(store.list())))
    return seen


EXPECTED_SCENARIO = [
    ("empty list", []),
    ("create", (PutOutcome.CREATED, sha(ORIGINAL))),
    ("redeliver", (PutOutcome.IDENTICAL, sha(ORIGINAL))),
    ("conflict", (PutOutcome.CONFLICT, sha(ORIGINAL))),  # the digest of what is stored
    ("after conflict", ORIGINAL),
    ("missing", "ObjectMissing", "raw/2024/03/05/14/nope.jsonl.gz"),
    ("put events/2024/03/05/14/b.jsonl.gz", PutOutcome.CREATED),
    ("put events/2024/03/05/14/a.jsonl.gz", PutOutcome.CREATED),
    ("put events/2024/03/05/13/z.jsonl.gz", PutOutcome.CREATED),
    ("put events/undated/x.jsonl.gz", PutOutcome.CREATED),
    ("put manifests/2024-03-05T14.json", PutOutcome.CREATED),
    ("put eventsX.json", PutOutcome.CREATED),
    (
        "list events/",
        [
            "events/2024/03/05/13/z.jsonl.gz",
            "events/2024/03/05/14/a.jsonl.gz",
            "events/2024/03/05/14/b.jsonl.gz",
            "events/undated/x.jsonl.gz",
        ],
    ),
    (
        "list events",
        [
            "events/2024/03/05/13/z.jsonl.gz",
            "events/2024/03/05/14/a.jsonl.gz",
            "events/2024/03/05/14/b.jsonl.gz",
            "events/undated/x.jsonl.gz",
            "eventsX.json",
        ],
    ),
    ("list raw/2024/03/05/14/", [RAW]),
    ("list nothing", []),
    (
        "list all",
        [
            "events/2024/03/05/13/z.jsonl.gz",
            "events/2024/03/05/14/a.jsonl.gz",
            "events/2024/03/05/14/b.jsonl.gz",
            "events/undated/x.jsonl.gz",
            "eventsX.json",
            "manifests/2024-03-05T14.json",
            RAW,
        ],
    ),
    ("nested get", b"events/undated/x.jsonl.gz"),
    ("bad name ../escape.json", "ValueError"),
    ("bad name /abs.json", "ValueError"),
    (
        "list after bad names",
        [
            "events/2024/03/05/13/z.jsonl.gz",
            "events/2024/03/05/14/a.jsonl.gz",
            "events/2024/03/05/14/b.jsonl.gz",
            "events/undated/x.jsonl.gz",
            "eventsX.json",
            "manifests/2024-03-05T14.json",
            RAW,
        ],
    ),
]


def test_store_contract(store: ObjectStore) -> None:
    assert run_store_scenario(store) == EXPECTED_SCENARIO


def test_store_contract_concurrent_writers(store: ObjectStore) -> None:
    """Racing writers of one name: exactly one creates; everyone is told what is stored."""
    payloads = [f"writer {i}".encode() for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda d: store.put_if_absent("race.json", d), payloads))
    stored = store.get("race.json")
    assert stored in payloads
    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count(PutOutcome.CREATED) == 1
    assert outcomes.count(PutOutcome.CONFLICT) == 7
    assert {digest for _, digest in results} == {sha(stored)}


# --- BlobStore specifics -------------------------------------------------------------------


def blob_store(container: ContainerClient) -> BlobStore:
    return BlobStore(container, require_immutability=False)


def test_create_sets_content_type_and_location(blob_container: ContainerClient) -> None:
    store = blob_store(blob_container)
    assert store.location == blob_container.url
    assert store.location.endswith(f"/{ACCOUNT}/{blob_container.container_name}")
    assert store.put_if_absent(RAW, ORIGINAL) == (PutOutcome.CREATED, sha(ORIGINAL))
    assert store.put_if_absent("m/x.json", b"{}") == (PutOutcome.CREATED, sha(b"{}"))
    store.put_if_absent("m/x.sig", b"sig")
    props = {
        name: blob_container.get_blob_client(name).get_blob_properties().content_settings
        for name in (RAW, "m/x.json", "m/x.sig")
    }
    assert props[RAW].content_type == "application/gzip"
    assert props[RAW].content_encoding is None  # stored as gzip bytes, never auto-decoded
    assert props["m/x.json"].content_type == "application/json"
    assert props["m/x.sig"].content_type == "application/octet-stream"
    assert content_type_for("a.jsonl.gz") == "application/gzip"


def test_identical_redelivery_rewrites_nothing(blob_container: ContainerClient) -> None:
    store = blob_store(blob_container)
    store.put_if_absent(RAW, ORIGINAL)
    before = blob_container.get_blob_client(RAW).get_blob_properties()
    assert store.put_if_absent(RAW, ORIGINAL) == (PutOutcome.IDENTICAL, sha(ORIGINAL))
    after = blob_container.get_blob_client(RAW).get_blob_properties()
    assert (after.etag, after.last_modified) == (before.etag, before.last_modified)


def test_conflict_leaves_original_untouched(blob_container: ContainerClient) -> None:
    store = blob_store(blob_container)
    store.put_if_absent(RAW, ORIGINAL)
    before = blob_container.get_blob_client(RAW).get_blob_properties()
    assert store.put_if_absent(RAW, TAMPERED) == (PutOutcome.CONFLICT, sha(ORIGINAL))
    after = blob_container.get_blob_client(RAW).get_blob_properties()
    assert (after.etag, after.last_modified, after.size) == (
        before.etag,
        before.last_modified,
        len(ORIGINAL),
    )
    assert blob_container.download_blob(RAW).readall() == ORIGINAL
    assert store.get(RAW) == ORIGINAL
    assert list(blob_container.list_blob_names()) == [RAW]


def test_get_missing(blob_container: ContainerClient) -> None:
    store = blob_store(blob_container)
    with pytest.raises(ObjectMissing, match="nope"):
        store.get("raw/nope.jsonl.gz")


def test_names_with_slashes_are_plain_blob_names(blob_container: ContainerClient) -> None:
    store = blob_store(blob_container)
    names = [
        "raw/2024/03/05/14/b.jsonl.gz",
        "raw/2024/03/05/14/a.jsonl.gz",
        "raw/undated/c.jsonl.gz",
        "deadletter/2024/03/05/14/a.jsonl.gz",
    ]
    for name in names:
        store.put_if_absent(name, name.encode())
    assert sorted(blob_container.list_blob_names()) == sorted(names)
    assert list(store.list("raw/2024/03/05/14/")) == [
        "raw/2024/03/05/14/a.jsonl.gz",
        "raw/2024/03/05/14/b.jsonl.gz",
    ]
    assert list(store.list("raw/")) == [
        "raw/2024/03/05/14/a.jsonl.gz",
        "raw/2024/03/05/14/b.jsonl.gz",
        "raw/undated/c.jsonl.gz",
    ]
    for name in names:
        assert store.get(name) == name.encode()


@pytest.mark.parametrize("bad", ["", "a//b.json", "./a.json", "a/../b.json", "a/", "a\\b.json"])
def test_ambiguous_names_are_refused_by_both_backends(store: ObjectStore, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid archive object name"):
        store.put_if_absent(bad, b"x")
    with pytest.raises(ValueError):
        store.get(bad)
    assert list(store.list()) == []


def test_from_connection_string(azurite: Azurite, blob_container: ContainerClient) -> None:
    store = BlobStore.from_connection_string(
        azurite.connection_string,
        blob_container.container_name,
        require_immutability=False,
        **CLIENT_KWARGS,
    )
    assert store.location == blob_container.url
    assert store.put_if_absent("a.json", b"{}")[0] is PutOutcome.CREATED
    assert blob_container.download_blob("a.json").readall() == b"{}"


def test_from_url_with_explicit_credential(azurite: Azurite, blob_container: ContainerClient):
    url = f"{azurite.blob_endpoint}/{blob_container.container_name}"
    cred = AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY)
    store = BlobStore.from_url(url, cred, require_immutability=False, **CLIENT_KWARGS)
    assert store.location == url
    assert store.put_if_absent("a.json", b"{}")[0] is PutOutcome.CREATED
    # The production default insists on WORM, and Azurite has none.
    with pytest.raises(ArchiveNotImmutable):
        BlobStore.from_url(url, cred, **CLIENT_KWARGS)


def test_missing_container_is_not_created(azurite: Azurite) -> None:
    container = azurite.blob_service().get_container_client("never-created")
    with pytest.raises(ArchiveContainerMissing, match="never-created"):
        BlobStore(container, require_immutability=False)
    assert not container.exists()


# --- the immutability seam -----------------------------------------------------------------


def test_azurite_reports_no_immutability(blob_container: ContainerClient) -> None:
    status = check_immutability(blob_container, required=False)
    assert status == ImmutabilityStatus(
        container_url=blob_container.url,
        version_level_immutability=False,
        has_immutability_policy=False,
        has_legal_hold=False,
    )
    assert not status.immutable
    assert blob_store(blob_container).immutability == status


def test_required_immutability_raises_against_azurite(blob_container: ContainerClient) -> None:
    with pytest.raises(ArchiveNotImmutable) as err:
        check_immutability(blob_container, required=True)
    message = str(err.value)
    assert blob_container.url in message
    assert "version-level immutability" in message
    assert "never sets it at run time" in message
    with pytest.raises(ArchiveNotImmutable):
        BlobStore(blob_container)  # require_immutability defaults to True


def stand_in(**props: bool) -> SimpleNamespace:
    """A container client stand-in: what Azure reports for a WORM container, which Azurite
    cannot produce (it ignores or refuses every immutability setting)."""
    url = "https://acct.blob.core.windows.net/phiwatch-archive"
    return SimpleNamespace(url=url, get_container_properties=lambda: SimpleNamespace(**props))


def test_version_level_immutable_container_passes() -> None:
    client = stand_in(
        immutable_storage_with_versioning_enabled=True,
        has_immutability_policy=True,
        has_legal_hold=False,
    )
    status = check_immutability(client, required=True)
    assert status.immutable
    assert status.problem() is None
    assert status.container_url == "https://acct.blob.core.windows.net/phiwatch-archive"


def test_version_level_support_without_a_policy_is_not_enough() -> None:
    client = stand_in(
        immutable_storage_with_versioning_enabled=True,
        has_immutability_policy=False,
        has_legal_hold=False,
    )
    assert not check_immutability(client, required=False).immutable
    with pytest.raises(ArchiveNotImmutable, match="no default time-based retention policy"):
        check_immutability(client, required=True)


def test_container_level_policy_without_version_level_is_refused() -> None:
    # Legacy container-scoped WORM: phiwatch requires version-level immutability.
    client = stand_in(
        immutable_storage_with_versioning_enabled=False,
        has_immutability_policy=True,
        has_legal_hold=True,
    )
    with pytest.raises(ArchiveNotImmutable, match="--enable-vlw"):
        check_immutability(client, required=True)


def test_properties_missing_from_the_answer_count_as_not_immutable() -> None:
    # Azurite answers None for all three; an older API version may omit them.
    status = check_immutability(stand_in(), required=False)
    assert not status.immutable
    assert (status.version_level_immutability, status.has_immutability_policy) == (False, False)
