"""Where the archive commands look when no archive is named, and the raw record behind a
`RawRecordRef`, proven before it is shown.

`phiwatch replay` writes its archive under the `--out` it was given; it records that place
in PHIWATCH_HOME/last-replay.json, so `archive verify` and `archive evidence` check the
archive the user just wrote, not a fixed `out/demo/archive` that may be another run's.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from phiwatch.archive.archive import decode_lines
from phiwatch.archive.signer import PublicKey
from phiwatch.archive.store import ObjectMissing, ObjectStore, sha256_hex
from phiwatch.archive.verify import _hour_of, check_manifest_signature, manifest_shape_problem

LAST_REPLAY = "last-replay.json"


def record_replay(home: Path, out_dir: Path) -> None:
    """Note the archive a replay wrote (best effort: a read-only home only loses the hint)."""
    pointer = {"archive": str((out_dir / "archive").resolve()), "out": str(out_dir.resolve())}
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / LAST_REPLAY).write_bytes(orjson.dumps(pointer, option=orjson.OPT_INDENT_2))
    except OSError:
        pass


def last_replay_archive(home: Path) -> str | None:
    """The archive of the last local replay, if it recorded one that still exists."""
    try:
        pointer = orjson.loads((home / LAST_REPLAY).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    archive = pointer.get("archive") if isinstance(pointer, dict) else None
    return archive if isinstance(archive, str) and Path(archive).is_dir() else None


class RawRecordError(Exception):
    """The record cannot be shown as proven: says why."""


@dataclass(frozen=True)
class ProvenRaw:
    ref: str
    manifest: str
    key_id: str
    record_hash: str
    raw: bytes


def parse_ref(ref: str) -> tuple[str, int]:
    name, sep, index = ref.rpartition("#")
    if not sep or not name.startswith("raw/") or not index.isdigit():
        raise RawRecordError(
            f"{ref!r} is not a RawRecordRef (raw/yyyy/mm/dd/hh/<batch>.jsonl.gz#<line>)"
        )
    return name, int(index)


def _manifest_for(
    store: ObjectStore, name: str
) -> tuple[str, dict[str, object], dict[str, object]]:
    """The manifest listing `name` and its entry: those of the object's hour first (a batch's
    manifest is filed under its hour), then any."""
    hour = _hour_of(name)
    manifests = list(store.list("manifests/"))
    same_hour = [m for m in manifests if hour is not None and _hour_of(m) == hour]
    for manifest in [*same_hour, *(m for m in manifests if m not in set(same_hour))]:
        try:
            document = orjson.loads(store.get(manifest))
        except (ObjectMissing, orjson.JSONDecodeError):
            continue
        if manifest_shape_problem(document) is not None:
            continue
        for entry in document["objects"]:
            if entry["name"] == name:
                return manifest, document, entry
    raise RawRecordError(f"no manifest lists {name}: run `phiwatch archive verify`")


def proven_raw(store: ObjectStore, ref: str, trusted: dict[str, PublicKey]) -> ProvenRaw:
    """The exact bytes behind `ref`, after checking the manifest listing its object is signed
    by a trusted key, the object's SHA-256 is the one listed, and the line's RecordHash is
    the SHA-256 of the bytes shown."""
    name, index = parse_ref(ref)
    manifest, document, entry = _manifest_for(store, name)
    problem = check_manifest_signature(document, trusted)
    if problem is not None:
        raise RawRecordError(f"{manifest} (which lists {name}): {problem}")
    try:
        data = store.get(name)
    except ObjectMissing:
        raise RawRecordError(f"{name}: missing (listed by {manifest})") from None
    if sha256_hex(data) != entry["sha256"]:
        raise RawRecordError(f"{name}: SHA-256 differs from {manifest}; not shown")
    lines = decode_lines(data)
    if index >= len(lines):
        raise RawRecordError(f"{name} has {len(lines)} lines; there is no line {index}")
    line = orjson.loads(lines[index])
    if "Raw" in line:
        raw = str(line["Raw"]).encode("utf-8")
    else:
        raw = base64.b64decode(str(line.get("RawBase64", "")))
    record_hash = str(line.get("RecordHash", ""))
    if hashlib.sha256(raw).hexdigest() != record_hash:
        raise RawRecordError(f"{ref}: the record's bytes do not match its RecordHash")
    return ProvenRaw(ref, manifest, str(document["key_id"]), record_hash, raw)


__all__ = [
    "LAST_REPLAY",
    "ProvenRaw",
    "RawRecordError",
    "last_replay_archive",
    "parse_ref",
    "proven_raw",
    "record_replay",
]
