"""Property tests: no phi-events body, however hostile, escapes `DetectProcessor.process`, and
no claimed time moves a watermark beyond the message's arrival plus the allowed skew."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phiwatch.config import Settings
from phiwatch.detect.engine import MAX_CLOCK_SKEW
from phiwatch.detect.grouping import GROUPINGS
from phiwatch.detect.time_anomaly import plausible
from phiwatch.eventhubs.message import EventHubMessage
from phiwatch.model import AccessEvent
from phiwatch.phievents.message import EventMessage, decode_message, encode_event
from phiwatch.wiring import build_detector
from tests.harness import batches_of, make_pipeline
from tests.records import at, fhir, keyvault

CLOCK = at(3600)


@pytest.fixture(scope="module")
def base_events() -> list[AccessEvent]:
    with tempfile.TemporaryDirectory() as tmp:
        pipeline, _ = make_pipeline(Path(tmp))
        records = [fhir(i, path=f"Patient/z{i}") for i in range(3)]
        records += [keyvault(5, status=403), keyvault(6, operation="VaultDelete")]
        return [e for b in batches_of(records) for e in pipeline.process(b).events]


zones = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
any_time = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).flatmap(lambda d: zones.map(lambda z: d.replace(tzinfo=z)))
near_time = st.integers(min_value=-86400, max_value=86400).map(at)
times = st.one_of(any_time, near_time)
# What a forger (or a broken writer) can put where a time goes.
time_values = st.one_of(
    times.map(lambda t: t.isoformat()),
    times.map(lambda t: t.replace(tzinfo=None).isoformat()),
    st.text(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.none(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=2),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # what orjson reads and writes
    st.floats(),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def bodies(draw, events: list[AccessEvent]) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "tick", "event", "event-field", "grouping"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return orjson.dumps(draw(json_values), option=orjson.OPT_NON_STR_KEYS)
    if kind == "tick":
        doc = {
            "Tick": draw(time_values),
            "Stream": draw(st.one_of(st.text(max_size=20), json_values)),
        }
        return orjson.dumps(doc)
    tag = draw(st.sampled_from([None, *GROUPINGS]))
    doc = orjson.loads(encode_event(draw(st.sampled_from(events)), None, tag))
    if kind == "grouping":
        doc["Grouping"] = draw(st.one_of(st.sampled_from(GROUPINGS), json_values))
    elif kind == "event":
        doc["Event"]["TimeGenerated"] = draw(time_values)
        doc["ArrivedAt"] = draw(time_values)
    else:
        field = draw(st.sampled_from(sorted(doc["Event"])))
        doc["Event"][field] = draw(json_values)
    return orjson.dumps(doc)


@st.composite
def batches(draw, events: list[AccessEvent]) -> list[EventHubMessage]:
    n = draw(st.integers(min_value=1, max_value=12))
    enqueued = draw(st.one_of(st.none(), near_time, times))
    return [
        EventHubMessage(draw(bodies(events)), i, draw(st.sampled_from([enqueued, None])), "0")
        for i in range(n)
    ]


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_escapes_the_detect_stage(base_events, data):
    messages = data.draw(batches(base_events))
    with tempfile.TemporaryDirectory() as tmp:
        detector = build_detector(Settings(), Path(tmp) / "archive", None)
        detector.clock = lambda: CLOCK
        result = detector.process("0", messages)
        assert result.events + result.invalid + result.ticks >= len(messages) - result.ticks
        engine = detector.engines()["0"]
        bound = max((m.enqueued_time for m in messages if m.enqueued_time), default=CLOCK)
        assert engine.watermark <= bound.timestamp() + MAX_CLOCK_SKEW
        # And it goes on: an honest event after it is taken (late only if the hub's own
        # clock said it was later than the event; refused if that clock is impossible).
        enqueued = max(bound, at(60))
        if not plausible(enqueued.timestamp()):
            return
        honest = EventHubMessage(encode_event(base_events[0], None), 100, enqueued, "0")
        after = detector.process("0", [honest])
        assert (after.events, after.invalid) == (1, 0)
        detector.finish()


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_decode_message_raises_only_value_errors(base_events, data):
    body = data.draw(bodies(base_events))
    try:
        decoded = decode_message(body)
    except ValueError:
        return
    if isinstance(decoded, EventMessage):
        decoded.event.time_generated.timestamp()
        assert decoded.arrival is None or decoded.arrival.utcoffset() is not None
        assert decoded.grouping in GROUPINGS
    else:
        assert decoded.time.utcoffset() is not None and isinstance(decoded.stream, str)


def test_a_tick_at_the_end_of_time_with_an_offset_is_refused(tmp_path):
    # 9999-12-31T23:59:59-05:00 parses and has a timestamp, but is in the year 10000 in UTC.
    body = orjson.dumps({"Tick": "9999-12-31T23:59:59-05:00", "Stream": "raw/0"})
    detector = build_detector(Settings(), tmp_path / "archive", None)
    result = detector.process("0", [EventHubMessage(body, 0, None, "0")])
    assert (result.ticks, result.refused) == (1, 1)
    (alert,) = result.alerts
    assert alert.last_event_time.year == datetime.now(UTC).year  # filed under the clock
