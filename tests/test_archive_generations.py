"""A re-created diagnostics hub or a Geo-DR failover starts its sequence numbers again: its
batches must never reuse an old batch's name (and seal), and a name clash that still happens
is an `archive-integrity` alert with the new batch sealed, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.envelope import Body
from phiwatch.eventhubs.batches import build_batch
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.wiring import build_pipeline
from tests.harness import CollectingSink
from tests.records import fhir
from tests.test_archive_tamper import TRUSTED, Tamper

ENQUEUED = datetime(2026, 11, 2, 8, 0, 30, tzinfo=UTC)


def messages(patients: list[str], enqueued: datetime, first_seq: int = 0) -> list[EventHubMessage]:
    return [
        EventHubMessage(
            json.dumps({"records": [fhir(i, path=f"Patient/{p}")]}).encode(),
            first_seq + i,
            enqueued + timedelta(milliseconds=i),
            "0",
        )
        for i, p in enumerate(patients)
    ]


def snapshot(store: ObjectStore) -> dict[str, bytes]:
    return {name: store.get(name) for name in store.list()}


def listed_objects(store: ObjectStore) -> set[str]:
    return {
        entry["name"]
        for name in store.list("manifests/")
        for entry in orjson.loads(store.get(name))["objects"]
    }


def integrity_alerts(sink: CollectingSink) -> list:
    return [a for a in sink.alert_versions if a.rule_id == "archive-integrity"]


@pytest.mark.parametrize("later", [timedelta(days=3), timedelta(minutes=5)])
def test_a_recreated_hub_gets_new_names_and_its_batches_are_sealed(store, later):
    """The old hub archived seq 0..2; the re-created one (days later, or minutes later in the
    same hour) starts at 0 again with other records."""
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    old = build_batch("diagnostics", "0", messages(["a1", "a2", "a3"], ENQUEUED))
    new = build_batch("diagnostics", "0", messages(["b1", "b2", "b3"], ENQUEUED + later))
    assert (old.first, old.last) == (new.first, new.last)
    assert old.name != new.name
    pipeline.process(old)
    pipeline.process(new)

    raws = list(store.list("raw/"))
    assert len(raws) == 2 and set(raws) <= listed_objects(store)
    assert verify_archive(store, TRUSTED).problems == []
    assert integrity_alerts(sink) == []  # different names: nothing clashed


def test_a_redelivered_batch_keeps_its_name_and_adds_nothing(store):
    batch = messages(["a1", "a2"], ENQUEUED, first_seq=40)
    assert build_batch("d", "0", batch).name == build_batch("d", "0", list(batch)).name
    assert build_batch("d", "0", batch).name.endswith("-t20261102T080030000Z")
    build_pipeline(Settings(), store, []).process(build_batch("d", "0", batch))
    before = snapshot(store)
    build_pipeline(Settings(), store, []).process(build_batch("d", "0", batch))  # another instance
    assert snapshot(store) == before


def test_the_configured_generation_is_part_of_the_name():
    batch = messages(["a1"], ENQUEUED, first_seq=7)
    plain = build_batch("diagnostics", "0", batch).name
    second = build_batch("diagnostics", "0", batch, generation="2").name
    assert plain == f"diagnostics-p0-{7:012d}-{7:012d}-t20261102T080030000Z"
    assert second == f"diagnostics-p0-{7:012d}-{7:012d}-g2-t20261102T080030000Z"
    assert build_batch("diagnostics", "0", batch, generation="3").name != second
    # Without enqueued times (a host that gives none), the generation alone tells them apart.
    untimed = [EventHubMessage(m.body, m.sequence_number, None, "0") for m in batch]
    assert build_batch("diagnostics", "0", untimed).name == f"diagnostics-p0-{7:012d}-{7:012d}"


def test_the_generation_setting_is_validated(monkeypatch):
    monkeypatch.setenv("PHIWATCH_EVENTHUB_GENERATION", "../2")
    with pytest.raises(ValueError, match="eventhub_generation"):
        Settings()


def plain_batch(patients: list[str], enqueued: datetime) -> Batch:
    """A batch whose name carries no identity, as every name did before generations."""
    bodies = [
        Body(
            json.dumps({"records": [fhir(i, path=f"Patient/{p}")]}).encode(),
            "eventhub:diagnostics/0",
            f"seq {i}",
            sequence_number=i,
            enqueued_time=enqueued,
        )
        for i, p in enumerate(patients)
    ]
    return Batch("diagnostics-p0", 0, len(bodies) - 1, bodies)


@pytest.mark.parametrize("later", [timedelta(days=3), timedelta(minutes=5)])
def test_a_name_clash_is_an_integrity_alert_and_the_new_batch_is_sealed(store, later):
    """Same stream, first and last, other raw records: never the old seal."""
    sink = CollectingSink()
    pipeline = build_pipeline(Settings(), store, [sink])
    old = plain_batch(["a1", "a2", "a3"], ENQUEUED)
    new = plain_batch(["b1", "b2", "b3"], ENQUEUED + later)
    assert old.name == new.name
    pipeline.process(old)
    assert integrity_alerts(sink) == []
    result = pipeline.process(new)

    (alert,) = integrity_alerts(sink)
    assert alert.severity == "High"
    (old_raw,) = [n for n in store.list("raw/") if ".clash-" not in n]
    (new_raw,) = [n for n in store.list("raw/") if ".clash-" in n]
    assert alert.title == f"Archive object {old_raw} already held different raw records"
    assert new_raw in alert.reasons[1]
    # The new batch's records are archived, listed by a manifest of their own, and verify.
    assert {e.raw_record_ref.rpartition("#")[0] for e in result.events} == {new_raw}
    assert set(store.list()) - listed_objects(store) == {
        n for n in store.list() if n.startswith(("manifests/", "seals/", "chain/"))
    }
    assert verify_archive(store, TRUSTED).problems == []

    # Redelivering either batch adds nothing (the same AlertId again for the clash).
    before = snapshot(store)
    again = CollectingSink()
    other = build_pipeline(Settings(), store, [again])
    other.process(new)
    other.process(old)
    assert snapshot(store) == before
    assert [a.alert_id for a in integrity_alerts(again)] == [alert.alert_id]


def test_a_seal_that_cannot_be_checked_is_not_reused(store):
    """A seal whose manifest is gone cannot prove the batch was these records: the batch is
    archived under a name of its own (and verify reports the broken seal, not the batch)."""
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    batch = plain_batch(["a1"], ENQUEUED)
    pipeline.process(batch)
    (seal,) = store.list("seals/")
    Tamper(store).delete(seal)
    Tamper(store).write(seal, b'{"batch":"diagnostics-p0-000000000000-000000000000"}')
    sink = CollectingSink()
    build_pipeline(Settings(), store, [sink]).process(batch)
    assert len(integrity_alerts(sink)) == 1
    assert any(".clash-" in n for n in store.list("raw/"))
    assert verify_archive(store, TRUSTED).problems == [
        f"{seal}: seal is unreadable or points at nothing"
    ]
