"""Properties of the engine-owned building blocks, on the shipped threshold rules: a
snapshot taken anywhere and duplicates delivered anywhere change no alert."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from phiwatch.detect.testing import RuleHarness, access, instant

T0 = instant("2026-03-02 10:00:00+01:00")
VAULT = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv"


@st.composite
def streams(draw):
    """Reads of a few patients and Key Vault failures and secret reads of a few actors over
    half an hour, in event-time order (distinct events: each has its own EventUid)."""
    n = draw(st.integers(min_value=1, max_value=60))
    events = []
    for i in range(n):
        at = T0 + timedelta(seconds=draw(st.integers(min_value=0, max_value=1800)))
        actor = draw(st.sampled_from(["ann", "ben", "cat"]))
        if draw(st.booleans()):
            patient = f"p{draw(st.integers(min_value=0, max_value=6))}"
            events.append(access(at, actor=actor, patient=patient, uid=f"r{i}"))
        else:
            ok = draw(st.integers(min_value=0, max_value=4)) == 0
            events.append(
                access(
                    at,
                    actor=actor,
                    product="Key Vault",
                    operation="SecretGet",
                    result="Success" if ok else "Failure",
                    details="200" if ok else "403",
                    target=VAULT,
                    uid=f"k{i}",
                )
            )
    return sorted(events, key=lambda e: e.time_generated)


RULES = [("mass-record-access", {"threshold": 2}), ("keyvault-failed-operations", {})]


def alerts_of(rule_id, params, batches, *, restart_after=None):
    harness = RuleHarness(rule_id, params)
    for i, batch in enumerate(batches):
        harness.feed(*batch)
        if restart_after == i:
            harness.restart()
    return [a.to_json() for a in harness.finish().alerts]


@settings(max_examples=40, deadline=None)
@given(events=streams(), data=st.data())
def test_a_snapshot_anywhere_changes_no_alert(events, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(events)))
    for rule_id, params in RULES:
        whole = alerts_of(rule_id, params, [events])
        assert alerts_of(rule_id, params, [events[:cut], events[cut:]], restart_after=0) == whole


@settings(max_examples=40, deadline=None)
@given(events=streams(), data=st.data())
def test_redelivered_events_change_no_alert(events, data):
    again = data.draw(st.lists(st.sampled_from(events), max_size=20))
    redelivered = sorted(events + again, key=lambda e: e.time_generated)
    for rule_id, params in RULES:
        assert alerts_of(rule_id, params, [redelivered]) == alerts_of(rule_id, params, [events])
