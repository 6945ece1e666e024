"""Coercions for the loosely typed fields of Azure diagnostic records (DESIGN.md §3)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from phiwatch.model import EventResult

_FALLBACK_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S")


# Event times phiwatch accepts: diagnostic logs exist since the 2010s, and an archive kept six
# years (plus late replays) stays far inside 2100. Outside this range a time is a wrong clock
# or a forged record; it must not reach datetime arithmetic (a window start before year 1, a
# `.timestamp()` past 9999 raise), and an hour folder or watermark decades away helps nobody.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_OUT_OF_RANGE = f"timestamp is outside {EARLIEST_EVENT_TIME:%Y-%m-%d}..{LATEST_EVENT_TIME:%Y-%m-%d}"
# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
_EPOCH_MS_ABOVE = 1e11


class TimeOutOfRange(ValueError):
    """A value that reads as a time, outside EARLIEST_EVENT_TIME..LATEST_EVENT_TIME."""


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 in its Azure variants (space separator, `Z`, 7-digit fractions) → aware UTC.

    None for anything that is not a time, or one Python cannot represent (year 0, 10**400,
    9999-12-31 with a negative offset); never raises."""
    try:
        return _parse_time(value)
    except TimeOutOfRange:
        return None


def parse_event_time(value: Any) -> datetime | None:
    """`parse_time` for an event's own time: None when it is not a time, TimeOutOfRange when
    it is one outside the accepted range (a dead-letter of its own, `time-out-of-range`)."""
    parsed = _parse_time(value)
    if parsed is not None and not in_event_range(parsed):
        raise TimeOutOfRange(_OUT_OF_RANGE)
    return parsed


def in_event_range(when: datetime) -> bool:
    return EARLIEST_EVENT_TIME <= when < LATEST_EVENT_TIME


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parsed: datetime | None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = _parse_fallback(text)
            if parsed is None:
                return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value)
    else:
        return None
    try:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00, 9999-12-31T23:00-05:00
        raise TimeOutOfRange(_OUT_OF_RANGE) from None


def _from_epoch(value: int | float) -> datetime:
    # Compared before dividing: 10**400 / 1000 overflows a float, NaN compares false to all.
    if not -_EPOCH_MS_ABOVE * 1000 <= value <= _EPOCH_MS_ABOVE * 1000:
        raise TimeOutOfRange(_OUT_OF_RANGE)
    seconds = value / 1000 if value > _EPOCH_MS_ABOVE else value  # epoch ms vs s
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise TimeOutOfRange(_OUT_OF_RANGE) from None


def _parse_fallback(text: str) -> datetime | None:
    for fmt in _FALLBACK_TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def to_int(value: Any) -> int | None:
    """`78`, `"78"`, `"78.0"` → 78; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def to_str(value: Any) -> str | None:
    if type(value) is str:  # the common case first: this runs several times per record
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


# A dotted IPv4 address as `ipaddress` accepts it (ASCII digits, 0-255, no leading zero)
# is already its own canonical text; with `:<port>` after it, the address is that text.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IPV4_PORT = re.compile(rf"({_OCTET}(?:\.{_OCTET}){{3}}):[0-9]+")


def normalise_ip(value: str) -> str | None:
    """`::ffff:10.0.0.1`, `10.0.0.1:5123`, `[2001:db8::1]:443`, `10.0.0.0/24` → a bare address.

    The usual shapes, `a.b.c.d` and `a.b.c.d:port`, are read by one regular expression: the
    ports vary by request, so through the cache nearly every `ip:port` was a miss that
    cost two `ipaddress` parses (issue #18)."""
    if _IPV4.fullmatch(value):
        return value
    with_port = _IPV4_PORT.fullmatch(value)
    if with_port:
        return with_port.group(1)
    return _normalise_ip(value)


@lru_cache(maxsize=8192)
def _normalise_ip(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text[1:]
    elif "/" in text:
        text = text.split("/", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def subscription_of(resource_id: str | None) -> str | None:
    """Subscription id from an ARM id (any case)."""
    if not resource_id:
        return None
    if len(resource_id) > _MAX_CACHED_ID:
        return _subscription_of.__wrapped__(resource_id)
    return _subscription_of(resource_id)


_MAX_CACHED_ID = 1024  # ARM ids are a few hundred characters; a longer one is not cached


@lru_cache(maxsize=4096)  # a tenant has a few hundred resources, each on many records
def _subscription_of(resource_id: str) -> str | None:
    parts = resource_id.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return None


# What services write in `resultType` (any case) for a finished operation.
_OUTCOMES: dict[str, EventResult] = {
    "success": "Success",
    "succeeded": "Success",
    "failure": "Failure",
    "failed": "Failure",
}


def event_result(
    result_type: str | None,
    status: int | None = None,
    *,
    success_below: int = 400,
    status_decides: bool = False,
) -> EventResult:
    """`EventResult` from a record's `resultType` and HTTP status, the one mapping every source
    uses: the result word when there is one, else the status (below `success_below` is a
    success), else NA. With `status_decides` the status wins over the word (Key Vault writes
    "Success" in resultType for many failed calls)."""
    word = _OUTCOMES.get((result_type or "").strip().lower())
    if status is not None and (status_decides or word is None):
        return "Success" if status < success_below else "Failure"
    return word or "NA"


# Unicode categories stripped from names: controls (Cc: NUL, ESC, newlines), format characters
# (Cf: the bidirectional overrides U+202A-202E and isolates U+2066-2069, zero-width spaces and
# joiners, the soft hyphen) and the line/paragraph separators (Zl, Zp). None belongs in a
# sign-in name, and each can make an alert title read other than it is (U+202E shows
# `moc.evil@bob` as `bob@live.com`) or split a log line.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_identity(value: str | None) -> str | None:
    """A name, UPN, display name or id as an analyst should see it: control, format and
    bidirectional-override characters removed, outer whitespace stripped; None when nothing
    is left. Every source copies identities through this (sources.base.actor_fields and
    each name it sets itself), so no event or alert title carries them."""
    if value is None:
        return None
    if value.isprintable():  # C-speed fast path: no Cc/Cf/Zl/Zp (nor other oddities) here
        return value.strip() or None
    cleaned = "".join(ch for ch in value if unicodedata.category(ch) not in _INVISIBLE)
    return cleaned.strip() or None
