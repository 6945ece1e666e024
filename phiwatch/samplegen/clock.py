"""The generated day: its window, a diurnal traffic curve and the timestamp spellings Azure uses."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)

# Relative load per UTC hour of a hospital that runs on UTC: day shift peaks, nights stay non-zero.
DIURNAL: tuple[int, ...] = (
    1,
    1,
    1,
    1,
    1,
    2,
    4,
    8,
    10,
    12,
    12,
    11,
    9,
    11,
    12,
    11,
    9,
    7,
    5,
    4,
    3,
    2,
    2,
    1,
)


def sample_time(
    rng: random.Random, start: datetime, *, flat: float = 0.0, tail: timedelta = timedelta(0)
) -> datetime:
    """A moment in [start, start + WINDOW - tail); ``flat`` is the share of 24/7 machine load."""
    span = (WINDOW - tail).total_seconds()
    if rng.random() < flat:
        return start + timedelta(seconds=rng.uniform(0, span))
    hours = int(span // 3600)
    weights = [DIURNAL[(start.hour + i) % 24] for i in range(hours)]
    hour = rng.choices(range(hours), weights=weights)[0]
    return start + timedelta(hours=hour, seconds=rng.uniform(0, 3600))


def iso7(t: datetime) -> str:
    """ISO 8601 with the 7 fractional digits (.NET ticks) Key Vault, ARM and AHDS emit."""
    # Python stops at microseconds; the tick digit is derived so that it stays deterministic.
    tick = (t.microsecond * 7 + t.second) % 10
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}{tick}Z"


def fhir_space(t: datetime) -> str:
    """The Azure API for FHIR docs' spelling: space separator, whole seconds."""
    return f"{t:%Y-%m-%d %H:%M:%S}Z"


def iso_seconds(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%S}Z"
