"""Several instances extending one stream's manifest chain (a partition that moves away and
back, a rebalance, a crash): each index is claimed exactly once (`chain/<stream>/<index>.json`),
whatever hour folder the manifests fall in, so the chain never forks; on the local backend
and on Azure Blob (Azurite)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import pytest

from phiwatch.archive.archive import (
    Archive,
    ArchiveIntegrityError,
    object_name,
    seal_name,
)
from phiwatch.archive.manifest import (
    ChainLink,
    Claim,
    Manifest,
    claim_name,
    encode_claim,
    index_of,
    manifest_name,
    sign_manifest,
)
from phiwatch.archive.store import ObjectMissing, ObjectStore, PutOutcome, sha256_hex
from phiwatch.archive.verify import verify_archive
from tests.test_archive_tamper import SIGNER, TRUSTED, Tamper, fill

STREAM = "eventhub:diagnostics/0"
SLUG = "eventhub-diagnostics-0"
DAY = datetime(2026, 11, 2)


def batch_name(n: int) -> str:
    return f"diagnostics-p0-{n * 10:012d}-{n * 10 + 9:012d}"


def seal(archive: Archive, n: int, hour: int, *, manifest_hour: int | None = None) -> str:
    """Archive batch `n` (positions 10n..10n+9, in hour `hour`) and seal it; returns the
    manifest name. `manifest_hour`: a redelivery that derives another hour for its manifest
    (as detect does: the hour of its alerts)."""
    when = DAY + timedelta(hours=hour)
    name = batch_name(n)
    entry = archive.put(object_name("raw", when, name), [orjson.dumps({"n": n})])
    return archive.seal(
        stream=STREAM,
        batch=name,
        first=n * 10,
        last=n * 10 + 9,
        hour=DAY + timedelta(hours=hour if manifest_hour is None else manifest_hour),
        objects=[entry],
    )


def chain(store: ObjectStore, slug: str = SLUG) -> dict[int, list[str]]:
    """Index → the manifests stored with it (more than one is a fork)."""
    found: dict[int, list[str]] = {}
    for name in store.list(f"manifests/{slug}/"):
        found.setdefault(index_of(name), []).append(name)
    return found


def batches_in_chain_order(store: ObjectStore, slug: str = SLUG) -> list[str]:
    by_index = chain(store, slug)
    assert all(len(names) == 1 for names in by_index.values()), f"forked: {by_index}"
    assert sorted(by_index) == list(range(len(by_index))), "indices are not 0..n-1"
    return [orjson.loads(store.get(by_index[i][0]))["batch"] for i in sorted(by_index)]


def problems(store: ObjectStore) -> list[str]:
    return verify_archive(store, TRUSTED).problems


class FailManifestOnce:
    """A store on which the write of manifest #`armed` raises, once: the writer stops between
    claim and manifest, as a crash or a storage outage there would stop it."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.location = inner, inner.location
        self.armed: int | None = None  # the index whose manifest write fails

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        if name.startswith("manifests/") and index_of(name) == self.armed:
            self.armed = None
            raise OSError("instance stopped between claim and manifest")
        return self.inner.put_if_absent(name, data)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def list(self, prefix: str = ""):
        return self.inner.list(prefix)


# --- a stale cached head ------------------------------------------------------------------


def test_a_stale_head_meets_the_index_claim_instead_of_forking_the_chain(store):
    # The simulation's finding: `a` caches the head at index 0; `b` extends the chain to 2,
    # the last in hour 11; `a` seals its next batch (hour 11) at its stale index 1, which `b`
    # wrote in hour 10. Another folder: the manifest's create-only write does not conflict,
    # and before index claims the chain forked there (two manifests with index 1).
    a, b = Archive(store, SIGNER), Archive(store, SIGNER)
    assert seal(a, 0, hour=10) == f"manifests/{SLUG}/2026/11/02/10/{0:012d}.json"
    assert seal(b, 1, hour=10) == f"manifests/{SLUG}/2026/11/02/10/{1:012d}.json"
    assert seal(b, 2, hour=11) == f"manifests/{SLUG}/2026/11/02/11/{2:012d}.json"
    assert seal(a, 3, hour=11) == f"manifests/{SLUG}/2026/11/02/11/{3:012d}.json"

    assert a.chain_conflicts == 1 and b.chain_conflicts == 0  # index 1 was b's: a re-read
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(4)]
    assert list(store.list("chain/")) == [claim_name(SLUG, i) for i in range(4)]
    assert problems(store) == []
    report = verify_archive(store, TRUSTED)
    assert (report.manifests, report.claims, report.streams) == (4, 4, 1)


