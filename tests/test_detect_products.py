"""A rule that names the event products it reads (`products`) is never true for another:
the engine offers it only those products' events, so a wrong declaration would hide events."""

from __future__ import annotations

import detections
from phiwatch.detect.events import _PRODUCTS, access
from phiwatch.phievents.message import EventMessage, decode_message
from phiwatch.sources import NORMALISERS
from tests.snapshot_stage_scenario import messages


def test_declared_products_are_products_of_sources() -> None:
    known = {n.PRODUCT for n in NORMALISERS}
    for rule in detections.load_detections(lateness=900.0):
        assert rule.products is None or rule.products <= known, rule.rule_id


def test_a_rule_applies_only_to_the_products_it_declares() -> None:
    events = [
        m.event
        for m in map(decode_message, (m.body for m in messages()))
        if isinstance(m, EventMessage)
    ]
    # Every product in the shapes the rules look for: each result, the sub-types they
    # name, with and without a patient and an actor.
    sub_types = [None, "Microsoft.Insights/diagnosticSettings", "$export", "secret"]
    events += [
        access(
            "2026-11-02T08:00:00Z",
            product=product,
            result=result,
            sub_type=sub,
            patient=patient,
            actor_id=actor_id,
            uid=f"{product}-{result}-{sub}-{patient}-{actor_id}",
        )
        for product in _PRODUCTS
        for result in ("Success", "Failure")
        for sub in sub_types
        for patient in (None, "pat-1")
        for actor_id in (None, "oid-1")
    ]
    assert {e.event_product for e in events} >= {n.PRODUCT for n in NORMALISERS}
    declared = [r for r in detections.load_detections(lateness=900.0) if r.products is not None]
    assert len(declared) >= 13
    for rule in declared:
        for event in events:
            if event.event_product not in rule.products:
                assert not rule.applies(event), (rule.rule_id, event.event_product)
