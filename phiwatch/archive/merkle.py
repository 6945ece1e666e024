"""Merkle tree over an object's lines (RFC 9162 §2.1), so one record can be proven part of a
signed object without revealing the object's other records (minimum necessary)."""

from __future__ import annotations

import hashlib


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
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    if len(level) == 1:
        return level[0]
    k = _split(len(level))
    return _node(root(level[:k]), root(level[k:]))


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
