"""Events built without validation (`model.build_event`) are the events validation makes.

The normalisers hand `build_event` fields they have typed themselves; these properties hold
that, for records of every source (plain and hostile), the event is equal to
`AccessEvent.model_validate` of the same fields, with the same fields set, the same value
types and the same JSON bytes, so the archived event lines are what they were.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from phiwatch.model import _EVENT_TEMPLATE, AccessEvent, build_event
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.sources import NORMALISERS, NormaliseContext, Record, route
from phiwatch.sources.activity_changes import StartBuffer
from phiwatch.sources.base import IDENTITY_FIELDS
from phiwatch.sources.fields import clean_identity
from phiwatch.sources.record import RecordRejected, RecordSkipped
from phiwatch.sources.verbatim import VERBATIM, redact_verbatim
from phiwatch.surrogates import without_surrogates
from tests.conftest import TEST_KEY_HEX
from tests.test_fuzz_pipeline import hostile_records, source_records

PSEUDONYMIZER = Pseudonymizer(bytes.fromhex(TEST_KEY_HEX))


def _fields_built(value: dict[str, Any]) -> list[dict[str, Any]]:
    """Every field set the normaliser of `value` hands build_event (copies, as handed)."""
    seen: list[dict[str, Any]] = []

    def spy(fields: dict[str, Any]) -> AccessEvent:
        seen.append(dict(fields))
        return build_event(fields)

    # As the envelope hands records on: lone surrogates already repaired (phiwatch/envelope.py).
    record = Record(without_surrogates(value), "uid-1")
    with ExitStack() as stack:
        for module in NORMALISERS:
            if hasattr(module, "build_event"):
                stack.enter_context(mock.patch.object(module, "build_event", spy))
        try:
            normaliser = route(record)
            ctx = NormaliseContext(PSEUDONYMIZER, "raw/x#0", changes=StartBuffer())
            normaliser.normalise(record, ctx)
        except (RecordSkipped, RecordRejected):
            pass
        except Exception:  # a normaliser error (the pipeline dead-letters it): no event
            pass
    return seen


def _json_or_error(event: AccessEvent) -> bytes | type[Exception]:
    try:
        return event.__pydantic_serializer__.to_json(event, by_alias=True)
    except PydanticSerializationError:
        return PydanticSerializationError


def assert_same_as_validated(fields: dict[str, Any]) -> None:
    fast = build_event(dict(fields))
    try:
        slow = AccessEvent.model_validate(fields)
    except ValidationError as exc:  # validation would have dead-lettered it: so must we
        raise AssertionError(f"a normaliser built an invalid event: {exc}") from None
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert list(fast.__dict__) == list(slow.__dict__)  # the serializer's key order
    for name, value in slow.__dict__.items():
        assert type(fast.__dict__[name]) is type(value), name
    assert _json_or_error(fast) == _json_or_error(slow)


def test_every_source_record_builds_the_validated_event():
    sources = set()
    for value in source_records():
        built = _fields_built(value)
        for fields in built:
            assert_same_as_validated(fields)
        if built:
            sources.add(route(Record(value, "u")).name)
    assert sources == {n.name for n in NORMALISERS}


@given(value=hostile_records())
def test_hostile_records_of_every_source_build_the_validated_event(value):
    for fields in _fields_built(value):
        assert_same_as_validated(fields)


def _minimal() -> dict[str, Any]:
    return {
        "time_generated": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "event_uid": "u",
        "event_type": "Read",
        "event_result": "Success",
        "event_product": "Key Vault",
        "operation": "SecretGet",
        "source_category": "AuditEvent",
        "raw_record_ref": "raw/x#0",
    }


def test_an_unknown_or_missing_field_is_refused_as_validation_refuses_it():
    with pytest.raises(ValidationError):
        build_event({**_minimal(), "no_such_field": 1})
    incomplete = _minimal()
    del incomplete["operation"]
    with pytest.raises(ValidationError):
        build_event(incomplete)


def test_defaults_are_shared_only_because_they_are_immutable():
    assert all(v is None or isinstance(v, str) for v in _EVENT_TEMPLATE.values())
    assert list(_EVENT_TEMPLATE) == list(AccessEvent.model_fields)


def test_a_built_event_is_unchanged_by_a_later_change_to_its_fields():
    fields = _minimal()
    event = build_event(fields)
    fields["operation"] = "changed"
    assert event.operation == "SecretGet"
    assert event.to_json() == AccessEvent(**_minimal()).to_json()


def _redacted_by_the_tables(fields: dict[str, Any]) -> dict[str, Any]:
    """What `NormaliseContext.redacted` did name by name: identities cleaned, then every
    allow-listed text redacted (phiwatch/sources/verbatim.py)."""
    for name in IDENTITY_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = clean_identity(value)
    return redact_verbatim(fields, PSEUDONYMIZER.redact_identifiers)


_NAMES = sorted({*IDENTITY_FIELDS, *VERBATIM, "event_uid", "patient_ref", "record_count"})
_TEXTS = st.one_of(
    st.none(),
    st.integers(),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(
        [
            "patient-MRN12345-key",
            " bob@contoso.com ",
            "\u202emoc.live@bob",
            "\x00\n",
            '{"maxSizeBytes":268435456,"name":"MRN4471"}',
            "33333333-aaaa-4bbb-8ccc-000000000003",
            "",
        ]
    ),
    st.lists(st.one_of(st.text(max_size=12), st.integers()), max_size=3),
)


@given(fields=st.dictionaries(st.sampled_from(_NAMES), _TEXTS, max_size=12))
def test_one_pass_redaction_is_the_two_tables_name_by_name(fields):
    ctx = NormaliseContext(PSEUDONYMIZER, "raw/x#0")
    assert ctx.redacted(dict(fields)) == _redacted_by_the_tables(dict(fields))
