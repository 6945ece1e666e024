"""Mutating real record shapes for the normalisers' property tests: any value of any JSON
type (and some tricky texts) at any path of a record."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def wire_values(*texts: str) -> st.SearchStrategy[Any]:
    """Values of every JSON type, huge and odd numbers, and the given tricky texts."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
        st.sampled_from(texts or ("",)),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    )


def mutate(record: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted `path` to `value` where its parents are objects; else leave it."""
    *parents, key = path.split(".")
    node: Any = record
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[key] = value
