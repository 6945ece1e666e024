"""The archive's codec changed from zlib (level 3; level 6 for index sidecars) to ISA-L: the
content is the contract, not the compressed bytes. Old archives read and verify; a batch
archived by the previous version and redelivered after the upgrade raises no integrity
conflict and writes no `.clash-` or `.conflict-` object; other content still conflicts, under
the very names (and AlertIds) the previous version gave it. On both backends (`store`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phiwatch.archive import codec, hour_index
from phiwatch.archive.archive import Archive, decode_lines, encode_lines, object_name
from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.config import Settings
from phiwatch.eventhubs.batches import build_batch
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink
from tests.test_archive_generations import (
    ENQUEUED,
    integrity_alerts,
    listed_objects,
    messages,
    plain_batch,
    snapshot,
)
from tests.test_archive_tamper import SIGNER, TRUSTED

HOUR = ENQUEUED.replace(tzinfo=None)


def zlib_encode_lines(lines: Sequence[bytes]) -> bytes:
    """`encode_lines` as the previous version wrote it."""
    return gzip.compress(b"".join(line + b"\n" for line in lines), 3, mtime=0)


def zlib_decode_lines(data: bytes) -> list[bytes]:
    """`decode_lines` as the previous version read it."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        text = fh.read()
    return text.split(b"\n")[:-1] if text else []


def previous_codec(data: bytes, level: int = codec.LEVEL) -> bytes:
    # The previous version: zlib level 6 for hour index sidecars, 3 for every other object.
    sidecar = data.startswith(b'{"format":"phiwatch-hour-index/')
    return gzip.compress(data, 6 if sidecar else 3, mtime=0)


@pytest.fixture
def old_version(monkeypatch: pytest.MonkeyPatch):
    """Inside `with old_version():` the archive writes as the previous version did."""
    new_codec, new_lines_codec = codec.compress, codec.compress_lines

    def previous_lines_codec(lines: Sequence[bytes], level: int = codec.LEVEL) -> bytes:
        return previous_codec(b"".join(line + b"\n" for line in lines))

    class Scope:
        # Not monkeypatch.undo(): that would also undo conftest's environment.
        def __enter__(self) -> None:
            monkeypatch.setattr(codec, "compress", previous_codec)
            monkeypatch.setattr(codec, "compress_lines", previous_lines_codec)

        def __exit__(self, *exc: object) -> None:
            monkeypatch.setattr(codec, "compress", new_codec)
            monkeypatch.setattr(codec, "compress_lines", new_lines_codec)

    return Scope


LINES = [json.dumps({"n": i, "text": "record " * (i % 7)}).encode() for i in range(300)]


def test_the_new_codec_changes_bytes_not_content():
    old, new = zlib_encode_lines(LINES), encode_lines(LINES)
    assert old != new  # the codec did change
    assert decode_lines(old) == decode_lines(new) == zlib_decode_lines(new) == LINES
    assert gzip.decompress(new) == gzip.decompress(old)  # any gzip reader reads both
    assert encode_lines(LINES) == new  # deterministic (mtime 0)
    assert decode_lines(encode_lines([])) == [] == zlib_decode_lines(encode_lines([]))


@pytest.mark.parametrize("cut", [lambda d: d[:-5], lambda d: d[:12] + b"\xff" * 8 + d[20:]])
def test_a_corrupt_object_raises_what_readers_catch(cut):
    with pytest.raises((OSError, EOFError)):
        decode_lines(cut(encode_lines(LINES)))


def test_an_object_the_previous_version_wrote_is_unchanged_when_put_again(store: ObjectStore):
    name = object_name("raw", HOUR, "b1")
    store.put_if_absent(name, zlib_encode_lines(LINES))
    archive = Archive(store, SIGNER)
    entry = archive.put(name, LINES)
    assert (archive.objects_unchanged, archive.objects_written) == (1, 0)
    assert archive.integrity_conflicts == [] and archive.derived_conflicts == []
    # The entry describes the bytes stored (the first write stands), with the same root.
    assert entry.sha256 == hashlib.sha256(zlib_encode_lines(LINES)).hexdigest()
    assert entry.merkle_root == Archive(store, SIGNER).put(name, LINES).merkle_root
    assert list(store.list("raw/")) == [name]


def test_other_content_still_conflicts_under_the_previous_versions_name(store: ObjectStore):
    name = object_name("raw", HOUR, "b1")
    store.put_if_absent(name, zlib_encode_lines(LINES))
    archive = Archive(store, SIGNER)
    other = [*LINES[:-1], b'{"n":"altered"}']
    entry = archive.put(name, other)
    (conflict,) = archive.take_integrity_conflicts()
    # The name the previous version gave these records: the digest of its zlib bytes.
    digest = hashlib.sha256(zlib_encode_lines(other)).hexdigest()[:12]
    assert (
        conflict.kept_as == entry.name == name.replace(".jsonl.gz", f".conflict-{digest}.jsonl.gz")
    )
    assert decode_lines(store.get(entry.name)) == other
    # Delivered once more, by either version: the one copy, no second conflict object.
    store_names = set(store.list())
    Archive(store, SIGNER).put(name, other)
    assert set(store.list()) == store_names


def test_a_derived_object_of_the_same_content_is_no_derived_conflict(store: ObjectStore):
    name = object_name("events", HOUR, "b1")
    store.put_if_absent(name, zlib_encode_lines(LINES))
    archive = Archive(store, SIGNER)
    archive.put(name, LINES, derived=True)
    assert archive.derived_conflicts == []
    archive.put(name, LINES[:10], derived=True)  # other content: the first write stands
    assert archive.derived_conflicts == [name]


