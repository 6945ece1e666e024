"""The hour index (phiwatch/archive/hour_index.py): one sidecar per events object, sealed in
the batch's manifest, found by `lookup`; old archives without sidecars still verify and are
scanned instead; the same batch always gives the same sidecar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from phiwatch.archive import hour_index
from phiwatch.archive.archive import Archive, decode_lines
from phiwatch.archive.hour_index import Sidecar, lookup, read_events, sidecar_name
from phiwatch.archive.signer import Ed25519Signer, load_public_key
from phiwatch.archive.store import LocalStore, ObjectStore, sha256_hex
from phiwatch.archive.verify import verify_archive
from phiwatch.batch import Batch
from phiwatch.config import Settings
from phiwatch.wiring import build_pipeline
from tests.conftest import TEST_SIGNING_SEED_HEX
from tests.harness import CollectingSink, batches_of
from tests.records import fhir, keyvault

SIGNER = Ed25519Signer.from_seed(bytes.fromhex(TEST_SIGNING_SEED_HEX))
TRUSTED = {SIGNER.key_id: load_public_key(SIGNER.public_key_pem())}
BENCH_SIGNER = Ed25519Signer.from_seed(bytes.fromhex("a7" * 32))  # bench/pipelines.py
TRUSTED_BENCH = {BENCH_SIGNER.key_id: load_public_key(BENCH_SIGNER.public_key_pem())}
SINCE, UNTIL = datetime(2026, 1, 1), datetime(2027, 1, 1)
NURSES = [f"33333333-aaaa-4bbb-8ccc-{i:012d}" for i in range(3)]
KV_APP = "22222222-AAAA-4BBB-8CCC-000000000002"


def records(offset: float = 0) -> list[dict[str, Any]]:
    # Patients p0..p9 read several times by three nurses, spread over hours; Key Vault
    # reads by an app without a user (the actor is then the app id).
    reads = [
        fhir(offset + i * 900, path=f"Patient/p{i % 10}", oid=NURSES[i % 3].upper())
        for i in range(40)
    ]
    vault = [keyvault(offset + 50 + i * 700, oid=None, appid=KV_APP) for i in range(5)]
    return sorted(reads + vault, key=lambda r: r["time"])


def batches(offset: float = 0) -> list[Batch]:
    return batches_of(records(offset), per_body=4, bodies_per_batch=2)


def fill(store: ObjectStore, items: list[Batch]) -> None:
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    for batch in items:
        pipeline.process(batch)
    pipeline.finish()


def snapshot(store: ObjectStore) -> dict[str, bytes]:
    return {name: store.get(name) for name in store.list()}


def events_of(store: ObjectStore) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for name in store.list("events/"):
        for number, line in enumerate(decode_lines(store.get(name))):
            yield name, number, orjson.loads(line)


def scan(store: ObjectStore, *, patient: str | None = None, actor: str | None = None) -> set:
    """The full-scan answer the index must give."""
    return {
        (name, number)
        for name, number, event in events_of(store)
        if (patient is None or event.get("PatientRef") == patient)
        and (
            actor is None
            or (event.get("ActorUserId") or event.get("ActingAppId") or "").lower() == actor.lower()
        )
    }


def found(store: ObjectStore, **keys: Any) -> set:
    return {
        (name, number)
        for name, numbers in lookup(store, since=SINCE, until=UNTIL, **keys)
        for number in numbers
    }


def patients(store: ObjectStore) -> list[str]:
    return sorted({e["PatientRef"] for _, _, e in events_of(store) if e.get("PatientRef")})


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "archive")
    fill(store, batches())
    return store


def old_seal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal as a version from before the hour index did: sidecars are never written."""
    seal = Archive.seal

    def without_sidecars(self: Archive, *args: Any, sidecars: Any = None, **kw: Any) -> str:
        return seal(self, *args, **kw)

    monkeypatch.setattr(Archive, "seal", without_sidecars)


