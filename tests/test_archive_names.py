"""Names from the wire (hub, partition, stream, batch) are bounded and safe: a 300-character
hub or a partition id holding `/`, `..` or control characters neither stalls the partition
(ENAMETOOLONG, a refused name) nor creates folders or escapes the archive, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.archive.archive import object_name, seal_name
from phiwatch.archive.manifest import claim_name, manifest_name
from phiwatch.archive.names import MAX_BATCH, MAX_STREAM, safe_name, stream_slug
from phiwatch.archive.store import LocalStore, ObjectStore, check_name
from phiwatch.archive.verify import verify_archive
from phiwatch.config import Settings
from phiwatch.detect.state_store import LocalStateStore, check_key, state_key
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink
from tests.records import fhir
from tests.test_archive_tamper import TRUSTED

ENQUEUED = datetime(2026, 11, 2, 8, 0, 30, tzinfo=UTC)
HOUR = datetime(2026, 11, 2, 8)
NAME_MAX = 255  # bytes of one file name (and a sane bound for one Blob path segment)

WIRE_NAMES = [
    ("h" * 300, "0"),
    ("diagnostics", "7" * 260),
    ("diagnostics", "../../../etc"),
    ("diagnostics", "a/b/c"),
    ("diagnostics", ".."),
    ("diagnostics", "x\x00y\n\x7f"),
    ("../..", "0"),
    ("diagnostics", ".tmp-hidden"),
]


def messages(partition: str) -> list[EventHubMessage]:
    body = json.dumps({"records": [fhir(1, path="Patient/p1")]}).encode()
    return [EventHubMessage(body, 5, ENQUEUED, partition)]


def assert_bounded(name: str) -> None:
    check_name(name)
    assert len(name) <= 1024
    assert all(len(s.encode()) <= NAME_MAX and not s.startswith(".") for s in name.split("/"))


@pytest.mark.parametrize(("hub", "partition"), WIRE_NAMES)
def test_a_wire_name_neither_stalls_nor_escapes(store: ObjectStore, tmp_path: Path, hub, partition):
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    batch = build_batch(hub, partition, messages(partition))
    result = pipeline.process(batch)
    assert result.counts.events == 1
    names = list(store.list())
    # raw, events, the events' hour index; one manifest, its claim and its seal: nothing
    # more, nothing elsewhere.
    assert len(names) == 6
    for name in names:
        assert_bounded(name)
        assert name.count("/") <= 6
    if isinstance(store, LocalStore):
        assert [p.name for p in tmp_path.iterdir()] == ["archive"]
    assert verify_archive(store, TRUSTED).problems == []
    # The same messages again: the same names, nothing added.
    build_pipeline(Settings(), store, []).process(build_batch(hub, partition, messages(partition)))
    assert list(store.list()) == names


def test_plain_short_names_are_kept_as_they_were():
    assert safe_name("diagnostics-p0-000000000101-000000000103") == (
        "diagnostics-p0-000000000101-000000000103"
    )
    assert stream_slug("detect:$default/phi-events/0") == "detect-default-phi-events-0"
    assert stream_slug("diagnostics-p0") == "diagnostics-p0"
    assert object_name("raw", HOUR, "d-p0-1-2") == "raw/2026/11/02/08/d-p0-1-2.jsonl.gz"
    assert seal_name("d-p0", "d-p0-1-2") == "seals/d-p0/d-p0-1-2.json"


def test_long_or_unsafe_names_get_a_readable_prefix_and_a_digest():
    long = "h" * 300 + "-p0"
    assert safe_name(long, MAX_STREAM).startswith("h" * 40)
    assert len(safe_name(long, MAX_STREAM)) == MAX_STREAM
    # What the old slug made of them would be one name; the digest keeps them apart.
    assert safe_name("a/b") != safe_name("a-b") and safe_name("a/b").startswith("a-b-x")
    assert safe_name("..") != safe_name(".") and check_name(safe_name(".."))
    assert stream_slug("s" * 200) != stream_slug("s" * 201)


@given(st.text(max_size=400), st.sampled_from([MAX_STREAM, MAX_BATCH]))
def test_any_text_gives_a_bounded_plain_idempotent_name(text: str, limit: int):
    name = safe_name(text, limit)
    assert len(name) <= limit and check_name(name) == name and "/" not in name
    assert not name.startswith(".") and name.isascii()
    assert safe_name(name, limit) == name
    slug = stream_slug(text)
    assert len(slug) <= MAX_STREAM and "/" not in slug and not slug.startswith(".")
    assert stream_slug(slug) == slug


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_different_wire_names_never_share_an_archive_name(a: str, b: str):
    if a != b:
        assert safe_name(a) != safe_name(b)


def test_archive_names_of_a_long_stream_are_bounded():
    stream = "eventhub:" + "h" * 300 + "/0"
    for name in (
        manifest_name(stream, HOUR, 12),
        claim_name(stream, 12),
        seal_name(stream_slug(stream), "b" * 400),
        object_name("events", HOUR, "b" * 400),
    ):
        assert_bounded(name)


def test_state_key_of_a_256_character_hub_fits_a_file_name(tmp_path: Path):
    hub = "h" * 256  # the longest Event Hub name
    key = check_key(state_key("phiwatch", hub, "3"))
    assert all(len(s) <= NAME_MAX for s in key.split("/"))
    assert state_key("phiwatch", "phi-events", "3") == "phiwatch/phi-events/3.json.gz"
    store = LocalStateStore(tmp_path / "state")
    store.save(key, b"{}", None)
    assert store.load(key) is not None
