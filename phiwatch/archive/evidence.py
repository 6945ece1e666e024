"""Evidence bundles: one alert, the events and raw records behind it, and the proof that
each is exactly what the signed archive holds, checkable offline by an investigator.

Each line travels with its Merkle audit path to the root listed for its object in a signed
manifest, so the bundle proves its records without carrying the rest of their objects
(other patients' records stay in the archive: minimum necessary).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.merkle import _node, _split, leaf_hash, verify_path
from phiwatch.archive.signer import PublicKey, key_id, load_public_key
from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import _hour_of, check_manifest_signature

FORMAT = "phiwatch-evidence/1"


class EvidenceError(Exception):
    """The bundle cannot be built (unknown alert, archive incomplete); says why."""


def _objects(store: ObjectStore, kind: str, start: datetime, end: datetime) -> list[str]:
    names = []
    for name in store.list(f"{kind}/"):
        hour = _hour_of(name)
        if hour is None or start <= hour <= end:
            names.append(name)
    return names


class _Tree:
    """One object's Merkle tree with its subtree roots remembered: an alert citing every line
    of an object gets its proofs for one pass over the tree (phiwatch.archive.merkle's
    audit_path recomputes the sibling subtrees for each line, the same hashes)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.leaves = [leaf_hash(line) for line in lines]
        self.roots: dict[tuple[int, int], bytes] = {}

    def root(self, lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return self.leaves[lo]
        found = self.roots.get((lo, hi))
        if found is None:
            k = _split(hi - lo)
            found = self.roots[(lo, hi)] = _node(self.root(lo, lo + k), self.root(lo + k, hi))
        return found

    def path(self, index: int) -> list[bytes]:
        lo, hi, siblings = 0, len(self.leaves), []
        while hi - lo > 1:  # RFC 9162 §2.1.3.1, top down; the path lists siblings bottom up
            k = _split(hi - lo)
            if index < lo + k:
                siblings.append(self.root(lo + k, hi))
                hi = lo + k
            else:
                siblings.append(self.root(lo, lo + k))
                lo = lo + k
        return siblings[::-1]


@dataclass
class _Picker:
    """Lines picked from archive objects, with the proofs for them."""

    store: ObjectStore
    cache: dict[str, list[bytes]] = field(default_factory=dict)
    trees: dict[str, _Tree] = field(default_factory=dict)
    picked: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def lines(self, name: str) -> list[bytes]:
        if name not in self.cache:
            self.cache[name] = decode_lines(self.store.get(name))
        return self.cache[name]

    def pick(self, name: str, index: int) -> dict[str, Any]:
        lines = self.lines(name)
        tree = self.trees.get(name)
        if tree is None:
            tree = self.trees[name] = _Tree(lines)
        self.picked[name].add(index)
        return {
            "object": name,
            "index": index,
            "size": len(lines),
            "line": lines[index].decode("utf-8"),
            "proof": [p.hex() for p in tree.path(index)],
        }


def build_bundle(store: ObjectStore, alert_id: str, public_keys: dict[str, str]) -> dict[str, Any]:
    picker = _Picker(store)
    found: tuple[str, int] | None = None
    for name in store.list("alerts/"):
        for index, line in enumerate(picker.lines(name)):
            if orjson.loads(line).get("AlertId") == alert_id:
                found = (name, index)  # later objects hold later versions: keep the last
    if found is None:
        raise EvidenceError(f"no alert {alert_id} in the archive at {store.location}")
    alert_item = picker.pick(*found)
    alert = orjson.loads(alert_item["line"])

    wanted = set(alert.get("EvidenceEventUids", []))
    first = datetime.fromisoformat(alert["FirstEventTime"]).replace(tzinfo=None)
    last = datetime.fromisoformat(alert["LastEventTime"]).replace(tzinfo=None)
    # Batches are filed by arrival hour, which trails event time by the allowed lateness.
    start, end = first - timedelta(days=1), last + timedelta(days=1)
    events, raws = [], []
    for name in _objects(store, "events", start, end):
        for index, line in enumerate(picker.lines(name)):
            event = orjson.loads(line)
            if event.get("EventUid") in wanted:
                wanted.discard(event["EventUid"])
                events.append(picker.pick(name, index))
                raw_name, _, raw_index = event["RawRecordRef"].rpartition("#")
                raws.append(picker.pick(raw_name, int(raw_index)))
    if wanted:
        raise EvidenceError(f"{len(wanted)} evidence event(s) of {alert_id} are not in the archive")

    manifests: dict[str, str] = {}
    needed = set(picker.picked)
    for name in store.list("manifests/"):
        text = store.get(name)
        document = orjson.loads(text)
        if needed & {entry["name"] for entry in document.get("objects", [])}:
            manifests[name] = text.decode("utf-8")
            needed -= {entry["name"] for entry in document["objects"]}
    if needed:
        raise EvidenceError(f"no manifest lists {sorted(needed)}: run `phiwatch archive verify`")
    return {
        "format": FORMAT,
        "archive": store.location,
        "alert_id": alert_id,
        "alert": alert_item,
        "events": events,
        "raw_records": raws,
        "manifests": manifests,
        "public_keys": public_keys,
    }


@dataclass
class BundleReport:
    problems: list[str] = field(default_factory=list)
    key_ids: set[str] = field(default_factory=set)
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(bundle: dict[str, Any], pinned: dict[str, PublicKey] | None) -> BundleReport:
    """Check a bundle offline. With `pinned` keys, only they may have signed it; without,
    the bundle's own keys are used and their ids reported for the auditor to compare with
    the key the organisation published."""
    report = BundleReport()
    if bundle.get("format") != FORMAT:
        report.problems.append(f"not a {FORMAT} bundle")
        return report
    keys = pinned
    if keys is None:
        keys = {}
        for claimed, pem in bundle.get("public_keys", {}).items():
            key = load_public_key(pem)
            if key_id(key) != claimed:
                report.problems.append(f"public key {claimed} does not match its own id")
            keys[key_id(key)] = key
    roots: dict[str, tuple[str, int]] = {}
    # Objects listed by a manifest whose signature failed: that failure is their one root
    # cause, reported once for the manifest rather than once more per line it would prove.
    unproven: set[str] = set()
    for name, text in bundle.get("manifests", {}).items():
        document = orjson.loads(text)
        report.key_ids.add(document.get("key_id", ""))
        problem = check_manifest_signature(document, keys)
        if problem:
            report.problems.append(f"{name}: {problem}")
            unproven.update(entry.get("name", "") for entry in document.get("objects", []))
            continue
        for entry in document.get("objects", []):
            roots[entry["name"]] = (entry["merkle_root"], entry["records"])

    def check(item: dict[str, Any], label: str) -> dict[str, Any] | None:
        root = roots.get(item["object"])
        if root is None:
            if item["object"] not in unproven:
                report.problems.append(f"{label}: no signed manifest lists {item['object']}")
            return None
        leaf = leaf_hash(item["line"].encode("utf-8"))
        proof = [bytes.fromhex(p) for p in item["proof"]]
        if item["size"] != root[1] or not verify_path(
            leaf, item["index"], root[1], proof, bytes.fromhex(root[0])
        ):
            report.problems.append(f"{label}: not what the archive holds (proof fails)")
            return None
        report.records += 1
        return orjson.loads(item["line"])

    alert = check(bundle["alert"], "alert")
    if alert is not None and alert.get("AlertId") != bundle.get("alert_id"):
        report.problems.append("alert: the proven alert is not the one the bundle names")
    evidence = set(alert.get("EvidenceEventUids", [])) if alert else set()
    proven: set[str] = set()
    for item in bundle.get("events", []):
        event = check(item, f"event {item['object']}#{item['index']}")
        if event is not None and event.get("EventUid") not in evidence:
            report.problems.append(f"event {event.get('EventUid')}: not evidence of this alert")
        elif event is not None:
            proven.add(event["EventUid"])
    # A bundle must not drop evidence: each event the alert cites is proven, or it fails.
    for uid in sorted(evidence - proven):
        report.problems.append(f"evidence event {uid} is missing from the bundle")
    raw_refs = {f"{r['object']}#{r['index']}" for r in bundle.get("raw_records", [])}
    for item in bundle.get("events", []):
        event = orjson.loads(item["line"])
        if event.get("RawRecordRef") not in raw_refs:
            report.problems.append(f"event {event.get('EventUid')}: its raw record is missing")
    for item in bundle.get("raw_records", []):
        check(item, f"raw record {item['object']}#{item['index']}")
    return report


__all__ = ["EvidenceError", "build_bundle", "verify_bundle"]
