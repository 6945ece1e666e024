"""Event time as rules use it: UTC datetimes from timestamps, the form reasons quote them
in, and the window-aligned anchor an AlertId takes its time from."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def hhmm(ts: float) -> str:
    return utc(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def window_anchor(time: float, width: float) -> str:
    """Window-aligned start of the bucket `time` falls in: the alert id's time component."""
    return utc(time - (time % width)).isoformat()
