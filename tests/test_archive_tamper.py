"""The archive proves itself: every tampering the issue names is caught by `verify`, on the
local backend and on Azure Blob (Azurite), and a replayed batch changes nothing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from phiwatch.archive.archive import Archive, object_name
from phiwatch.archive.manifest import signing_payload
from phiwatch.archive.signer import Ed25519Signer, b64, load_public_key
from phiwatch.archive.store import LocalStore, ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.config import Settings
from phiwatch.wiring import build_pipeline
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.harness import CollectingSink, batches_of
from tests.records import activity, fhir, keyvault

SIGNER = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))
TRUSTED = {SIGNER.key_id: load_public_key(SIGNER.public_key_pem())}


def records() -> list[dict]:
    burst = [fhir(i * 4, path=f"Patient/p{i}") for i in range(60)]
    kv = [keyvault(400 + i, status=403, secret=f"s{i}") for i in range(6)]
    return burst + kv + [activity(700), {"category": "Mystery"}]


def fill(store: ObjectStore) -> CollectingSink:
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    for batch in batches_of(records(), per_body=5, bodies_per_batch=3):
        pipeline.process(batch)
    pipeline.finish()
    return sink


class Tamper:
    """Raw, out-of-band access to the store, as an attacker with storage rights would have."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def read(self, name: str) -> bytes:
        return self.store.get(name)

    def write(self, name: str, data: bytes) -> None:
        if isinstance(self.store, LocalStore):
            path = Path(self.store.location) / name
            if path.exists():
                path.chmod(0o644)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            self.store.container.upload_blob(name, data, overwrite=True)

    def delete(self, name: str) -> None:
        if isinstance(self.store, LocalStore):
            (Path(self.store.location) / name).unlink()
        else:
            self.store.container.delete_blob(name)

    def names(self, prefix: str) -> list[str]:
        return list(self.store.list(prefix))


def problems(store: ObjectStore) -> list[str]:
    return verify_archive(store, TRUSTED).problems


def manifests(store: ObjectStore) -> list[str]:
    return sorted(
        Tamper(store).names("manifests/test-5-3/"), key=lambda n: int(n.rsplit("/", 1)[1][:-5])
    )


def test_an_untouched_archive_verifies(store):
    fill(store)
    report = verify_archive(store, TRUSTED)
    assert report.problems == []
    assert report.manifests == len(manifests(store)) >= 4
    assert report.summary().startswith("archive verified: ")
    assert report.summary().endswith("chain intact")