def test_every_events_object_has_a_sidecar_indexing_each_line(store: LocalStore) -> None:
    events = list(store.list("events/"))
    assert len(events) > 3 and len({n.split("/")[4] for n in events}) > 3  # several hours
    assert sorted(store.list("index/")) == sorted(sidecar_name(n) for n in events)
    for name in events:
        data = store.get(name)
        lines = decode_lines(data)
        sidecar = Sidecar(store.get(sidecar_name(name)))
        assert (sidecar.object, sidecar.lines) == (name, len(lines))
        assert sidecar.sha256 == sha256_hex(data)
        for number, line in enumerate(lines):
            event = orjson.loads(line)
            if event.get("PatientRef"):
                assert number in sidecar.find("patient", event["PatientRef"])
            actor = event.get("ActorUserId") or event["ActingAppId"]
            assert number in sidecar.find("actor", actor.lower())


def test_lookup_gives_what_a_full_scan_gives(store: LocalStore) -> None:
    refs = patients(store)
    assert len(refs) == 10
    for ref in refs:
        assert found(store, patient_ref=ref) == scan(store, patient=ref) != set()
    for actor in [*NURSES, KV_APP]:
        assert found(store, actor=actor.upper()) == scan(store, actor=actor) != set()
    both = found(store, patient_ref=refs[0], actor=NURSES[1])
    assert both == scan(store, patient=refs[0], actor=NURSES[1])
    assert found(store, patient_ref="pr_" + "0" * 32) == set()


def test_lookup_reads_only_the_hours_asked(store: LocalStore) -> None:
    ref = patients(store)[0]
    everything = scan(store, patient=ref)
    hours = sorted(
        {datetime.strptime("/".join(n.split("/")[1:5]), "%Y/%m/%d/%H") for n, _ in everything}
    )
    assert len(hours) > 1
    since = until = hours[-1]
    hits = {
        (n, i)
        for n, ls in lookup(store, patient_ref=ref, since=since, until=until.replace(minute=59))
        for i in ls
    }
    assert hits == {(n, i) for n, i in everything if f"/{since:%Y/%m/%d/%H}/" in n}


def test_read_events_returns_only_matching_lines(store: LocalStore) -> None:
    ref = patients(store)[0]
    hits = list(lookup(store, patient_ref=ref, since=SINCE, until=UNTIL))
    # A caller handed a wrong line (what a digest collision would be) does not get it.
    padded = [(name, [*numbers, 0, 10_000]) for name, numbers in hits]
    read = list(read_events(store, padded, patient_ref=ref))
    assert {(n, i) for n, i, _ in read} == scan(store, patient=ref)
    assert all(event["PatientRef"] == ref for _, _, event in read)


def test_sidecars_are_listed_in_their_batch_manifest(store: LocalStore) -> None:
    report = verify_archive(store, TRUSTED)
    assert report.ok, report.problems
    listed: dict[str, dict[str, Any]] = {}
    for name in store.list("manifests/"):
        for entry in orjson.loads(store.get(name))["objects"]:
            listed[entry["name"]] = {**entry, "manifest": name}
    for name in store.list("index/"):
        entry = listed[name]
        data = store.get(name)
        assert entry["kind"] == "index"
        assert entry["sha256"] == sha256_hex(data) and entry["bytes"] == len(data)
        events = name.replace("index/", "events/", 1).removesuffix(".idx.gz") + ".jsonl.gz"
        assert listed[events]["manifest"] == entry["manifest"]


def _overwrite(store: LocalStore, name: str, data: bytes) -> None:
    path = Path(store.location) / name
    path.chmod(0o644)
    path.write_bytes(data)


def test_a_tampered_sidecar_fails_verify(store: LocalStore) -> None:
    name = sorted(store.list("index/"))[0]
    sidecar = Sidecar(store.get(name))
    # Point the first line at another patient: a consistent, well-formed sidecar.
    keys = [("pr_" + "f" * 32, None)] + [(None, None)] * (sidecar.lines - 1)
    _overwrite(store, name, hour_index.encode(sidecar.object, sidecar.sha256, keys))
    problems = verify_archive(store, TRUSTED).problems
    assert any(p.startswith(f"{name}: SHA-256 differs") for p in problems), problems

    gone = sorted(store.list("index/"))[1]
    (Path(store.location) / gone).unlink()
    problems = verify_archive(store, TRUSTED).problems
    assert any(p.startswith(f"{gone}: missing") for p in problems), problems


