"""Merkle tree over an object's lines (RFC 9162 §2.1), so one record can be proven part of a
signed object without revealing the object's other records (minimum necessary)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: list[bytes]) -> bytes:
    """RFC 9162's MTH, bottom up: pairing neighbours level by level and carrying an odd last
    node up unchanged builds the same tree as splitting at the largest power of two (the
    left part is always a perfect tree), in one pass and without a call per node."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = leaves
    sha256 = hashlib.sha256
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def root_of_lines(lines: Sequence[bytes]) -> bytes:
    """`root([leaf_hash(line) for line in lines])`, without a call per line."""
    sha256 = hashlib.sha256
    return root([sha256(b"\x00" + line).digest() for line in lines])


def audit_path(index: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return [*audit_path(index, leaves[:k]), root(leaves[k:])]
    return [*audit_path(index - k, leaves[k:]), root(leaves[:k])]


def verify_path(leaf: bytes, index: int, size: int, path: list[bytes], expected: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `path` lead from leaf `index` of `size` leaves to `expected`?"""
    if index >= size:
        return False
    fn, sn, node = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = _node(sibling, node)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = _node(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == expected