def test_bit_flip_in_an_object(store):
    fill(store)
    tamper = Tamper(store)
    name = tamper.names("events/")[0]
    data = bytearray(tamper.read(name))
    data[len(data) // 2] ^= 0x01
    tamper.write(name, bytes(data))
    assert problems(store) == [f"{name}: SHA-256 differs from {_lister(store, name)} (altered)"]


def test_truncated_object(store):
    fill(store)
    tamper = Tamper(store)
    name = tamper.names("raw/")[1]
    tamper.write(name, tamper.read(name)[:-20])
    assert problems(store) == [f"{name}: SHA-256 differs from {_lister(store, name)} (truncated)"]


def test_deleted_object(store):
    fill(store)
    tamper = Tamper(store)
    name = tamper.names("deadletter/")[0]
    lister = _lister(store, name)
    tamper.delete(name)
    assert problems(store) == [f"{name}: missing (listed by {lister})"]


def test_deleted_manifest(store):
    fill(store)
    tamper = Tamper(store)
    chain = manifests(store)
    victim = chain[1]
    listed = [e["name"] for e in orjson.loads(tamper.read(victim))["objects"]]
    tamper.delete(victim)
    found = problems(store)
    assert f"stream test-5-3: manifest(s) 1..1 missing before {chain[2]}" in found
    for name in listed:  # its objects are now listed by nothing
        assert f"{name}: not listed by any manifest" in found


def test_swapped_manifests(store):
    fill(store)
    tamper = Tamper(store)
    chain = manifests(store)
    one, two = tamper.read(chain[1]), tamper.read(chain[2])
    tamper.write(chain[1], two)
    tamper.write(chain[2], one)
    found = problems(store)
    assert f"{chain[1]}: holds manifest test-5-3#2 (manifests swapped or moved)" in found
    assert any(p.startswith(f"{chain[1]}: does not chain to {chain[0]}") for p in found)


def test_manifest_re_signed_with_a_foreign_key(store):
    fill(store)
    tamper = Tamper(store)
    chain = manifests(store)
    document = orjson.loads(tamper.read(chain[1]))
    document["objects"] = document["objects"][:1]  # hide the events of this batch
    foreign = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    document["key_id"] = foreign.key_id
    document["signature"] = b64(foreign.sign(signing_payload(document)))
    tamper.write(chain[1], orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
    found = problems(store)
    assert f"{chain[1]}: signed by untrusted key {foreign.key_id!r}" in found
    assert any(p.startswith(f"{chain[2]}: does not chain to {chain[1]}") for p in found)


def test_manifest_edited_but_signature_kept(store):
    fill(store)
    tamper = Tamper(store)
    chain = manifests(store)
    document = orjson.loads(tamper.read(chain[0]))
    document["last"] = document["last"] + 1
    tamper.write(chain[0], orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
    assert f"{chain[0]}: bad signature" in problems(store)


def test_object_that_no_manifest_lists(store):
    fill(store)
    name = object_name("events", None, "smuggled-000000000000-000000000000")
    Tamper(store).write(name, gzip.compress(b'{"EventUid":"forged"}\n', mtime=0))
    assert problems(store) == [f"{name}: not listed by any manifest"]


def test_gap_in_sequence_positions(store):
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    batches = batches_of(records(), per_body=5, bodies_per_batch=3)
    for batch in batches[:2] + batches[3:]:  # batch 2 was never archived
        pipeline.process(batch)
    gap = f"{batches[2].first}..{batches[2].last}"
    found = problems(store)
    assert len(found) == 1 and f"positions {gap} of stream test-5-3 were never archived" in found[0]


def test_replayed_batches_leave_the_archive_byte_identical(store):
    fill(store)
    before = {n: Tamper(store).read(n) for n in Tamper(store).names("")}
    fill(store)  # every batch again, through a fresh pipeline (another instance)
    after = {n: Tamper(store).read(n) for n in Tamper(store).names("")}
    assert after == before


def test_raw_name_reused_with_other_bytes_raises_an_integrity_alert(store):
    batch = batches_of(records(), per_body=5, bodies_per_batch=3)[0]
    name = object_name("raw", None, batch.name)
    hour_name = name.replace("undated", "2026/11/02/08")
    Tamper(store).write(hour_name, gzip.compress(b'{"Raw":"planted"}\n', mtime=0))
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    pipeline.process(batch)
    (alert,) = [a for a in sink.alert_versions if a.rule_id == "archive-integrity"]
    assert alert.severity == "High"
    assert alert.title == f"Archive object {hour_name} already held different raw records"
    kept = [n for n in Tamper(store).names("raw/") if ".conflict-" in n]
    assert len(kept) == 1 and kept[0] in alert.reasons[1]
    assert Tamper(store).read(hour_name) == gzip.compress(b'{"Raw":"planted"}\n', mtime=0)
    # The planted object is the one thing no manifest lists.
    assert problems(store) == [f"{hour_name}: not listed by any manifest"]


def test_verify_time_window_limits_object_checks(store):
    fill(store)
    tamper = Tamper(store)
    name = tamper.names("events/")[0]
    tamper.write(name, b"garbage")
    assert problems(store)
    from datetime import UTC, datetime

    later = verify_archive(store, TRUSTED, since=datetime(2026, 11, 3, tzinfo=UTC))
    assert later.problems == [] and later.objects == 0


def _lister(store: ObjectStore, object_name_: str) -> str:
    for name in store.list("manifests/"):
        listed = {e["name"] for e in orjson.loads(store.get(name))["objects"]}
        if object_name_ in listed:
            return name
    raise AssertionError(f"no manifest lists {object_name_}")


def test_archive_object_entries_describe_lines(tmp_path):
    archive = Archive(LocalStore(tmp_path), SIGNER)
    entry = archive.put("events/undated/x.jsonl.gz", [b'{"a":1}', b'{"b":2}'])
    assert (entry.records, entry.kind) == (2, "events")
    assert json.loads(gzip.decompress((tmp_path / entry.name).read_bytes()).splitlines()[1]) == {
        "b": 2
    }


def test_a_seal_write_that_failed_is_finished_on_retry_without_a_second_manifest(store):
    from phiwatch.archive.archive import seal_name

    class FailSealOnce:
        def __init__(self, inner):
            self.inner, self.location, self.failed = inner, inner.location, False

        def put_if_absent(self, name, data):
            if name.startswith("seals/") and not self.failed:
                self.failed = True
                raise OSError("storage hiccup")
            return self.inner.put_if_absent(name, data)

        def get(self, name):
            return self.inner.get(name)

        def list(self, prefix=""):
            return self.inner.list(prefix)

    flaky = FailSealOnce(store)
    batch = batches_of(records(), per_body=5, bodies_per_batch=3)[0]
    pipeline = build_pipeline(Settings(), flaky, [CollectingSink()])
    with pytest.raises(OSError, match="storage hiccup"):
        pipeline.process(batch)
    pipeline.process(batch)  # the host's retry
    assert len(manifests(store)) == 1
    assert Tamper(store).names(seal_name("test-5-3", batch.name))
    assert problems(store) == []
