"""The privacy contract: which relationship an access has, first that holds, and when an
identity counts as terminated."""

from __future__ import annotations

import pytest

from phiwatch.privacy.directory import Member, PatientFacts, is_terminated, relation

DAY = 86400.0


def member(**kw: object) -> Member:
    fields: dict = dict(
        object_id="oid-1",
        employee=1,
        surname=10,
        address=100,
        street=1000,
        status="active",
        terminated_at=None,
    )
    return Member(**(fields | kw))


def patient(**kw: object) -> PatientFacts:
    fields: dict = dict(
        employee=None,
        surname=None,
        surname_rare=False,
        address=None,
        street=None,
        restricted=False,
        care_team=frozenset(),
    )
    return PatientFacts(**(fields | kw))


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # One's own chart shares one's surname and address: self, not family.
        (patient(employee=1, surname=10, address=100, street=1000), ("self", "employee-id")),
        (patient(surname=10, address=100, street=1000), ("family", "surname-and-address")),
        # A relative who is also staff: family before coworker.
        (patient(employee=2, surname=10, address=100), ("family", "surname-and-address")),
        (patient(surname=10, surname_rare=True, address=200), ("family", "rare-surname")),
        (patient(employee=2, street=1000, address=200), ("coworker", "patient-is-employee")),
        (patient(street=1000, address=200), ("neighbour", "street-and-postcode")),
        # Near-misses: a common surname elsewhere; another household's surname at one's
        # address is neither family (surnames differ) nor a neighbour (same house).
        (patient(surname=10, address=200, street=2000), None),
        (patient(surname=11, address=100, street=1000), None),
        (patient(), None),
    ],
)
def test_the_first_relationship_that_holds(facts: PatientFacts, expected) -> None:
    assert relation(member(), facts) == expected


def test_unknown_values_never_match_each_other() -> None:
    blank = member(employee=None, surname=None, address=None, street=None)
    assert relation(blank, patient()) is None


def test_terminated_by_date_at_the_access_time_or_by_status_without_a_date() -> None:
    dated = member(status="terminated", terminated_at=10 * DAY)
    assert not is_terminated(dated, 9 * DAY)  # the day before: still employed
    assert is_terminated(dated, 10 * DAY)
    assert is_terminated(member(status="terminated"), 0.0)
    assert is_terminated(member(terminated_at=5 * DAY), 6 * DAY)  # a date, status not updated
    assert not is_terminated(member(status="leave"), 6 * DAY)
