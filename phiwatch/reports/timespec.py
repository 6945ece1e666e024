"""Times on the command line: ISO 8601, or a span back from now (`30d`, `12h`, `90m`).

A time written without a zone is taken as UTC, as `archive verify` always has: the
archive's hour folders and every event's `TimeGenerated` are UTC, and a reviewer's local
zone is not something the tool can know. The help text of every option says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"^\s*(\d{1,6})\s*([dhm])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}

HELP = "ISO 8601 (a time without zone is UTC) or a span back from now: 30d, 12h, 90m."


class TimeSpecError(ValueError):
    """Not a time this tool reads; the message says what it takes."""


def parse_span(text: str) -> timedelta | None:
    """`30d` → 30 days; None when `text` is not a span."""
    match = _SPAN.match(text)
    if match is None:
        return None
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def parse_time(text: str, now: datetime) -> datetime:
    """An aware UTC datetime from ISO 8601 or a relative span before `now`."""
    span = parse_span(text)
    if span is not None:
        return now.astimezone(UTC) - span
    stripped = text.strip()
    # fromisoformat reads `Z` from 3.11 on; a date alone is its midnight.
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is neither ISO 8601 nor a span like 30d, 12h or 90m"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class TimeRange:
    """[since, until): both aware UTC."""

    since: datetime
    until: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.since <= moment < self.until

    def as_dict(self) -> dict[str, str]:
        return {"since": iso(self.since), "until": iso(self.until)}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_range(
    since: str | None, until: str | None, *, default_span: timedelta, now: datetime | None = None
) -> TimeRange:
    """The range the options name: `until` defaults to now, `since` to `default_span`
    before `until`. Raises TimeSpecError for an unreadable time or an empty range."""
    now = now or datetime.now(UTC)
    end = parse_time(until, now) if until is not None else now.astimezone(UTC)
    start = parse_time(since, now) if since is not None else end - default_span
    if start >= end:
        raise TimeSpecError(f"--since ({iso(start)}) must be before --until ({iso(end)})")
    return TimeRange(start, end)


__all__ = ["HELP", "TimeRange", "TimeSpecError", "iso", "parse_span", "parse_time", "time_range"]
