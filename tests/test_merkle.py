"""The Merkle proofs an evidence bundle relies on: every leaf of every size verifies, and
any change to a leaf, index or path does not."""

from __future__ import annotations

import hashlib

import pytest

from phiwatch.archive.merkle import audit_path, leaf_hash, root, root_of_lines, verify_path


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 100])
def test_every_leaf_proves_and_tampering_does_not(size):
    lines = [f"line {i}".encode() for i in range(size)]
    leaves = [leaf_hash(line) for line in lines]
    top = root(leaves)
    for index in range(size):
        path = audit_path(index, leaves)
        assert verify_path(leaves[index], index, size, path, top)
        assert not verify_path(leaf_hash(b"forged"), index, size, path, top)
        if size > 1:
            assert not verify_path(leaves[index], (index + 1) % size, size, path, top)
            assert not verify_path(leaves[index], index, size, path[:-1], top)
    assert not verify_path(leaves[0], size, size, [], top)


def test_root_depends_on_order_and_content():
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert root([a, b]) != root([b, a])
    assert root([a]) == a


def _recursive_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 as written (the definition the archive's roots were made with)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _recursive_root(leaves[:k]), _recursive_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("sizes", [range(0, 70), [127, 128, 129, 255, 256, 257, 900, 1025]])
def test_the_iterative_root_is_the_recursive_definition(sizes):
    for size in sizes:
        lines = [f"line {i}".encode() for i in range(size)]
        leaves = [leaf_hash(line) for line in lines]
        assert root(leaves) == _recursive_root(leaves), size
        assert root_of_lines(lines) == root(leaves), size
