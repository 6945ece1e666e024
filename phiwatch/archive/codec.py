"""The archive's gzip: written with ISA-L, read with ISA-L whatever wrote it.

Objects are gzip members, so an object written by zlib (every archive before this codec) and
one written by ISA-L read the same way, and `verify` compares SHA-256s of stored bytes, so old
archives verify unchanged. What the archive promises is the *decompressed* content (and the
line hashes and Merkle roots over it), not the compressed bytes: those change with the codec
(and may with an ISA-L release, or between the code paths ISA-L picks per CPU, so two
instances need not agree byte for byte), so a redelivered batch is compared by content
(`Archive.put`), never by compressed bytes alone.

Measured on the demo archive's objects in one run (zlib level 3, the old codec, against ISA-L
level 1): raw records 0.22x the CPU to compress and 0.36x to decompress, 3.5% smaller; events
0.23x and 0.34x, 4.3% smaller.
"""

from __future__ import annotations

import gzip
import hashlib

from isal import igzip, igzip_lib

# The stubs declare it an instance (`IsalError: Exception`); it is the class.
_IsalError: type[Exception] = igzip_lib.IsalError  # type: ignore[assignment]

# ISA-L's levels run 0-3; 1 is already smaller than zlib's 3 on diagnostic JSON.
LEVEL = 1
# The codec every archive before ISA-L was written with (zlib, level 3): names that carry a
# digest of content (`.clash-`, `.conflict-`) keep using it, so the same content gets the
# same name (and the same AlertId) as it did before, whichever codec wrote the object.
LEGACY_LEVEL = 3

DecodeError = (OSError, EOFError, ValueError)


def compress(data: bytes, level: int = LEVEL) -> bytes:
    # mtime=0: identical content gives identical bytes from one build on one machine, so a
    # redelivery there is byte for byte a no-op (and a content comparison anywhere else).
    return igzip.compress(data, level, mtime=0)


def decompress(data: bytes) -> bytes:
    """The content of a gzip object from any writer. A corrupt stream raises
    `gzip.BadGzipFile` (an OSError), a truncated one EOFError, as `gzip` did."""
    try:
        return igzip.decompress(data)
    except _IsalError as exc:
        raise gzip.BadGzipFile(f"corrupt gzip stream ({exc})") from None


def name_digest(content: bytes) -> str:
    """The SHA-256 (hex) of `content` as the first codec wrote it: a digest for names only,
    never compared with stored bytes."""
    return hashlib.sha256(gzip.compress(content, LEGACY_LEVEL, mtime=0)).hexdigest()


__all__ = ["LEVEL", "DecodeError", "compress", "decompress", "name_digest"]
