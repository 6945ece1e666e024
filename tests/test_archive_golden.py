"""The archive's content is a contract: Sentinel and six years of archive rely on the
decompressed bytes of every object, every manifest's line counts and Merkle roots, and every
AlertId. This test replays a few of the shipped sample hours (with the demo's privacy inputs
and deployment settings, so privacy stamps, dead-letters and a dozen rules are exercised) and
compares a content digest of the archive with the one committed in `tests/golden/`, which was
made with the code from before the performance work of issue #18 (codec, decoder,
normalisers, detections).

Compressed bytes are not compared: the codec may change them. So the digest leaves out what
names compressed bytes: an object's SHA-256 and size in its manifest entry, an index
sidecar's Merkle root (the one-leaf tree of its compressed bytes), the `sha256` field in a
sidecar's header (the events object's compressed bytes; checked here against the object
stored instead), the link SHA-256s, claim contents and signatures. Everything else is
compared exactly.

Regenerate (only for a deliberate, reviewed change of content):

    PYTHONPATH=. python -m tests.test_archive_golden --write
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from phiwatch.archive.signer import load_public_key, local_public_key
from phiwatch.archive.store import LocalStore, sha256_hex
from phiwatch.archive.verify import verify_archive
from phiwatch.config import Settings
from phiwatch.hosts.replay import replay
from tests.scenario_inputs import privacy_files, scenario_settings

SAMPLES = Path(__file__).parent.parent / "samples"
FIXTURE = Path(__file__).parent / "golden" / "archive_small.json"
# Hours with privacy alerts, dead-letters, Key Vault, FHIR export and anonymous reads: about
# 6,300 records, a few seconds.
HOURS = (
    "diagnostics-2026-11-02T10.jsonl.gz",
    "diagnostics-2026-11-02T15.jsonl.gz",
    "diagnostics-2026-11-02T22.jsonl.gz",
    "diagnostics-2026-11-03T05.jsonl.gz",
)
# Manifest fields that say which batch and which records, not how they are compressed.
BATCH_FIELDS = (
    "version",
    "stream",
    "index",
    "kind",
    "batch",
    "first",
    "last",
    "first_event_time",
    "last_event_time",
    "algorithm",
    "key_id",
)


def _sidecar_content(data: bytes, events_sha256: dict[str, str]) -> str:
    """Digest of a sidecar's decompressed content without its header's `sha256` (the events
    object's compressed bytes), which must name the events object as stored."""
    header, _, columns = gzip.decompress(data).partition(b"\n")
    meta = orjson.loads(header)
    stored = events_sha256.get(meta["object"])
    if meta.pop("sha256") != stored:
        return f"header sha256 does not name {meta['object']} as stored"
    return hashlib.sha256(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS) + columns).hexdigest()


def content_digest(root: Path) -> dict[str, Any]:
    """Name → content facts of every file of the archive under `root`."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    names = {str(p.relative_to(root)): p.read_bytes() for p in files}
    events = {n: sha256_hex(d) for n, d in names.items() if n.startswith("events/")}
    out: dict[str, Any] = {}
    alert_ids: list[str] = []
    for name, data in names.items():
        if name.startswith("index/"):
            out[name] = _sidecar_content(data, events)
        elif name.endswith(".jsonl.gz"):
            text = gzip.decompress(data)
            out[name] = {"sha256": sha256_hex(text), "lines": text.count(b"\n")}
            if name.startswith("alerts/"):
                alert_ids += [orjson.loads(line)["AlertId"] for line in text.splitlines()]
        elif name.startswith("manifests/"):
            manifest = orjson.loads(data)
            facts = {k: manifest.get(k) for k in BATCH_FIELDS}
            facts["previous"] = (manifest.get("previous") or {}).get("name")
            facts["objects"] = [
                {
                    "name": o["name"],
                    "kind": o["kind"],
                    "records": o["records"],
                    # An index sidecar's root is over its compressed bytes.
                    "merkle_root": None if o["kind"] == "index" else o["merkle_root"],
                }
                for o in manifest["objects"]
            ]
            out[name] = facts
        elif name.startswith(("seals/", "chain/")):
            document = orjson.loads(data)
            out[name] = {k: document.get(k) for k in ("batch", "manifest", "stream", "index")}
        else:
            out[name] = f"unexpected file of {len(data)} bytes"
    out["alert-ids"] = alert_ids
    return out


def replay_small(out: Path) -> dict[str, Any]:
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())
    summary = replay(
        [SAMPLES / "logs" / hour for hour in HOURS],
        out,
        scenario_settings(truth),
        **privacy_files(SAMPLES, truth),
    )
    digest = content_digest(out / "archive")
    digest["replay-alert-ids"] = sorted(a.alert_id for a in summary.alerts)
    return digest


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    found = [f"missing: {n}" for n in sorted(expected.keys() - actual.keys())]
    found += [f"unexpected: {n}" for n in sorted(actual.keys() - expected.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            found.append(f"differs: {name}: expected {expected[name]!r}, got {actual[name]!r}")
    return found


def test_replay_archives_the_golden_content_and_it_verifies(tmp_path):
    actual = replay_small(tmp_path)
    expected = json.loads(FIXTURE.read_text())
    problems = differences(expected, actual)
    assert not problems, f"{len(problems)} archive objects differ:\n" + "\n".join(problems[:40])
    key = local_public_key(Settings())
    assert key is not None
    report = verify_archive(LocalStore(tmp_path / "archive"), {key[0]: load_public_key(key[1])})
    assert report.problems == []
    assert report.manifests == sum(n.startswith("manifests/") for n in expected)


if __name__ == "__main__":  # regenerate the fixture (see the module docstring)
    import os
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_archive_golden --write")
    # The test environment's fixed keys (tests/conftest.py): the same pseudonyms and key id.
    from tests.conftest import TEST_KEY_HEX, TEST_SIGNING_SEED_HEX

    os.environ["PHIWATCH_PSEUDONYM_KEY"] = TEST_KEY_HEX
    os.environ["PHIWATCH_ARCHIVE_SIGNING_KEY"] = TEST_SIGNING_SEED_HEX
    with tempfile.TemporaryDirectory() as home:
        os.environ["PHIWATCH_HOME"] = home
        digest = replay_small(Path(home) / "out")
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(digest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(digest)} entries)")
