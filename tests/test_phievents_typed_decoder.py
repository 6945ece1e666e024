"""The typed phi-events decoder (a message as normalize writes it, its event built without
validating it again) decides every body as the general path (orjson, the model's validation)
does: the same refusals, and for the rest the same event, field by field and type by type,
with the same JSON bytes, so the reorder buffer's snapshot is the same too."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detections
from phiwatch.detect import snapshot
from phiwatch.detect.engine import DetectionEngine
from phiwatch.model import AccessEvent
from phiwatch.phievents import message
from phiwatch.phievents.message import (
    EventMessage,
    Tick,
    decode_message,
    decode_message_checked,
    encode_event,
)
from tests.snapshot_stage_scenario import messages
from tests.test_detect_fuzz import base_events, bodies

__all__ = ["base_events"]  # the fixture, shared with the fuzz tests


def outcome(decode: Any, body: bytes) -> tuple[Any, ...]:
    """What a decoder makes of a body, in every respect the detect stage can tell."""
    try:
        decoded = decode(body)
    except ValueError:
        return ("refused",)
    if isinstance(decoded, Tick):
        return ("tick", decoded)
    event = decoded.event
    fields = [(name, type(value), value) for name, value in event.__dict__.items()]
    zone = type(event.time_generated.tzinfo)
    return (
        "event",
        decoded.grouping,
        decoded.tagged,
        decoded.arrival,
        fields,
        zone,
        event.to_json(),
        event.model_fields_set,
        event.__pydantic_extra__,
        event.__pydantic_private__,
    )


def same(body: bytes) -> tuple[Any, ...]:
    fast = outcome(decode_message, body)
    assert fast == outcome(decode_message_checked, body), body[:300]
    return fast


def test_every_message_of_the_stage_scenario_decodes_as_before() -> None:
    kinds = {same(m.body)[0] for m in messages()}
    assert kinds == {"event", "tick"}


def test_a_message_of_each_event_decodes_as_before(base_events: list[AccessEvent]) -> None:
    for event in base_events:
        for grouping in (None, "actor", "patient"):
            for arrival in (None, event.time_generated):
                body = encode_event(event, arrival, grouping)  # type: ignore[arg-type]
                assert same(body)[0] == "event"
                # Taken by the typed decoder, not handed to the general path: a field added
                # to the model that it does not know would lose the fast path silently.
                message._DECODER.decode(body)


def _variants(doc: dict[str, Any]) -> list[bytes]:
    """Hostile or odd bodies one edit away from an honest message."""
    event = doc["Event"]
    out: list[bytes] = []

    def edited(**changes: Any) -> None:
        out.append(orjson.dumps({**doc, "Event": {**event, **changes}}))

    edited(RecordCount=1.0)  # a float the model turns into an int
    for big in (b"18446744073709551617", b"9223372036854775808", b"1e400", b"NaN", b"1E3"):
        # Past 64 bits orjson reads a float (which the model may take as an int); JSON no
        # writer of ours makes.
        edited(RecordCount=123454321)
        out[-1] = out[-1].replace(b"123454321", big)
    edited(RecordCount=2**63 - 1)
    edited(RecordCount=-1)
    edited(RecordCount=True)
    edited(SrcAsn="12")
    edited(SrcGeoLatitude=5)  # an int where a float goes
    edited(SrcGeoLatitude="5.5")
    edited(IsInteractive=1)
    edited(IsInteractive="true")
    edited(EventType="read")
    edited(EventType=None)
    edited(PhiCategory=None)
    edited(SensitivityLabels=["a", 1])
    edited(SensitivityLabels="a")
    edited(EventUid=7)
    edited(EventUid=None)
    edited(TimeGenerated="2026-11-02T08:00:00")  # naive
    edited(TimeGenerated="2026-11-02 08:00:00Z")
    edited(TimeGenerated="0001-01-01T00:00:00+05:00")  # no UTC equivalent
    edited(TimeGenerated=1_700_000_000)
    edited(TimeGenerated="2026-11-02T08:00:00.123456789+01:00")
    edited(Unknown=1)
    out.append(orjson.dumps({**doc, "Event": {k: v for k, v in event.items() if k != "Operation"}}))
    out.append(
        orjson.dumps({**doc, "Event": {k: v for k, v in event.items() if k != "PatientRef"}})
    )
    snake = {("event_uid" if k == "EventUid" else k): v for k, v in event.items()}
    out.append(orjson.dumps({**doc, "Event": snake}))
    out.append(orjson.dumps({**doc, "Extra": 1}))
    out.append(orjson.dumps({**doc, "Grouping": "resource"}))
    out.append(orjson.dumps({**doc, "Grouping": 3}))
    out.append(orjson.dumps({**doc, "ArrivedAt": 3}))
    out.append(orjson.dumps({**doc, "ArrivedAt": "2026-11-02T08:00:00"}))
    out.append(orjson.dumps({"Event": event}))
    out.append(orjson.dumps([doc]))
    body = orjson.dumps(doc)
    # The last of two equal keys counts, in both decoders.
    out.append(body.replace(b'{"EventUid":', b'{"EventUid":"forged","EventUid":', 1))
    out.append(body.replace(b'"EventUid":', b'"EventUid":"forged","EventUid":', 1))
    out.append(body.replace(b'"Operation":"', b'"Operation":"\\ud800', 1))  # lone surrogate
    out.append(body.replace(b'"Operation":"', b'"Operation":"\xff', 1))  # not UTF-8
    out.append(body.replace(b'"Operation":"', b'"Operation":"\\u00e9\\ud83d\\ude00', 1))
    out.append(body + b" ")
    out.append(body + b"x")
    out.append(b"\xef\xbb\xbf" + body)
    return out


def test_hostile_variants_are_refused_or_taken_as_before(base_events: list[AccessEvent]) -> None:
    decided = []
    for event in base_events:
        doc = orjson.loads(encode_event(event, event.time_generated, "actor"))
        decided += [same(body)[0] for body in _variants(doc)]
    assert "refused" in decided and "event" in decided


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_body_is_decided_as_before(base_events: list[AccessEvent], data: st.DataObject):
    same(data.draw(bodies(base_events)))


def test_buffered_events_snapshot_as_before(base_events: list[AccessEvent]) -> None:
    """Events the typed decoder built wait in the reorder buffer and are written into the
    snapshot as their cached JSON: the same document as validated events give."""

    def snapshot_after(decode: Any) -> bytes:
        engine = DetectionEngine(detections.load_detections(lateness=900.0), 900.0, 120.0)
        for event in base_events:
            decoded = decode(encode_event(event, event.time_generated, "actor"))
            assert isinstance(decoded, EventMessage)
            engine.process(decoded.event, decoded.arrival, grouping=decoded.grouping)
        assert engine.state()["buffer"]
        return gzip.decompress(snapshot.dumps(engine.state()))

    assert snapshot_after(decode_message) == snapshot_after(decode_message_checked)
