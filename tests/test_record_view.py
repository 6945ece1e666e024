"""The record view's fields: the shared key-set cache gives what lower-casing each key of
each record gave (issue #18), whatever keys, casings and collisions a record has."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phiwatch.sources import record as record_module
from phiwatch.sources.fields import to_str
from phiwatch.sources.record import Claims, Record


def _fields_one_by_one(value: dict[str, Any]) -> dict[str, Any]:
    """The view as it was made before the cache: every key lower-cased, and for keys that
    collide (`Level`, `level`) the first non-null value."""
    fields = {key.lower(): item for key, item in value.items()}
    if len(fields) < len(value):
        fields = {}
        for key, item in value.items():
            if fields.get(key.lower()) is None:
                fields[key.lower()] = item
    return fields


def _text(value: Any) -> str:
    return (value.strip() or None) if isinstance(value, str) else to_str(value) or ""


_KEYS = st.sampled_from(
    ["time", "Time", "TIME", "category", "Category", "type", "resourceId", "RESOURCEID"]
    + ["operationName", "Level", "level", "properties", "İd", "ß", "ǅx"]
) | st.text(max_size=6)
_VALUES = st.none() | st.integers() | st.text(max_size=8) | st.booleans() | st.just({"a": 1})


@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=10), min_size=1, max_size=6))
def test_the_view_is_every_key_lower_cased(values: list[dict[str, Any]]) -> None:
    # Several records in a row: a key set seen before comes from the cache.
    for value in values * 2:
        view = Record(value, "uid")
        assert view.fields == _fields_one_by_one(value)
        assert list(view.fields) == list(_fields_one_by_one(value))
        category = view.fields.get("category")
        if category is None:
            category = view.fields.get("type")
        assert view.category == (_text(category) or "")
        assert view.resource_id == (_text(view.fields.get("resourceid")) or "").lower()
        assert view.operation_name == (_text(view.fields.get("operationname")) or "")


def test_a_record_with_many_keys_is_lower_cased_without_the_cache() -> None:
    value = {f"Key{i}": i for i in range(record_module._MAX_CACHED_KEYS + 1)}
    record_module._KEY_SETS.clear()
    assert Record(value, "uid").fields == {f"key{i}": i for i in range(len(value))}
    assert not record_module._KEY_SETS


def test_the_key_set_cache_is_bounded() -> None:
    record_module._KEY_SETS.clear()
    for i in range(record_module._MAX_KEY_SETS + 10):
        Record({f"K{i}": 1}, "uid")
    assert len(record_module._KEY_SETS) <= record_module._MAX_KEY_SETS


def test_the_view_is_a_copy() -> None:
    value = {"time": "2026-01-01T00:00:00Z", "category": "AuditEvent"}
    view = Record(value, "uid")
    view.fields["time"] = "changed"  # sql.py sets the time it found elsewhere
    assert value["time"] == "2026-01-01T00:00:00Z"


_CLAIM_VALUES = st.sampled_from(["1", "app", "a@b.c", ""]) | st.integers(0, 2) | st.booleans()
_CLAIM_VALUES |= st.floats(allow_nan=False) | st.lists(st.just("x"), max_size=1) | st.none()


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["oid", "appid", "upn", "amr"]), _CLAIM_VALUES),
        min_size=1,
        max_size=6,
    )
)
def test_cached_claims_are_the_claims_parsed_afresh(claim_sets: list[dict[str, Any]]) -> None:
    # 1, 1.0, True and "1" are alike to a tuple's hash, not to the claims: never one entry.
    for raw in claim_sets * 2:
        assert Claims.of({"claims": raw})._c == Claims._parse(raw)._c
