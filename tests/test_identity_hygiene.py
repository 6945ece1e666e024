"""Identity hygiene: control, format and bidirectional-override characters never reach an
event's identity fields or an alert title, whichever source the record came from."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import actor_label
from phiwatch.sources.fields import clean_identity
from tests.harness import run
from tests.records import activity, fhir, keyvault

# U+202E right-to-left override shows `moc.evil@bob` as `bob@live.com` in a title.
HOSTILE_UPN = "\u202ebob\u2066@contoso-health.org\u2069\u200b\u200d\ufeff\x1b[31m\n\u2028"
CLEAN_UPN = "bob@contoso-health.org[31m"
INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("alice@contoso-health.org", "alice@contoso-health.org"),
        ("José.Müller@contoso-health.org", "José.Müller@contoso-health.org"),
        ("moc.live@\u202ebob", "moc.live@bob"),
        ("\u2066\u2067\u2068\u2069x\u200bx", "xx"),
        ("  pad@x.org \n", "pad@x.org"),
        ("\u202e\u200b", None),
        ("", None),
        (None, None),
    ],
)
def test_clean_identity(given_text, expected):
    assert clean_identity(given_text) == expected


@given(st.text())
def test_clean_identity_leaves_no_invisible_character_and_is_idempotent(text):
    cleaned = clean_identity(text)
    if cleaned is not None:
        assert not {unicodedata.category(c) for c in cleaned} & INVISIBLE
        assert clean_identity(cleaned) == cleaned


def _upn_record(source: str) -> dict:
    if source == "keyvault":
        return keyvault(upn=HOSTILE_UPN)
    if source == "fhir":
        return fhir(upn=HOSTILE_UPN)
    return activity(upn=HOSTILE_UPN)


@pytest.mark.parametrize("source", ["keyvault", "fhir", "activity"])
def test_every_source_strips_them_from_the_upn(normalise, source):
    (event, *_) = normalise(_upn_record(source))
    assert event.actor_username == CLEAN_UPN


@pytest.mark.parametrize("source", ["keyvault", "fhir", "activity"])
def test_every_source_strips_them_from_ids(normalise, source):
    record = _upn_record(source)
    claims = record["identity"].get("claims") or record["identity"]["claim"]
    for name in list(claims):
        if name.endswith(("oid", "objectidentifier")):
            claims[name] = "\u202e" + claims[name] + "\u200b"
    (event, *_) = normalise(record)
    assert event.actor_user_id is not None
    assert not {unicodedata.category(c) for c in event.actor_user_id} & INVISIBLE


def test_an_alert_title_from_a_hostile_upn_is_clean(tmp_path):
    sink = run(
        [activity(60, result="Start", upn=HOSTILE_UPN), activity(61, upn=HOSTILE_UPN)]
        + [fhir(120 + 60 * m, path="metadata", interaction="capabilities") for m in range(40)],
        tmp_path,
        finish=False,
    )
    (alert,) = sink.alerts.values()
    assert alert.title.endswith(f"by {CLEAN_UPN}")
    assert alert.actor_username == CLEAN_UPN
    for text in (alert.title, alert.description, *alert.reasons):
        assert not {unicodedata.category(c) for c in text} & INVISIBLE


def _state(username: str | None, user_id: str | None = None) -> AlertState:
    return AlertState(
        alert_id="a",
        rule_id="r",
        key="actor:k",
        severity="High",
        detected_at=datetime(2026, 1, 1, tzinfo=UTC),
        first_time=0.0,
        last_time=0.0,
        window_start=0.0,
        window_end=0.0,
        actor_username=username,
        actor_user_id=user_id,
    )


def test_the_actor_a_title_names_is_cleaned_for_events_that_came_another_way():
    """An archived event from before this change, or a rule test's own event."""
    assert actor_label(_state("\u202eeve@x.org")) == "eve@x.org"
    assert actor_label(_state(None, "oid-1\u200b")) == "oid-1"
    assert actor_label(_state("\u202e")) == "an unnamed actor"


def test_every_identity_field_is_cleaned_whatever_the_source_sets(pseudonymizer):
    """The cleaning is in NormaliseContext.redacted, which every normaliser builds through:
    a source that copies a name itself cannot skip it."""
    from phiwatch.sources.base import IDENTITY_FIELDS, NormaliseContext

    ctx = NormaliseContext(pseudonymizer, "raw/x#0")
    dirty = {name: "eve\u202e@contoso-health.org\u200b" for name in IDENTITY_FIELDS}
    cleaned = ctx.redacted(dict(dirty))
    for name in IDENTITY_FIELDS:
        assert "\u202e" not in (cleaned[name] or "") and "\u200b" not in (cleaned[name] or "")
