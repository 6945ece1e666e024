"""The archived events and alerts of a time range, read from an archive location.

What to read is decided in ONE place, `select_event_lines(store, key, since, until)`: for a
key (a PatientRef, an actor id or name) and a range, the events objects and the lines of
each to read. Today it names every events object whose hour folder can hold an event of
the range, all its lines (`lines=None`); the per-hour index of the archive (issue 17, item 5)
answers the same question from its sidecar and replaces this default, with no change to the
readers below, which still check each event's key and time themselves (an index may
over-select, never decide).

An object is filed under the hour its batch arrived (the first enqueued time, else its first
record's time), so one batch can hold events from before or after its folder's hour: the
default reads `SLACK` either side of the range and keeps events by their `TimeGenerated`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from phiwatch.archive import hour_index
from phiwatch.archive.archive import decode_lines
from phiwatch.archive.signer import PublicKey
from phiwatch.archive.store import ObjectStore
from phiwatch.archive.verify import _hour_of, verify_archive

# How far an event's time may lie from its batch's hour folder (the allowed lateness and a
# long batch), as evidence bundles assume.
SLACK = timedelta(days=1)
PATIENT_REF_PREFIX = "pr_"  # phiwatch/pseudonym.py


@dataclass(frozen=True)
class Selection:
    """One archive object to read, and which of its lines (None: every line)."""

    name: str
    lines: frozenset[int] | None = None


def _naive_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def objects_in_range(
    store: ObjectStore, kind: str, since: datetime, until: datetime
) -> Iterator[str]:
    """`kind/` objects whose hour folder may hold an event of [since, until), and undated
    ones (a batch without a time is not known to be outside)."""
    low, high = _naive_hour(since - SLACK), _naive_hour(until + SLACK)
    for name in store.list(f"{kind}/"):
        hour = _hour_of(name)
        if hour is None or low <= hour <= high:
            yield name


def archived_days(store: ObjectStore, since: datetime, until: datetime) -> set[date]:
    """The days in [since, until) with an events object filed under one of their hours:
    the days the archive covers, from names alone (an index narrows which lines are read
    for a key; it must not narrow what counts as covered)."""
    low, high = _naive_hour(since), _naive_hour(until)
    days = set()
    for name in store.list("events/"):
        hour = _hour_of(name)
        if hour is not None and low <= hour < high:
            days.add(hour.date())
    return days


def select_event_lines(
    store: ObjectStore, key: str | None, since: datetime, until: datetime
) -> Iterator[Selection]:
    """THE seam: which events objects, and lines, to read for `key` in [since, until).

    `key` is what the caller will keep events for (a PatientRef, an actor); None means
    every event of the range. A PatientRef is looked up in the per-hour index
    (phiwatch/archive/hour_index.py: only the sidecars of the hours read, objects without
    one scanned), over the same hours and slack as the default. Anything else reads every
    events object of the range's hours, every line: an actor may be named by UPN or by the
    app it acted through, and the index keys an event by one actor id only, so it could
    miss some of them."""
    if key is not None and key.startswith(PATIENT_REF_PREFIX):
        for name, lines in hour_index.lookup(
            store, patient_ref=key, since=since - SLACK, until=until + SLACK
        ):
            yield Selection(name, frozenset(lines))
        return
    for name in objects_in_range(store, "events", since, until):
        yield Selection(name)


def _lines(store: ObjectStore, selection: Selection) -> Iterator[tuple[int, bytes]]:
    lines = decode_lines(store.get(selection.name))
    for index, line in enumerate(lines):
        if selection.lines is None or index in selection.lines:
            yield index, line


def event_time(event: dict[str, Any]) -> datetime | None:
    text = event.get("TimeGenerated")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def merged_selections(
    store: ObjectStore, keys: Iterable[str | None], since: datetime, until: datetime
) -> list[Selection]:
    """The selections of several keys as one read plan: each object once, with the union of
    the lines the keys need (every line if any key needs every line)."""
    plan: dict[str, frozenset[int] | None] = {}
    for key in keys:
        for selection in select_event_lines(store, key, since, until):
            if selection.name not in plan:
                plan[selection.name] = selection.lines
                continue
            before = plan[selection.name]
            plan[selection.name] = (
                None if before is None or selection.lines is None else before | selection.lines
            )
    return [Selection(name, lines) for name, lines in sorted(plan.items())]


def events(
    store: ObjectStore,
    since: datetime,
    until: datetime,
    *,
    keys: Iterable[str | None] = (None,),
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Archived events (wire dicts) with `TimeGenerated` in [since, until) that `keep`
    accepts, each once (an event archived twice, in a clashing batch, counts once). `keys`
    are what `keep` looks for, so the seam can narrow the read; `keep` still decides."""
    seen: set[str] = set()
    for selection in merged_selections(store, keys, since, until):
        for _, line in _lines(store, selection):
            event = orjson.loads(line)
            moment = event_time(event)
            if moment is None or not since <= moment < until:
                continue
            if keep is not None and not keep(event):
                continue
            uid = event.get("EventUid")
            if isinstance(uid, str):
                if uid in seen:
                    continue
                seen.add(uid)
            yield event


def alerts(store: ObjectStore, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """Every archived alert version in the objects of the range's hours (later objects hold
    later versions of one AlertId; callers that want one per id keep the last)."""
    for name in objects_in_range(store, "alerts", since, until):
        for line in decode_lines(store.get(name)):
            yield orjson.loads(line)


@dataclass(frozen=True)
class Verification:
    verified: bool
    problems: list[str]


def verify_range(
    store: ObjectStore, trusted: dict[str, PublicKey], since: datetime, until: datetime
) -> Verification:
    """The archive chain verified over the hours a report reads (the range and its slack).
    An archive with nothing in those hours is not verified: there is nothing to vouch for,
    and a report of no accesses must not read as proof that there were none."""
    report = verify_archive(store, trusted, since=since - SLACK, until=until + SLACK)
    problems = list(report.problems)
    if report.objects == 0:
        problems.append(f"no archive objects in the range at {store.location}")
    return Verification(not problems, problems)


__all__ = [
    "SLACK",
    "Selection",
    "Verification",
    "alerts",
    "archived_days",
    "event_time",
    "events",
    "merged_selections",
    "objects_in_range",
    "select_event_lines",
    "verify_range",
]
