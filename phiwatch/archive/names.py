"""Archive names built from what arrives on the wire: bounded, and made of safe characters.

A hub, partition, stream or batch name ends up as a path segment of an archive object, a
manifest, a seal, a state key. Event Hubs allows hub names of 256 characters and the trigger
hands phiwatch whatever partition id it was given, so a name can be longer than a file name
may be (255 bytes: `ENAMETOOLONG`, and every retry fails the same way) or hold `/`, `..` or
control characters that would create folders or escape the archive. A name that is already
plain and short is kept as it is (so every name an existing archive holds is derived the same
way again); any other becomes a readable prefix of its safe characters plus a digest of the
whole name, so two different names never share one.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Plain: safe characters only and no leading dot, so never `.`, `..` or the `.tmp-` files
# `LocalStore` writes first and does not list.
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
DIGEST_CHARS = 16

# Input streams (`<hub>-p<partition>`) and batch names. A batch name holds its stream plus
# positions and identity (about 60 characters); the object file adds up to 32
# (`.conflict-<hash>.jsonl.gz`): within the 255 bytes of a file name, far within Blob's
# 1,024 characters per name.
MAX_STREAM = 96
MAX_BATCH = 200


def digest(text: str) -> str:
    # surrogatepass: a lone surrogate from the wire must give a digest, not an exception.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


def is_plain(text: str, limit: int) -> bool:
    return len(text) <= limit and _PLAIN.fullmatch(text) is not None


def shortened(readable: str, original: str, limit: int) -> str:
    """`readable` (safe characters) cut to fit, plus the digest of `original`."""
    keep = max(limit - DIGEST_CHARS - 2, 0)
    prefix = _UNSAFE.sub("-", readable)[:keep].lstrip(".-").rstrip("-")
    tail = f"x{digest(original)}"
    return f"{prefix}-{tail}" if prefix else tail


def safe_name(text: str, limit: int = MAX_BATCH) -> str:
    """`text` itself when it is plain and at most `limit` characters, else a readable prefix
    plus its digest. Idempotent: a safe name is its own safe name."""
    if is_plain(text, limit):
        return text
    return shortened(text, text, limit)


def stream_slug(stream: str, limit: int = MAX_STREAM) -> str:
    """The folder of a stream's manifests, claims and seals.

    Short streams keep the slug they always had (unsafe characters as `-`: `detect:$default/
    phi-events/0` → `detect-default-phi-events-0`), so existing chains go on; a long one, or
    one the old slug would have made `.`, `..` or hidden, gets a digest."""
    slug = _UNSAFE.sub("-", stream).strip("-") or "stream"
    if is_plain(slug, limit):
        return slug
    return shortened(slug, stream, limit)


__all__ = ["MAX_BATCH", "MAX_STREAM", "digest", "safe_name", "stream_slug"]
