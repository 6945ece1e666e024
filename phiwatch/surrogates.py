"""Lone UTF-16 surrogates (`"\\ud800"` in JSON) → U+FFFD, so that any text phiwatch derives
can be written as UTF-8.

JSON may escape a surrogate half on its own; Python decodes it into a `str` that no UTF-8
encoder accepts, so one such field would make an event's or dead-letter's serialisation raise
after the raw put, and the batch would fail on every retry. Normalised text gets the
replacement character instead (what a lenient UTF-8 decoder shows); the raw archive keeps the
exact bytes, and the EventUid is derived from the record as received (envelope.py), so a
record holding U+FFFD itself is not mistaken for it.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# The JSON escapes that can decode to a surrogate half: the only way one gets into text
# decoded from valid UTF-8. A pair (`\ud83d\ude00`) decodes to one code point; a match here
# only says "look closer".
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

REPLACEMENT = "\ufffd"


def has_surrogates(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def without_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (and dict keys) replaced by U+FFFD.

    Returns `value` itself when there is none, so callers can tell by identity whether
    anything changed.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT, value) if has_surrogates(value) else value
    if isinstance(value, dict):
        items = [(without_surrogates(k), without_surrogates(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list):
        repaired = [without_surrogates(item) for item in value]
        if all(a is b for a, b in zip(repaired, value, strict=True)):
            return value
        return repaired
    return value
