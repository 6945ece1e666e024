"""A patient report over a month of archive: the hour index against a full scan.

Issue #17 item 5: a report must not read every object. This run writes a synthetic 30-day
archive of `--events` FHIR reads (default 10,000,000) straight through the archive writer
(`Archive.put`, `Archive.seal` with the hour index sidecar, as the pipeline writes a batch:
create-only LocalStore, gzip, Merkle roots, Ed25519-signed manifest chain), one batch of
`--per-batch` events at a time, then, pinned to one core:

* patient report: `hour_index.lookup` for one patient over the 30 days, then `read_events`
  (decompress the objects that hold a hit and parse exactly those lines), checked against the
  accesses the generator made for that patient; the same for an actor;
* baseline: a full scan (decompress every events object, parse every line, compare
  PatientRef) of the first `--scan-hours` hours, timed in the same run and scaled to the
  30 days, plus the index lookup over that same slice;
* sizes: every object kind's bytes, and the sidecars' share of the archive.

The events are the real FHIR normaliser's (one read through `Pipeline`, bench/synthetic.py's
record shape) with the fields that vary per access replaced: time, actor, patient, ids,
address, raw pointer. Each event's raw object holds its Started and Succeeded records, as
the service sends them. Patients are drawn uniformly from `--patients` and actors from
`--actors`, so most index entries are distinct within an object (a pessimistic case for the
actor column's compression); the report's patient gets `--target-accesses` reads spread
over the month on top of its uniform share. fsync is skipped while generating unless
`--fsync` (the write's durability is not what is measured, and 60,000 fsyncs on a shared
disk would dominate the run). Times are with the archive in the page cache (it was just
written): what a report on a warm local archive costs, not Blob's per-request latency.

    python -m bench.archive_index [--events N] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench import synthetic
from bench.corpus import batches
from bench.pipelines import SIGNING_SEED, make_pipeline, quiet_logging
from phiwatch.archive.archive import Archive, decode_lines, object_name
from phiwatch.archive.hour_index import Keys, lookup, put_sidecar, read_events
from phiwatch.archive.manifest import ObjectEntry
from phiwatch.archive.signer import Ed25519Signer
from phiwatch.archive.store import LocalStore

START = datetime(2026, 10, 1, tzinfo=UTC)
STREAM = "phiwatch-diagnostics-p0"
TARGET = 0  # the report's patient and actor (index into the generated populations)
PATIENT_KEY = bytes.fromhex("5e" * 32)


def templates() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A real event (the FHIR normaliser's output) and its Started and Succeeded records."""
    t = START.timestamp()
    pair = synthetic.read_pair(0, t, 0)
    pipeline = make_pipeline("normalise")
    (batch,) = batches(synthetic._bodies([(t, r) for r in pair]), 1)
    (event,) = pipeline.process(batch).events
    return event.to_wire(), pair[0], pair[1]


def patient_ref(patient: int) -> str:
    # The shape of a PatientRef (`pr_` + 32 hex of a keyed hash); blake2b: faster to make.
    digest = hashlib.blake2b(patient.to_bytes(4, "big"), key=PATIENT_KEY, digest_size=16)
    return "pr_" + digest.hexdigest()


def _iso(t: float) -> str:
    dt = datetime.fromtimestamp(t, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}Z"


def _accesses(cfg: argparse.Namespace, rng: random.Random) -> Iterator[tuple[int, list]]:
    """Per hour: (hour index, sorted [(time, patient, actor)])."""
    hours = cfg.days * 24
    per_hour, extra = divmod(cfg.events, hours)
    # The target patient's own reads, one hour apart at least, spread over the month.
    target_hours = set(rng.sample(range(hours), min(cfg.target_accesses, hours)))
    for h in range(hours):
        n = per_hour + (h < extra)
        base = START.timestamp() + h * 3600
        rows = [
            (base + rng.random() * 3600, rng.randrange(cfg.patients), rng.randrange(cfg.actors))
            for _ in range(n)
        ]
        if h in target_hours and rows:
            rows[0] = (rows[0][0], TARGET, rows[0][2])
        yield h, sorted(rows)


