"""State snapshots with optimistic concurrency: one contract, two backends (directory, Azurite).

Each test that takes `backend` runs once per backend. `backend.open()` gives a new, independent
store instance over the same storage: two of them play two `detect` instances that both believe
they own a partition.
"""

from __future__ import annotations

import gzip
import multiprocessing
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from phiwatch.detect.state_store import (
    BlobStateStore,
    LocalStateStore,
    Snapshot,
    StateConflict,
    StateContainerMissing,
    StateStore,
    StateStoreError,
    check_key,
    state_key,
)
from tests.azurite import CLIENT_KWARGS, Azurite

KEY = state_key("phiwatch", "phi-events", "3")


@dataclass
class Backend:
    name: str
    open: Callable[[], StateStore]  # a new instance over the same storage
    stored: Callable[[str], bytes]  # the bytes at rest under a key
    remove: Callable[[str], None]


@pytest.fixture(params=["local", "blob"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "state"
        return Backend(
            "local",
            lambda: LocalStateStore(root),
            lambda key: (root / key).read_bytes(),
            lambda key: (root / key).unlink(),
        )
    azurite: Azurite = request.getfixturevalue("azurite")
    container = request.getfixturevalue("blob_container")
    name = container.container_name
    return Backend(
        "blob",
        lambda: BlobStateStore.from_connection_string(
            azurite.connection_string, name, **CLIENT_KWARGS
        ),
        lambda key: container.download_blob(key).readall(),
        container.delete_blob,
    )


# ------------------------------------------------------------------------------ contract


def test_round_trip_returns_the_bytes_and_a_new_etag_per_save(backend: Backend):
    store = backend.open()
    assert store.load(KEY) is None

    first = store.save(KEY, b'{"seq": 1}', None)
    assert store.load(KEY) == Snapshot(b'{"seq": 1}', first)

    second = store.save(KEY, b'{"seq": 2}', first)
    assert second != first
    assert store.load(KEY) == Snapshot(b'{"seq": 2}', second)
    # A fresh instance sees the same version (nothing is cached per instance).
    assert backend.open().load(KEY) == Snapshot(b'{"seq": 2}', second)


def test_payloads_are_opaque_bytes(backend: Backend):
    store = backend.open()
    for index, data in enumerate([b"", bytes(range(256)) * 40, b"x" * 3_000_000]):
        key = state_key("phiwatch", "phi-events", str(index))
        etag = store.save(key, data, None)
        assert store.load(key) == Snapshot(data, etag)


def test_payload_is_stored_verbatim(backend: Backend):
    # The caller's serialisation is already gzip'd JSON: the store adds no second encoding.
    data = gzip.compress(b'{"windows": []}' * 1000, mtime=0)
    etag = backend.open().save(KEY, data, None)
    stored = backend.stored(KEY)
    if backend.name == "local":
        assert stored == b"phiwatch-state/1 " + etag.encode() + b"\n" + data
    else:
        assert stored == data


def test_create_only_conflicts_when_the_snapshot_exists(backend: Backend):
    a, b = backend.open(), backend.open()
    etag = a.save(KEY, b"from a", None)

    with pytest.raises(StateConflict, match="already exists"):
        b.save(KEY, b"from b", None)

    assert b.load(KEY) == Snapshot(b"from a", etag)


def test_stale_etag_conflicts_and_a_reload_resolves_it(backend: Backend):
    setup = backend.open()
    v1 = setup.save(KEY, b"v1", None)
    a, b = backend.open(), backend.open()
    seen_a, seen_b = a.load(KEY), b.load(KEY)
    assert seen_a == seen_b == Snapshot(b"v1", v1)

    v2 = a.save(KEY, b"v2 by a", seen_a.etag)  # the first save wins
    with pytest.raises(StateConflict, match="no longer version"):
        b.save(KEY, b"v2 by b", seen_b.etag)
    assert setup.load(KEY) == Snapshot(b"v2 by a", v2)  # b overwrote nothing

    fresh = b.load(KEY)
    assert fresh is not None
    v3 = b.save(KEY, fresh.data + b" + b", fresh.etag)
    assert setup.load(KEY) == Snapshot(b"v2 by a + b", v3)


def test_identical_bytes_still_retire_the_old_etag(backend: Backend):
    store = backend.open()
    v1 = store.save(KEY, b"same", None)
    v2 = store.save(KEY, b"same", v1)
    assert v2 != v1
    with pytest.raises(StateConflict):
        store.save(KEY, b"stale writer", v1)
    assert store.load(KEY) == Snapshot(b"same", v2)


def test_replacing_a_removed_snapshot_conflicts(backend: Backend):
    store = backend.open()
    etag = store.save(KEY, b"v1", None)
    backend.remove(KEY)
    with pytest.raises(StateConflict):
        store.save(KEY, b"v2", etag)
    assert store.load(KEY) is None


def test_load_of_a_missing_key_is_none(backend: Backend):
    store = backend.open()
    store.save(KEY, b"other", None)
    assert store.load(state_key("phiwatch", "phi-events", "4")) is None
    assert store.load("nowhere/at/all.json.gz") is None


def test_racing_replacements_have_exactly_one_winner(backend: Backend):
    base = backend.open().save(KEY, b"base", None)
    stores = [backend.open() for _ in range(8)]
    start = threading.Barrier(len(stores))
    won: list[bytes] = []
    lost: list[bytes] = []

    def attempt(index: int, store: StateStore) -> None:
        data = f"writer {index}".encode()
        start.wait()
        try:
            store.save(KEY, data, base)
            won.append(data)
        except StateConflict:
            lost.append(data)

    threads = [threading.Thread(target=attempt, args=x) for x in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(won) == 1 and len(lost) == len(stores) - 1
    snapshot = backend.open().load(KEY)
    assert snapshot is not None and snapshot.data == won[0]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x.json.gz",
        "a/../b.json.gz",
        "/abs.json.gz",
        "a//b.json.gz",
        "a/./b.json.gz",
        "a\\b.json.gz",
        "a/.b.json.gz.lock",
        "trailing/",
        "nul\0.json.gz",
    ],
)
def test_stores_refuse_keys_that_are_not_plain_paths(backend: Backend, bad: str):
    store = backend.open()
    with pytest.raises(ValueError, match="not a valid state key"):
        store.load(bad)
    with pytest.raises(ValueError, match="not a valid state key"):
        store.save(bad, b"x", None)


# ------------------------------------------------------------------------------ naming


def test_state_key_layout():
    assert state_key("phiwatch", "phi-events", "3") == "phiwatch/phi-events/3.json.gz"
    # Event Hubs names are case-insensitive: one consumer group, one snapshot.
    assert state_key("$Default", "PHI-Events", "31") == "$default/phi-events/31.json.gz"
    assert check_key(state_key("cg.1_x", "hub.name_2", "0")) == "cg.1_x/hub.name_2/0.json.gz"


@pytest.mark.parametrize(
    ("group", "hub", "partition"),
    [
        ("phiwatch/x", "phi-events", "0"),
        ("..", "phi-events", "0"),
        ("", "phi-events", "0"),
        ("-lead", "phi-events", "0"),
        ("g" * 51, "phi-events", "0"),
        ("phiwatch", "../etc", "0"),
        ("phiwatch", "a/b", "0"),
        ("phiwatch", ".hidden", "0"),
        ("phiwatch", "", "0"),
        ("phiwatch", "phi-events", "../0"),
        ("phiwatch", "phi-events", "0/1"),
        ("phiwatch", "phi-events", "p0"),
        ("phiwatch", "phi-events", ""),
    ],
)
def test_state_key_refuses_injection(group: str, hub: str, partition: str):
    with pytest.raises(ValueError, match="not an Event Hub"):
        state_key(group, hub, partition)


# ------------------------------------------------------------------ backend specifics


def test_missing_blob_container_is_a_clear_error(azurite: Azurite):
    with pytest.raises(StateContainerMissing, match="does not exist") as failure:
        BlobStateStore.from_connection_string(
            azurite.connection_string, f"missing-{uuid.uuid4().hex[:8]}", **CLIENT_KWARGS
        )
    assert "created by infrastructure" in str(failure.value)


def test_container_removed_after_start_is_a_clear_error(azurite: Azurite):
    container = azurite.blob_service().get_container_client(f"t-{uuid.uuid4().hex}")
    container.create_container()
    store = BlobStateStore(container)
    etag = store.save(KEY, b"v1", None)
    container.delete_container()

    with pytest.raises(StateContainerMissing):
        store.load(KEY)
    with pytest.raises(StateContainerMissing):
        store.save(KEY, b"v2", None)
    with pytest.raises(StateContainerMissing):
        store.save(KEY, b"v2", etag)


def test_blob_snapshot_properties(blob_container):
    store = BlobStateStore(blob_container)
    etag = store.save(KEY, b"{}", None)
    props = blob_container.get_blob_client(KEY).get_blob_properties()
    assert props.content_settings.content_type == "application/gzip"
    assert props.etag == etag  # the etag save() returns is the blob's, quotes and all
    assert store.location == blob_container.url


def test_blob_state_store_refuses_a_sas_url():
    with pytest.raises(StateStoreError, match="SAS"):
        BlobStateStore.from_url("https://acct.blob.core.windows.net/phiwatch-state?sv=1&sig=x")


def test_local_state_directory_that_is_a_file(tmp_path: Path):
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(StateStoreError, match="not a directory"):
        LocalStateStore(tmp_path / "state")
    with pytest.raises(StateStoreError, match="not a directory"):
        LocalStateStore(tmp_path / "state" / "below")


def test_local_file_not_written_by_phiwatch_is_a_clear_error(tmp_path: Path):
    store = LocalStateStore(tmp_path)
    store.save(KEY, b"fine", None)
    (tmp_path / KEY).write_bytes(b"copied in by hand")
    with pytest.raises(StateStoreError, match="not written by phiwatch"):
        store.load(KEY)
    with pytest.raises(StateStoreError, match="not written by phiwatch"):
        store.save(KEY, b"next", None)


def test_local_etags_count_generations(tmp_path: Path):
    store = LocalStateStore(tmp_path)
    first = store.save(KEY, b"a", None)
    second = store.save(KEY, b"b", first)
    assert first.startswith("1-") and second.startswith("2-")
    # Nothing but the snapshot and its lock file beside it (no temp files left behind).
    names = sorted(p.name for p in (tmp_path / "phiwatch" / "phi-events").iterdir())
    assert names == [".3.json.gz.lock", "3.json.gz"]


def _race_in_a_process(directory: str, base: str, index: int, barrier, results) -> None:
    store = LocalStateStore(Path(directory))
    barrier.wait()
    try:
        store.save(KEY, f"process {index}".encode(), base)
        results.put(("won", index))
    except StateConflict:
        results.put(("lost", index))


def test_local_store_two_processes_cannot_both_win(tmp_path: Path):
    base = LocalStateStore(tmp_path).save(KEY, b"base", None)
    context = multiprocessing.get_context("fork")
    count = 6
    barrier = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=_race_in_a_process, args=(str(tmp_path), base, i, barrier, results))
        for i in range(count)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    winners = [index for outcome, index in outcomes if outcome == "won"]
    assert len(winners) == 1
    snapshot = LocalStateStore(tmp_path).load(KEY)
    assert snapshot is not None and snapshot.data == f"process {winners[0]}".encode()
