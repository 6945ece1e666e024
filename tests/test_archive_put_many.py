"""LocalStore.put_many: a batch's objects written with their fsyncs side by side, each name
linked only once its bytes are durable, in order, create-only as one put."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from phiwatch.archive import store as store_module
from phiwatch.archive.archive import Archive, object_name
from phiwatch.archive.signer import Ed25519Signer
from phiwatch.archive.store import LocalStore, PutOutcome, put_many, sha256_hex
from tests.conftest import TEST_SIGNING_SEED_HEX

SIGNER = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))


def test_every_object_is_fsynced_before_any_name_is_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "link", lambda *a, **k: (events.append(f"link {a[1]}"), real_link(*a, **k))[1]
    )
    items = [(f"raw/2026/01/01/00/b{i}.jsonl.gz", f"data {i}".encode()) for i in range(3)]
    results = store.put_many(items)
    assert results == [(PutOutcome.CREATED, sha256_hex(d)) for _, d in items]
    assert sorted(events[:3]) == ["fsync"] * 3
    assert events[3:] == [f"link b{i}.jsonl.gz" for i in range(3)]  # in the order given
    assert [store.get(n) for n, _ in items] == [d for _, d in items]
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_after_a_conflict_nothing_more_is_linked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_if_absent("chain/s/000000000000.json", b"another writer's claim")
    results = store.put_many(
        [
            ("chain/s/000000000000.json", b"our claim"),
            ("manifests/s/undated/000000000000.json", b"our manifest"),
            ("seals/s/b.json", b"our seal"),
        ],
        stop_at_conflict=True,
    )
    assert results[0] is not None and results[0][0] is PutOutcome.CONFLICT
    assert results[1:] == [None, None]
    assert list(store.list("manifests/")) == [] and list(store.list("seals/")) == []
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_an_existing_name_is_compared_and_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_if_absent("x/y.json", b"first")
    same, other = store.put_many([("x/y.json", b"first"), ("x/z.json", b"new")])
    assert same == (PutOutcome.IDENTICAL, sha256_hex(b"first"))
    assert other == (PutOutcome.CREATED, sha256_hex(b"new"))
    assert store.put_many([("x/y.json", b"second")]) == [
        (PutOutcome.CONFLICT, sha256_hex(b"first"))
    ]
    assert store.get("x/y.json") == b"first"


def test_a_failed_fsync_links_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="disk full"):
        store.put_many([("a/1.json", b"1"), ("a/2.json", b"2"), ("a/3.json", b"3")])
    assert len(calls) == 3  # every fsync ended before the descriptors were closed
    assert list(store.list("a/")) == []
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_a_known_folder_removed_since_is_made_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_if_absent("raw/2026/01/01/00/a.jsonl.gz", b"a")
    shutil.rmtree(tmp_path / "raw")
    store.put_if_absent("raw/2026/01/01/00/b.jsonl.gz", b"b")
    assert store.get("raw/2026/01/01/00/b.jsonl.gz") == b"b"


def test_a_link_planted_in_a_known_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(tmp_path / "archive")
    store.put_if_absent("raw/2026/01/01/00/a.jsonl.gz", b"a")
    hour = tmp_path / "archive/raw/2026/01/01/00"
    shutil.rmtree(hour)
    hour.symlink_to(outside)
    with pytest.raises(store_module.UnsafeObject):
        store.put_if_absent("raw/2026/01/01/00/b.jsonl.gz", b"b")
    assert list(outside.iterdir()) == []


def test_a_store_that_changes_put_if_absent_sees_every_put(tmp_path: Path) -> None:
    seen: list[str] = []

    class Counting(LocalStore):
        def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
            seen.append(name)
            return super().put_if_absent(name, data)

    put_many(Counting(tmp_path), [("a/1.json", b"1"), ("a/2.json", b"2")])
    assert seen == ["a/1.json", "a/2.json"]


def _sealed_with_sidecar(tmp_path: Path, planted: bool) -> tuple[Archive, dict[str, Any]]:
    from phiwatch.archive import codec, hour_index

    archive = Archive(LocalStore(tmp_path), SIGNER)
    hour = datetime(2026, 1, 1, 0)
    events = archive.put(object_name("events", hour, "b"), [b'{"PatientRef":"pr_a"}'])
    index = hour_index.sidecar_name(events.name)
    if planted:  # another writer's sidecar of other events under the same name
        other = hour_index.content(events.name, events.sha256, [("pr_b", None)])
        archive.store.put_if_absent(index, codec.compress(other))
    name = archive.seal(
        stream="s",
        batch="b",
        first=0,
        last=0,
        hour=hour,
        objects=[events],
        sidecars=lambda: [hour_index.put_sidecar(archive, events, [("pr_a", None)])],
    )
    return archive, orjson.loads(archive.store.get(name))


def test_a_sidecar_is_written_in_the_seals_round_and_listed(tmp_path: Path) -> None:
    archive, manifest = _sealed_with_sidecar(tmp_path, planted=False)
    entry = manifest["objects"][-1]
    assert entry["kind"] == "index"
    assert entry["sha256"] == sha256_hex(archive.store.get(entry["name"]))
    assert (archive.objects_written, archive.derived_conflicts) == (2, [])
    assert list(archive.store.list("chain/")) == ["chain/s/000000000000.json"]


def test_a_sidecar_name_holding_other_bytes_keeps_the_first_and_seals_once(
    tmp_path: Path,
) -> None:
    archive, manifest = _sealed_with_sidecar(tmp_path, planted=True)
    entry = manifest["objects"][-1]
    held = archive.store.get(entry["name"])
    assert entry["sha256"] == sha256_hex(held)  # the first write stands, and is listed
    assert archive.derived_conflicts == [entry["name"]]
    assert archive.chain_conflicts == 0
    assert list(archive.store.list("chain/")) == ["chain/s/000000000000.json"]
    assert list(archive.store.list("seals/")) == ["seals/s/b.json"]