def test_an_old_archive_without_sidecars_verifies_and_is_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "archive")
    with monkeypatch.context() as patch:
        old_seal(patch)
        fill(store, batches())
    assert list(store.list("index/")) == []
    assert verify_archive(store, TRUSTED).ok
    before = snapshot(store)
    refs = patients(store)
    for ref in refs:
        assert found(store, patient_ref=ref) == scan(store, patient=ref) != set()
    assert found(store, actor=KV_APP) == scan(store, actor=KV_APP) != set()

    # Upgraded: the old batches redelivered get no sidecar and their manifests stay as
    # they were; new batches get sidecars; the mixed archive verifies and is found whole.
    fill(store, batches())
    assert snapshot(store) == before
    fill(store, batches(offset=86_400))
    assert verify_archive(store, TRUSTED).ok
    assert {n: d for n, d in snapshot(store).items() if n in before} == before
    assert list(store.list("index/"))
    for ref in refs:
        assert found(store, patient_ref=ref) == scan(store, patient=ref)
        assert any(n in before for n, _ in found(store, patient_ref=ref))
        assert any(n not in before for n, _ in found(store, patient_ref=ref))


def test_the_same_batches_give_the_same_sidecar_bytes(tmp_path: Path, store: LocalStore) -> None:
    other = LocalStore(tmp_path / "again")
    fill(other, batches())
    mine = {n: store.get(n) for n in store.list("index/")}
    assert mine and mine == {n: other.get(n) for n in other.list("index/")}


def test_a_redelivered_batch_conflicts_with_nothing(store: LocalStore) -> None:
    before = snapshot(store)
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    for batch in batches():
        pipeline.process(batch)
    assert pipeline.archive.derived_conflicts == []
    assert pipeline.archive.integrity_conflicts == []
    assert snapshot(store) == before
    assert verify_archive(store, TRUSTED).ok


def test_a_sidecar_written_but_not_sealed_is_rewritten_identically(
    tmp_path: Path,
) -> None:
    # A crash between the sidecar put and the manifest: the retry meets its own bytes.
    store = LocalStore(tmp_path / "archive")
    items = batches()
    pipeline = build_pipeline(Settings(), store, [CollectingSink()])
    calls = 0
    seal = pipeline.archive.seal

    def crash_once(*args: Any, **kw: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            kw["sidecars"]()
            raise OSError("stopped before the manifest")
        return seal(*args, **kw)

    pipeline.archive.seal = crash_once  # type: ignore[method-assign]
    with pytest.raises(OSError):
        pipeline.process(items[0])
    written = {n: store.get(n) for n in store.list("index/")}
    assert written
    for batch in items:
        pipeline.process(batch)
    assert {n: store.get(n) for n in written} == written
    assert pipeline.archive.derived_conflicts == []
    assert verify_archive(store, TRUSTED).ok


def test_lookup_takes_aware_times_as_utc(store: LocalStore) -> None:
    ref = patients(store)[0]
    plus_two = timezone(timedelta(hours=2))
    since, until = (t.replace(tzinfo=UTC).astimezone(plus_two) for t in (SINCE, UNTIL))
    assert {
        (n, i) for n, ls in lookup(store, patient_ref=ref, since=since, until=until) for i in ls
    } == scan(store, patient=ref)
    naive_hour = sorted(n for n, _ in scan(store, patient=ref))[-1].split("/")[1:5]
    last = datetime(*map(int, naive_hour), tzinfo=UTC).astimezone(plus_two)
    assert all(
        f"/{last.astimezone(UTC):%Y/%m/%d/%H}/" in n
        for n, _ in lookup(store, patient_ref=ref, since=last, until=last)
    )


def test_lookup_needs_a_key(store: LocalStore) -> None:
    with pytest.raises(ValueError):
        next(lookup(store, since=SINCE, until=UNTIL))


def test_the_benchmark_runs_at_a_small_size(tmp_path: Path) -> None:
    from bench import archive_index

    cfg = archive_index.parse(["--events", "3000", "--days", "2", "--per-batch", "100"])
    result = archive_index.run(cfg, tmp_path / "archive", pin=False)
    assert result["patient_ok"] and result["actor_ok"]
    assert result["patient_report"]["events"] == result["expected"]["patient"] > 0
    assert 0 < result["index_share_of_archive"] < 0.2
    # The bench archive is a real one: it verifies, sidecars included.
    report = verify_archive(LocalStore(tmp_path / "archive"), TRUSTED_BENCH)
    assert report.ok, report.problems[:3]
