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
from collections.abc import Sequence

from isal import igzip, igzip_lib, isal_zlib

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


# Lines handed to the compressor at a time: a 100,000-record body's raw object is about
# 100 MB of lines, and joining it first held two more copies of it (issue #18: bounded memory
# on huge bodies); 1,024 lines is some hundreds of KB.
CHUNK_LINES = 1024
# gzip framing (header and trailer), as `compress` writes it.
_GZIP_WBITS = 31


def compress_lines(lines: Sequence[bytes], level: int = LEVEL) -> bytes:
    """The gzip of `lines`, each followed by a newline, without joining them first. The
    content is what `compress(b"\\n".join(lines) + b"\\n")` holds; the compressed bytes may
    differ from it (they depend on how the input was handed over), as they may between codecs."""
    if not lines:
        return compress(b"", level)
    stream = isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP_WBITS)
    out = []
    for start in range(0, len(lines), CHUNK_LINES):
        out.append(stream.compress(b"\n".join(lines[start : start + CHUNK_LINES]) + b"\n"))
    out.append(stream.flush())
    return b"".join(out)


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


__all__ = ["LEVEL", "DecodeError", "compress", "compress_lines", "decompress", "name_digest"]