def test_two_instances_alternating_across_hour_boundaries(store):
    # Many batches, handed back and forth between two instances at random, the hour moving
    # on every few batches: each instance often seals with a head that is several batches
    # (and hours) stale.
    rng = random.Random(7)
    archives = [Archive(store, SIGNER), Archive(store, SIGNER)]
    names = []
    for n in range(40):
        names.append(seal(archives[rng.random() < 0.5], n, hour=n // 3))
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(40)]
    assert [index_of(name) for name in names] == list(range(40))
    assert len({name.rsplit("/", 1)[0] for name in names}) == 14  # hour folders
    assert sum(a.chain_conflicts for a in archives) > 5
    assert sum(a.manifests_written for a in archives) == 40
    assert problems(store) == []


def test_concurrent_instances_each_batch_sealed_once(store):
    # Four instances at once on one stream: two given the same batches (a rebalance: both
    # process the partition), two with batches of their own, each group in other hours, so
    # that racing writers of one index would put their manifests in different folders.
    # Every batch is in the chain exactly once, at one index, and both instances that sealed
    # a batch name the same manifest for it.
    shared = [f"shared-{n:03d}" for n in range(12)]
    results: dict[str, list[str]] = {name: [] for name in shared}
    errors: list[BaseException] = []
    retries = Counter()

    def worker(w: int, batches: list[str], hour_of: int) -> None:
        archive = Archive(store, SIGNER)
        try:
            for k, name in enumerate(batches):
                hour = DAY + timedelta(hours=hour_of + k // 4)  # a batch's hour is its own
                entry = archive.put(object_name("alerts", hour, name), [name.encode()])
                for _ in range(20):  # the host retries a batch that failed
                    try:
                        got = archive.seal(
                            stream=STREAM,
                            batch=name,
                            first=None,
                            last=None,
                            hour=hour,
                            objects=[entry],
                            kind="detect",
                        )
                        break
                    except ArchiveIntegrityError:  # lost the race for an index 5 times
                        retries[w] += 1
                else:
                    raise AssertionError(f"{name} never sealed")
                if name in results:
                    results[name].append(got)
        except BaseException as exc:
            errors.append(exc)

    own = {w: [f"own{w}-{n:03d}" for n in range(8)] for w in (2, 3)}
    threads = [
        threading.Thread(target=worker, args=(0, shared, 10)),
        threading.Thread(target=worker, args=(1, shared, 10)),
        threading.Thread(target=worker, args=(2, own[2], 16)),
        threading.Thread(target=worker, args=(3, own[3], 19)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sealed = batches_in_chain_order(store)
    assert Counter(sealed) == Counter(shared + own[2] + own[3])
    for batches in (shared, own[2], own[3]):  # each in its writers' order
        assert [b for b in sealed if b in batches] == batches
    for name, got in results.items():
        assert len(got) == 2 and got[0] == got[1], name
    print(f"lost an index 5 times in a row: {dict(retries)}")
    assert problems(store) == []


class Meanwhile:
    """A store that runs `then()` once, right after a seal pointer was looked up and not
    found: what other instances do while this one goes on from that answer."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.location = inner, inner.location
        self.then: Callable[[], object] | None = None

    def put_if_absent(self, name: str, data: bytes) -> tuple[PutOutcome, str]:
        return self.inner.put_if_absent(name, data)

    def get(self, name: str) -> bytes:
        try:
            return self.inner.get(name)
        except ObjectMissing:
            if name.startswith("seals/") and self.then is not None:
                then, self.then = self.then, None
                then()
            raise

    def list(self, prefix: str = ""):
        return self.inner.list(prefix)


def test_a_batch_sealed_meanwhile_by_another_instance_is_not_sealed_again(store):
    # `a` (head cached at 0) finds no seal for batch 1; meanwhile `b` seals batch 1 (its
    # manifest in another hour: not the claim `a` would write) and `c` batch 2 after it. `a`
    # meets index 1 claimed, reads the head (batch 2) and, before appending batch 1 a second
    # time, finds its seal.
    slow = Meanwhile(store)
    a, b, c = Archive(slow, SIGNER), Archive(store, SIGNER), Archive(store, SIGNER)
    seal(a, 0, hour=9)
    slow.then = lambda: (seal(b, 1, hour=10, manifest_hour=11), seal(c, 2, hour=11))
    assert seal(a, 1, hour=10) == f"manifests/{SLUG}/2026/11/02/11/{1:012d}.json"
    assert slow.then is None and a.chain_conflicts == 1
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(3)]
    assert problems(store) == []


# --- a writer that stops between claim and manifest ---------------------------------------


def test_stopped_between_claim_and_manifest_the_same_batch_is_finished_elsewhere(store):
    flaky = FailManifestOnce(store)
    a, b = Archive(flaky, SIGNER), Archive(store, SIGNER)
    seal(a, 0, hour=9)
    flaky.armed = 1
    with pytest.raises(OSError, match="between claim and manifest"):
        seal(a, 1, hour=10)
    claimed = f"manifests/{SLUG}/2026/11/02/10/{1:012d}.json"
    assert list(store.list("chain/")) == [claim_name(SLUG, 0), claim_name(SLUG, 1)]
    assert claimed not in list(store.list("manifests/"))
    # The host redelivers the batch to another instance, whose manifest would go in another
    # hour (a derived hour may differ): the claim's manifest is written, under its name.
    assert seal(b, 1, hour=10, manifest_hour=11) == claimed
    assert b.manifests_completed == 1
    assert Tamper(store).names(seal_name(SLUG, batch_name(1)))
    # And again on the first instance: its seal is found, nothing is added.
    assert seal(a, 1, hour=10) == claimed
    assert seal(a, 2, hour=11) == f"manifests/{SLUG}/2026/11/02/11/{2:012d}.json"
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(3)]
    assert problems(store) == []


def test_stopped_between_claim_and_manifest_another_batch_finishes_it_and_goes_on(store):
    flaky = FailManifestOnce(store)
    a, b = Archive(flaky, SIGNER), Archive(store, SIGNER)
    seal(b, 0, hour=9)  # b's cached head: index 0
    flaky.armed = 1
    with pytest.raises(OSError):
        seal(a, 1, hour=10)
    # Before batch 1 comes back, b seals batch 2: index 1 is claimed, its manifest missing.
    # b writes it from the claim (no waiting for a batch that may never come back under the
    # same name) and appends after it.
    assert seal(b, 2, hour=11) == f"manifests/{SLUG}/2026/11/02/11/{2:012d}.json"
    assert (b.chain_conflicts, b.manifests_completed) == (1, 1)
    assert problems(store) == []
    # Batch 1 comes back (to either instance): its seal, written by b, says where it is.
    fresh = Archive(store, SIGNER)
    assert (
        seal(fresh, 1, hour=10, manifest_hour=12) == f"manifests/{SLUG}/2026/11/02/10/{1:012d}.json"
    )
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(3)]
    assert problems(store) == []


def test_a_retry_on_the_same_instance_rewrites_the_same_claim(store):
    flaky = FailManifestOnce(store)
    a = Archive(flaky, SIGNER)
    seal(a, 0, hour=9)
    flaky.armed = 1
    with pytest.raises(OSError):
        seal(a, 1, hour=10)
    # Same head, same objects, Ed25519: the same claim, byte for byte (IDENTICAL).
    assert seal(a, 1, hour=10) == f"manifests/{SLUG}/2026/11/02/10/{1:012d}.json"
    assert (a.chain_conflicts, a.manifests_written) == (0, 2)
    assert batches_in_chain_order(store) == [batch_name(0), batch_name(1)]
    assert problems(store) == []


# --- archives from before index claims ------------------------------------------------------


def without_claims(store: ObjectStore) -> None:
    """What an archive written before index claims looks like."""
    tamper = Tamper(store)
    for name in tamper.names("chain/"):
        tamper.delete(name)


def test_an_archive_without_claims_verifies_and_is_extended(store):
    fill(store)
    without_claims(store)
    before = {n: store.get(n) for n in store.list()}
    report = verify_archive(store, TRUSTED)
    assert (report.problems, report.claims) == ([], 0)
    fill(store)  # every batch again: all sealed already, nothing is added
    assert {n: store.get(n) for n in store.list()} == before
    chain_before = chain(store, "test-5-3")
    Archive(store, SIGNER).seal(
        stream="test-5-3",
        batch="after-the-upgrade",
        first=None,
        last=None,
        hour=DAY,
        objects=[],
        kind="settle",
    )
    index = len(chain_before)
    assert chain(store, "test-5-3") == {
        **chain_before,
        index: [f"manifests/test-5-3/2026/11/02/00/{index:012d}.json"],
    }
    assert list(store.list("chain/")) == [claim_name("test-5-3", index)]
    assert problems(store) == []


def test_an_archive_whose_claims_start_mid_chain_is_extended(store):
    a = Archive(store, SIGNER)
    for n in range(3):
        seal(a, n, hour=9)
    without_claims(store)  # manifests 0..2 written by an older version
    b = Archive(store, SIGNER)
    seal(b, 3, hour=10)
    seal(a, 4, hour=11)  # a's cached head (2) is stale: index 3 is claimed
    assert [index_of(n) for n in store.list("chain/")] == [3, 4]
    assert batches_in_chain_order(store) == [batch_name(n) for n in range(5)]
    assert problems(store) == []


def test_verify_reports_a_fork_of_an_archive_from_before_claims(store):
    # What the bug left behind: two manifests with index 1, in hours 10 and 11.
    a = Archive(store, SIGNER)
    for n in range(3):
        seal(a, n, hour=10)
    without_claims(store)
    zero = f"manifests/{SLUG}/2026/11/02/10/{0:012d}.json"
    forked = plant_manifest(store, 1, hour=11, batch=batch_name(7), previous=zero)
    one = f"manifests/{SLUG}/2026/11/02/10/{1:012d}.json"
    fork = f"stream {SLUG}: 2 manifests with index 1 ({one}, {forked}): the chain forked"
    assert problems(store) == [fork]
    assert verify_archive(store, TRUSTED).manifests == 4
    # The claimed manifest is the one the chain follows, whatever its name.
    store.put_if_absent(claim_name(SLUG, 1), claim_for(store, forked))
    two = f"manifests/{SLUG}/2026/11/02/10/{2:012d}.json"
    assert problems(store) == [
        fork,
        f"{forked}: positions 10..69 of stream {SLUG} were never archived (gap)",
        f"{two}: does not chain to {forked} (a manifest was altered, replaced or reordered)",
    ]


# --- claims that do not hold together -------------------------------------------------------


def plant_manifest(
    store: ObjectStore, index: int, *, hour: int, batch: str, previous: str | None
) -> str:
    link = ChainLink(name=previous, sha256=sha256_hex(store.get(previous))) if previous else None
    manifest = Manifest(
        stream=SLUG,
        index=index,
        batch=batch,
        first=70,
        last=79,
        objects=[],
        previous=link,
        algorithm=SIGNER.algorithm,
        key_id=SIGNER.key_id,
    )
    name = manifest_name(SLUG, DAY + timedelta(hours=hour), index)
    Tamper(store).write(name, sign_manifest(manifest, SIGNER))
    return name


def claim_for(store: ObjectStore, source: str, **changes) -> bytes:
    """The claim of the manifest stored as `source`, with `changes`."""
    content = store.get(source)
    document = orjson.loads(content)
    fields = {
        "stream": SLUG,
        "index": document["index"],
        "batch": document["batch"],
        "manifest": source,
        "sha256": sha256_hex(content),
        "content": content.decode(),
    }
    return encode_claim(Claim(**{**fields, **changes}))


def sealed_three(store: ObjectStore, archive: Archive | None = None) -> list[str]:
    a = archive or Archive(store, SIGNER)
    return [seal(a, n, hour=9 + n) for n in range(3)]


def test_verify_reports_a_claim_whose_manifest_does_not_exist(store):
    names = sealed_three(store)
    # A claim for index 3, its content a genuinely signed manifest that was never written.
    content = sign_manifest(
        Manifest(
            stream=SLUG,
            index=3,
            batch=batch_name(3),
            first=30,
            last=39,
            objects=[],
            previous=ChainLink(name=names[2], sha256=sha256_hex(store.get(names[2]))),
            algorithm=SIGNER.algorithm,
            key_id=SIGNER.key_id,
        ),
        SIGNER,
    )
    missing = f"manifests/{SLUG}/2026/11/02/12/{3:012d}.json"
    claim = Claim(
        stream=SLUG,
        index=3,
        batch=batch_name(3),
        manifest=missing,
        sha256=sha256_hex(content),
        content=content.decode(),
    )
    Tamper(store).write(claim_name(SLUG, 3), encode_claim(claim))
    (found,) = problems(store)
    assert found.startswith(
        f"chain/{SLUG}/{3:012d}.json: claims index 3 for {missing}, which does not exist"
    )
    # The next batch of the stream writes it (a writer that stopped in between).
    seal(Archive(store, SIGNER), 4, hour=13)
    assert missing in list(store.list("manifests/"))
    assert problems(store) == []


def test_verify_reports_a_claim_that_does_not_match_its_manifest(store):
    names = sealed_three(store)
    tamper = Tamper(store)
    # Another (genuinely signed) manifest in place of the one claimed for index 1.
    document = orjson.loads(store.get(names[1]))
    tamper.delete(names[1])
    replaced = plant_manifest(store, 1, hour=10, batch=document["batch"], previous=names[0])
    assert replaced == names[1]
    found = problems(store)
    assert (
        f"chain/{SLUG}/{1:012d}.json: {names[1]} is not the manifest claimed for index 1 "
        "(SHA-256 differs: altered, or written without a claim)"
    ) in found


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"index": 2}, "holds the claim of {slug}#2 (claims swapped or moved)"),
        ({"stream": "other"}, "holds the claim of other#1 (claims swapped or moved)"),
        ({"manifest": "raw/2026/11/02/10/x.jsonl.gz"}, "names raw/2026/11/02/10/x.jsonl.gz"),
        ({"batch": "forged"}, "its content is not the manifest it claims (altered)"),
        ({"sha256": "0" * 64}, "its content is not the manifest it claims (altered)"),
        (None, "index claim is unreadable (altered or truncated)"),
    ],
)
def test_verify_reports_a_forged_claim(store, change, expected):
    names = sealed_three(store)
    name = claim_name(SLUG, 1)
    forged = claim_for(store, names[1], **change) if change else b'{"stream": "'
    Tamper(store).write(name, forged)
    found = problems(store)
    assert f"{name}: {expected.format(slug=SLUG)}" in "\n".join(found), found
    assert verify_archive(store, TRUSTED).claims == 2


def test_a_forged_claim_at_the_head_stops_the_writer_instead_of_being_written(store):
    names = sealed_three(store)
    forged = claim_for(store, names[2], index=3, manifest="raw/2026/11/02/12/planted.jsonl.gz")
    Tamper(store).write(claim_name(SLUG, 3), forged)
    with pytest.raises(ArchiveIntegrityError, match=f"chain/{SLUG}/{3:012d}.json"):
        seal(Archive(store, SIGNER), 3, hour=12)
    assert "raw/2026/11/02/12/planted.jsonl.gz" not in list(store.list("raw/"))


def test_a_claimed_name_taken_by_a_manifest_without_claim(store):
    # An older writer (no claims), running beside a new one during an upgrade, wrote index 3
    # in the hour the new one claimed it for. The new one cannot write its manifest: the
    # chain goes on from the stored manifest and the batch goes after it; verify reports the
    # fork's traces (the claim, and the positions the older writer skipped).
    a = Archive(store, SIGNER)
    names = sealed_three(store, a)  # a caches the head: index 2
    planted = plant_manifest(store, 3, hour=12, batch=batch_name(7), previous=names[2])
    assert seal(a, 3, hour=12) == f"manifests/{SLUG}/2026/11/02/12/{4:012d}.json"
    assert batches_in_chain_order(store) == [
        *(batch_name(n) for n in range(3)),
        batch_name(7),
        batch_name(3),
    ]
    assert problems(store) == [
        f"{planted}: positions 30..69 of stream {SLUG} were never archived (gap)",
        f"chain/{SLUG}/{3:012d}.json: {planted} is not the manifest claimed for index 3 "
        "(SHA-256 differs: altered, or written without a claim)",
    ]
    # The older writer gets ahead of the claims: a fresh instance goes after its manifest.
    five = plant_manifest(store, 5, hour=13, batch=batch_name(8), previous=names[2])
    assert seal(Archive(store, SIGNER), 5, hour=13).endswith(f"/13/{6:012d}.json")
    assert [index_of(n) for n in store.list("chain/")] == [0, 1, 2, 3, 4, 6]
    assert chain(store)[5] == [five]
