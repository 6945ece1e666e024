"""The Merkle proofs an evidence bundle relies on: every leaf of every size verifies, and
any change to a leaf, index or path does not."""

from __future__ import annotations

import pytest

from phiwatch.archive.merkle import audit_path, leaf_hash, root, verify_path


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
