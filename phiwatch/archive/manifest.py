"""Signed manifests: per input stream, a chain in which every batch lists its objects.

Each manifest lists the batch's objects (SHA-256, size, record count, Merkle root of the
lines), the batch's position in its stream (Event Hub sequence numbers, or line numbers of a
local file), the event-time range, the previous manifest's name and SHA-256, and a signature
over all of that. Deleting, altering, reordering or leaving out any of it breaks the chain or
a hash (CloudTrail-style log file integrity validation, azure-formats.md §6).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from phiwatch.archive.signer import Signer, b64

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ObjectEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    sha256: str
    bytes: int
    records: int
    merkle_root: str


class ChainLink(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    stream: str
    index: int
    # "batch": objects of one input batch; "settle": alerts raised when a replay ended.
    # batch: a contiguous range of an input stream; settle: end of a replay; detect: the
    # alerts a `detect` batch raised (only batches with alerts are sealed, so gaps are normal).
    kind: Literal["batch", "settle", "detect"] = "batch"
    batch: str
    first: int | None  # first and last sequence number (Event Hubs) or line (local file)
    last: int | None
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    objects: list[ObjectEntry]
    previous: ChainLink | None
    algorithm: str
    key_id: str
    signature: str = ""


def stream_slug(stream: str) -> str:
    return _UNSAFE.sub("-", stream).strip("-") or "stream"


def manifest_name(stream: str, hour: datetime | None, index: int) -> str:
    folder = hour.strftime("%Y/%m/%d/%H") if hour else "undated"
    return f"manifests/{stream_slug(stream)}/{folder}/{index:012d}.json"


def index_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].removesuffix(".json"))


def signing_payload(document: dict[str, Any]) -> bytes:
    """What the signature covers: the manifest without its signature, keys sorted, compact.
    Computed from parsed JSON, so a verifier needs nothing but a JSON parser."""
    return orjson.dumps(
        {k: v for k, v in document.items() if k != "signature"}, option=orjson.OPT_SORT_KEYS
    )


def sign_manifest(manifest: Manifest, signer: Signer) -> bytes:
    """The manifest's bytes as stored, signature included."""
    document = manifest.model_dump(mode="json")
    document["signature"] = b64(signer.sign(signing_payload(document)))
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