def generate(cfg: argparse.Namespace, root: Path) -> dict[str, Any]:
    event_t, started_t, done_t = templates()
    archive = Archive(LocalStore(root), Ed25519Signer.from_seed(SIGNING_SEED))
    rng = random.Random(cfg.seed)  # noqa: S311 - a reproducible synthetic archive
    truth = {"patient": 0, "actor": 0}
    target_ref, target_actor = patient_ref(TARGET), synthetic.actor_oid(TARGET)
    seq = 0
    for h, rows in _accesses(cfg, rng):
        hour = START + timedelta(hours=h)
        for k in range(0, len(rows), cfg.per_batch):
            chunk = rows[k : k + cfg.per_batch]
            name = f"{STREAM}-{seq:012d}-{seq + 2 * len(chunk) - 1:012d}"
            raw_name = object_name("raw", hour, name)
            raw_lines: list[bytes] = []
            event_lines: list[bytes] = []
            keys: list[Keys] = []
            for i, (t, patient, actor) in enumerate(chunk):
                oid = synthetic.actor_oid(actor)
                ref = patient_ref(patient)
                uri = f"{synthetic.BASE_URL}/Patient/{patient:08d}"
                ip = f"10.{40 + actor // 65536 % 16}.{actor // 256 % 256}.{actor % 254 + 1}"
                corr = f"{rng.getrandbits(128):032x}"
                claims = {**done_t["identity"]["claims"], "oid": oid}
                claims["upn"] = f"clinician{actor:06d}@contoso-health.org"
                common = {
                    "identity": {"claims": claims},
                    "uri": uri,
                    "callerIpAddress": ip,
                    "correlationId": corr,
                    "properties": {"fhirResourceType": "Patient", "requestUri": uri},
                }
                raw_lines.append(orjson.dumps({**started_t, **common, "time": _iso(t)}))
                raw_lines.append(orjson.dumps({**done_t, **common, "time": _iso(t + 0.05)}))
                event = {
                    **event_t,
                    "TimeGenerated": _iso(t + 0.05),
                    "EventUid": f"{rng.getrandbits(128):032x}",
                    "EventOriginalUid": corr,
                    "Object": f"Patient/{ref}",
                    "ActorUserId": oid,
                    "ActorUsername": claims["upn"],
                    "SrcIpAddr": ip,
                    "PatientRef": ref,
                    "RawRecordRef": f"{raw_name}#{2 * i + 1}",
                }
                event_lines.append(orjson.dumps(event))
                keys.append((ref, oid))
                truth["patient"] += ref == target_ref
                truth["actor"] += oid == target_actor
            raw = archive.put(raw_name, raw_lines)
            events = archive.put(object_name("events", hour, name), event_lines, derived=True)
            archive.seal(
                stream=STREAM,
                batch=name,
                first=seq,
                last=seq + len(raw_lines) - 1,
                hour=hour,
                objects=[raw, events],
                event_times=(
                    datetime.fromtimestamp(chunk[0][0], tz=UTC),
                    datetime.fromtimestamp(chunk[-1][0], tz=UTC),
                ),
                sidecars=partial(_sidecars, archive, events, keys),
            )
            seq += len(raw_lines)
        if h % 24 == 23:
            print(f"  day {h // 24 + 1} written", file=sys.stderr, flush=True)
    return truth