def test_a_batch_archived_before_the_upgrade_and_redelivered_after_adds_nothing(
    store: ObjectStore, old_version
):
    batch = build_batch("diagnostics", "0", messages(["a1", "a2", "a3"], ENQUEUED))
    with old_version():
        build_pipeline(Settings(), store, []).process(batch)
    before = snapshot(store)
    assert any(n.startswith("index/") for n in before)  # the sidecar is compared too
    assert all(codec.decompress(d) for n, d in before.items() if n.endswith(".gz"))

    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])  # another instance, after the upgrade
    pipeline.process(batch)
    assert integrity_alerts(sink) == []
    assert pipeline.archive.derived_conflicts == []
    assert snapshot(store) == before  # no `.clash-`, no `.conflict-`, nothing rewritten
    assert verify_archive(store, TRUSTED).problems == []


def test_raw_records_written_before_the_upgrade_but_never_sealed_are_sealed_as_stored(
    store: ObjectStore, old_version
):
    """The previous version stopped after writing the raw object: the new one seals the
    batch listing the zlib bytes stored (not its own), and the chain verifies."""
    batch = build_batch("diagnostics", "0", messages(["a1", "a2"], ENQUEUED))
    pipeline = build_pipeline(Settings(), store, [])
    with old_version():
        pipeline._archive_raw(batch)
    (raw,) = store.list("raw/")
    stored = store.get(raw)
    assert stored == previous_codec(codec.decompress(stored))

    sink = CollectingSink()
    build_pipeline(Settings(), store, [sink]).process(batch)
    assert integrity_alerts(sink) == []
    assert list(store.list("raw/")) == [raw] and store.get(raw) == stored
    assert set(store.list()) - listed_objects(store) == {
        n for n in store.list() if n.startswith(("manifests/", "seals/", "chain/"))
    }
    assert verify_archive(store, TRUSTED).problems == []


def test_a_clash_is_still_a_clash_across_the_upgrade_and_keeps_its_name(
    store: ObjectStore, old_version
):
    """Other raw records under a sealed name conflict whichever version wrote the first;
    the clash gets the name (hence the AlertId) the previous version gave it, so the clash
    redelivered across the upgrade meets its own seal."""
    old = plain_batch(["a1", "a2", "a3"], ENQUEUED)
    new = plain_batch(["b1", "b2", "b3"], ENQUEUED)
    assert old.name == new.name
    first = CollectingSink()
    with old_version():
        pipeline = build_pipeline(Settings(), store, [first])
        pipeline.process(old)
        pipeline.process(new)
    (clash_alert,) = integrity_alerts(first)
    before = snapshot(store)

    again = CollectingSink()
    upgraded = build_pipeline(Settings(), store, [again])
    upgraded.process(new)
    upgraded.process(old)
    assert [a.alert_id for a in integrity_alerts(again)] == [clash_alert.alert_id]
    assert snapshot(store) == before
    assert verify_archive(store, TRUSTED).problems == []


def test_other_records_under_a_name_sealed_before_the_upgrade_clash(
    store: ObjectStore, old_version
):
    old = plain_batch(["a1", "a2"], ENQUEUED)
    new = plain_batch(["b1", "b2"], ENQUEUED)
    with old_version():
        build_pipeline(Settings(), store, []).process(old)
    sink = CollectingSink()
    build_pipeline(Settings(), store, [sink]).process(new)
    (alert,) = integrity_alerts(sink)
    assert alert.severity == "High"
    assert any(".clash-" in n for n in store.list("raw/"))
    assert verify_archive(store, TRUSTED).problems == []


def test_a_raw_entry_without_a_merkle_root_is_compared_by_the_object_it_names(
    store: ObjectStore,
):
    name = object_name("raw", HOUR, "b1")
    _, digest = store.put_if_absent(name, zlib_encode_lines(LINES))
    archive = Archive(store, SIGNER)
    assert archive._same_raw({"name": name, "sha256": digest}, LINES)
    assert not archive._same_raw({"name": name, "sha256": digest}, LINES[1:])
    assert not archive._same_raw({"name": name, "sha256": "0" * 64}, LINES)  # not as sealed
    assert not archive._same_raw({"name": name, "sha256": ""}, LINES)  # an unusable seal


def test_an_archive_the_previous_version_wrote_is_read_by_the_index_and_reports(
    store: ObjectStore, old_version
):
    batch = build_batch("diagnostics", "0", messages(["a1", "a2", "a3"], ENQUEUED))
    with old_version():
        build_pipeline(Settings(), store, []).process(batch)
    (events,) = store.list("events/")
    (sidecar,) = store.list("index/")
    lines = decode_lines(store.get(events))
    assert lines == zlib_decode_lines(store.get(events))
    assert hour_index.Sidecar(store.get(sidecar)).lines == len(lines) == 3
    patient = orjson.loads(lines[1])["PatientRef"]
    hits = list(hour_index.lookup(store, patient_ref=patient, since=HOUR, until=HOUR))
    assert hits == [(events, [1])]
    ((_, number, document),) = hour_index.read_events(store, hits, patient_ref=patient)
    assert (number, document["PatientRef"]) == (1, patient)


@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")), max_size=3000))
@settings(max_examples=60, deadline=None)
def test_lines_compressed_in_chunks_hold_the_joined_content(lines: list[bytes]) -> None:
    data = codec.compress_lines(lines)
    assert codec.decompress(data) == (b"\n".join(lines) + b"\n" if lines else b"")
