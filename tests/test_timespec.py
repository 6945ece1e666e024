"""Every --since/--until: ISO 8601 (no zone: UTC) or a span back from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from phiwatch.reports.timespec import TimeSpecError, iso, parse_span, parse_time, time_range

NOW = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - timedelta(days=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("90m", NOW - timedelta(minutes=90)),
        (" 2D ", NOW - timedelta(days=2)),
        ("2026-11-02T08:00:00Z", datetime(2026, 11, 2, 8, tzinfo=UTC)),
        ("2026-11-02T08:00:00+02:00", datetime(2026, 11, 2, 6, tzinfo=UTC)),
        ("2026-11-02", datetime(2026, 11, 2, tzinfo=UTC)),
    ],
)
def test_times_and_spans(text: str, expected: datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_a_time_without_zone_is_utc() -> None:
    assert parse_time("2026-11-02T08:00", NOW) == datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_an_aware_now_in_another_zone_still_gives_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert parse_time("1h", local) == NOW - timedelta(hours=1)
    assert parse_time("1h", local).utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "30", "30y", "-5d", "d", "2026-13-01", ""])
def test_anything_else_is_refused_with_what_is_taken(text: str) -> None:
    with pytest.raises(TimeSpecError, match="ISO 8601"):
        parse_time(text, NOW)


def test_span_alone() -> None:
    assert parse_span("7d") == timedelta(days=7)
    assert parse_span("2026-11-02") is None


def test_range_defaults_and_order() -> None:
    span = time_range(None, None, default_span=timedelta(days=1), now=NOW)
    assert (span.since, span.until) == (NOW - timedelta(days=1), NOW)
    span = time_range("2d", "1d", default_span=timedelta(days=9), now=NOW)
    assert span.until - span.since == timedelta(days=1)
    assert NOW - timedelta(days=1, seconds=1) in span
    assert span.until not in span  # [since, until)
    assert span.as_dict() == {"since": iso(span.since), "until": "2026-11-02T12:30:00Z"}
    with pytest.raises(TimeSpecError, match="before"):
        time_range("1d", "2d", default_span=timedelta(days=1), now=NOW)