def sizes(root: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.is_file():
            kind = path.relative_to(root).parts[0]
            found[kind] = found.get(kind, 0) + path.stat().st_size
    return found


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def report(store: LocalStore, since: datetime, until: datetime, **key: str) -> dict[str, Any]:
    """Lookup, then read exactly the matching lines; best and first of three runs."""
    runs = []
    for _ in range(3):
        t_lookup, hits = _timed(lambda: list(lookup(store, since=since, until=until, **key)))
        t_read, events = _timed(lambda hits=hits: list(read_events(store, hits, **key)))
        runs.append((t_lookup + t_read, t_lookup, t_read, len(hits), len(events)))
    best = min(runs)
    return {
        "seconds_first": round(runs[0][0], 3),
        "seconds": round(best[0], 3),
        "lookup_seconds": round(best[1], 3),
        "read_seconds": round(best[2], 3),
        "objects_read": best[3],
        "events": best[4],
    }


def full_scan(store: LocalStore, since: datetime, until: datetime, ref: str) -> dict[str, Any]:
    """The baseline: every events object of the hours, every line parsed."""
    t0 = time.perf_counter()
    objects = lines = matched = 0
    hour = since
    while hour <= until:
        for name in store.list(f"events/{hour:%Y/%m/%d/%H}/"):
            objects += 1
            for line in decode_lines(store.get(name)):
                lines += 1
                matched += orjson.loads(line).get("PatientRef") == ref
        hour += timedelta(hours=1)
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "objects": objects,
        "events": lines,
        "matched": matched,
    }


def _no_sync(fd: Any) -> None:
    return None


def _sidecars(archive: Archive, events: ObjectEntry, keys: list[Keys]) -> list[ObjectEntry]:
    return [put_sidecar(archive, events, keys)]


@contextlib.contextmanager
def no_fsync(enabled: bool) -> Iterator[None]:
    real = os.fsync
    if enabled:
        os.fsync = _no_sync
    try:
        yield
    finally:
        os.fsync = real


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.archive_index", description=__doc__)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--per-batch", type=int, default=1_000, help="events per batch (object)")
    p.add_argument("--patients", type=int, default=2_000_000)
    p.add_argument("--actors", type=int, default=50_000)
    p.add_argument("--target-accesses", type=int, default=60)
    p.add_argument("--scan-hours", type=int, default=24, help="baseline slice (hours)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--out", type=Path, help="archive directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the archive afterwards")
    p.add_argument("--fsync", action="store_true", help="fsync every object while writing")
    return p.parse_args(argv)


def run(cfg: argparse.Namespace, root: Path, *, pin: bool = True) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    with no_fsync(not cfg.fsync):
        truth = generate(cfg, root)
    generated = {
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
    }
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the reports on one core
    store = LocalStore(root)
    since = START.replace(tzinfo=None)
    until = since + timedelta(days=cfg.days) - timedelta(seconds=1)
    ref, actor = patient_ref(TARGET), synthetic.actor_oid(TARGET)
    patient = report(store, since, until, patient_ref=ref)
    by_actor = report(store, since, until, actor=actor)
    slice_until = since + timedelta(hours=cfg.scan_hours) - timedelta(seconds=1)
    scan = full_scan(store, since, slice_until, ref)
    indexed_slice = report(store, since, slice_until, patient_ref=ref)
    hours = cfg.days * 24
    by_kind = sizes(root)
    total = sum(by_kind.values())
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
        "generated": generated,
        "expected": truth,
        "patient_report": patient,
        "actor_report": by_actor,
        "patient_ok": patient["events"] == truth["patient"],
        "actor_ok": by_actor["events"] == truth["actor"],
        "baseline_slice": scan,
        "indexed_slice": indexed_slice,
        "baseline_scaled_seconds": round(scan["seconds"] * hours / cfg.scan_hours, 1),
        "bytes": by_kind,
        "archive_bytes": total,
        "index_share_of_archive": round(by_kind.get("index", 0) / total, 4),
        "index_share_of_events": round(by_kind.get("index", 0) / by_kind["events"], 4),
        "index_bytes_per_event": round(by_kind.get("index", 0) / cfg.events, 2),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    cfg = parse(argv)
    quiet_logging()
    root = cfg.out or Path(tempfile.mkdtemp(prefix="phiwatch-index-bench-")) / "archive"
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty")
    try:
        print(json.dumps(run(cfg, root), indent=2))
    finally:
        if not cfg.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
