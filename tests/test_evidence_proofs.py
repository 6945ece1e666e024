"""Evidence bundles prove every line an alert cites, with proofs from a remembered tree."""

from __future__ import annotations

from phiwatch.archive.evidence import _Tree
from phiwatch.archive.merkle import audit_path, leaf_hash, root, verify_path


def test_the_bundles_remembered_tree_gives_merkles_own_proofs():
    # Evidence bundles now prove every line an alert cites: their proofs come from a tree
    # that remembers subtree roots, and must be exactly phiwatch.archive.merkle's.
    for size in (1, 2, 3, 5, 8, 13, 64, 100):
        lines = [f"line {i}".encode() for i in range(size)]
        leaves = [leaf_hash(line) for line in lines]
        tree = _Tree(lines)
        for index in range(size):
            assert tree.path(index) == audit_path(index, leaves)
            assert verify_path(leaves[index], index, size, tree.path(index), root(leaves))
