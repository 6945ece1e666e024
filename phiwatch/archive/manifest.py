"""Signed manifests: per input stream, a chain in which every batch lists its objects.

Each manifest lists the batch's objects (SHA-256, size, record count, Merkle root of the
lines), the batch's position in its stream (Event Hub sequence numbers, or line numbers of a
local file), the event-time range, the previous manifest's name and SHA-256, and a signature
over all of that. Deleting, altering, reordering or leaving out any of it breaks the chain or
a hash (CloudTrail-style log file integrity validation, azure-formats.md §6).

A manifest is stored in the hour folder of its batch,

    manifests/<stream>/<yyyy/mm/dd/hh>/<index:012d>.json

so its create-only write cannot stop a second manifest with the same index in another hour
folder. The index claim does: `chain/<stream>/<index:012d>.json`, one name per index whatever
the hour, written create-only *before* the manifest. It holds the manifest's name, batch,
SHA-256 and bytes, so that any writer that finds a claim whose manifest was never written
(its writer stopped in between) can write it.
"""

from __future__ import annotations

from datetime import datetime
from hashlib import sha256
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from phiwatch.archive.names import stream_slug
from phiwatch.archive.signer import Signer, b64


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


def manifest_name(stream: str, hour: datetime | None, index: int) -> str:
    folder = hour.strftime("%Y/%m/%d/%H") if hour else "undated"
    return f"manifests/{stream_slug(stream)}/{folder}/{index:012d}.json"


def index_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].removesuffix(".json"))


CLAIMS = "chain/"


class Claim(BaseModel):
    """Index `index` of `stream`'s chain belongs to the manifest `manifest` (batch `batch`).

    Not signed itself: it carries the signed manifest (`content`, its exact bytes), and the
    verifier checks that the manifest stored under `manifest` is that one."""

    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    stream: str
    index: int
    batch: str
    manifest: str  # the manifest's name (in the hour folder of the writer that claimed)
    sha256: str  # of the manifest's bytes
    content: str  # the manifest's bytes (UTF-8 JSON)


def claim_name(stream: str, index: int) -> str:
    return f"{CLAIMS}{stream_slug(stream)}/{index:012d}.json"


def encode_claim(claim: Claim) -> bytes:
    return orjson.dumps(claim.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS) + b"\n"


def read_claim(name: str, data: bytes) -> Claim:
    """The claim stored under `name`; ValueError if it is unreadable or does not hold together
    (another stream or index, a manifest name of another chain position, content that is not
    that manifest): an altered or planted claim."""
    try:
        claim = Claim.model_validate_json(data)
    except ValueError as exc:
        raise ValueError(f"{name}: index claim is unreadable (altered or truncated)") from exc
    parts = name.split("/")
    if len(parts) != 3 or parts[1] != claim.stream or _index_or_none(name) != claim.index:
        raise ValueError(
            f"{name}: holds the claim of {claim.stream}#{claim.index} (claims swapped or moved)"
        )
    manifest = claim.manifest
    folder = f"manifests/{claim.stream}/"
    if not manifest.startswith(folder) or _index_or_none(manifest) != claim.index:
        raise ValueError(f"{name}: names {manifest}, not a manifest of index {claim.index}")
    content = claim.content.encode()
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        document = None
    if (
        not isinstance(document, dict)
        or sha256(content).hexdigest() != claim.sha256
        or (document.get("stream"), document.get("index"), document.get("batch"))
        != (claim.stream, claim.index, claim.batch)
    ):
        raise ValueError(f"{name}: its content is not the manifest it claims (altered)")
    return claim


def _index_or_none(name: str) -> int | None:
    try:
        return index_of(name)
    except ValueError:
        return None


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
