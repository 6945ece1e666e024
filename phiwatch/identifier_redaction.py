"""Identifier segments inside names and paths → keyed pseudonym tokens.

A Key Vault secret, a resource, a blob or a user agent can carry a patient's identifier in
its name (`patient-MRN12345-key`). The name itself is what an analyst needs, so it is kept,
and only the parts matching the configured patterns (`PHIWATCH_IDENTIFIER_PATTERNS`) are
replaced by `pt_<hmac prefix>`: the same identifier gives the same token everywhere, so
events still group, and nobody without the key can reverse it.

Patterns match within one segment: the text between `/ ? & = ; , | # ( ) [ ] { } < > "`,
backslashes and whitespace. Segments repeat (`resourcegroups`, `vaults`, a user agent's
`Python/3.11.9`), so each is redacted once and then found in a cache: scanning every field
of every record with a handful of regular expressions would cost more than the normaliser.

GUIDs (object, correlation and subscription ids), 32-hex Key Vault versions and phiwatch's
own pseudonyms and hashes (`pr_`, `pt_`, a Storage blob path's `bh_`) are never rewritten:
they are long digit runs by accident only, and rewriting them would change routing keys and
AlertIds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

_DELIMITERS = re.compile(r"([\s/?&=;,|#()\[\]{}<>\"\\]+)")
_KEEP = re.compile(
    r"(?<![0-9a-z])(?:"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # GUID
    r"|(?=[0-9]{0,31}[a-f])[0-9a-f]{32}"  # dashless GUID, Key Vault object version
    r"|p[rt]_[0-9a-f]{8,64}"  # phiwatch pseudonyms: PatientRef, identifier tokens
    r"|bh_[0-9a-f]{32}"  # a Storage blob path's keyed hash (phiwatch/sources/storage.py)
    r")(?![0-9a-z])",
    re.IGNORECASE,
)
_CACHE_SIZE = 16384
_GUID_LENGTH = 36


class IdentifierRedactor:
    """`redact(text)`: `text` with every configured identifier replaced by its token."""

    def __init__(self, patterns: Iterable[str], token: Callable[[str], str]) -> None:
        self.patterns = tuple(patterns)
        # Compiled one by one, so a pattern may carry its own inline flags.
        self._regexes = tuple(re.compile(p, re.IGNORECASE) for p in self.patterns)
        self._token = token
        self._segment = lru_cache(maxsize=_CACHE_SIZE)(self._redact_segment)
        self.redact: Callable[[str], str] = lru_cache(maxsize=_CACHE_SIZE)(self._redact)

    def _redact(self, text: str) -> str:
        if not self._regexes:
            return text
        if len(text) == _GUID_LENGTH and _KEEP.fullmatch(text):
            # A correlation or object id: one segment, kept; each is new, so it would
            # only push repeated segments out of the segment cache.
            return text
        parts = _DELIMITERS.split(text)
        # Odd positions are the delimiters themselves (the split keeps them).
        return "".join(p if i % 2 else self._segment(p) for i, p in enumerate(parts))

    def _redact_segment(self, segment: str) -> str:
        if not segment or _KEEP.fullmatch(segment):
            return segment
        spans = sorted(
            m.span() for regex in self._regexes for m in regex.finditer(segment) if m.group()
        )
        if not spans:
            return segment
        kept = [m.span() for m in _KEEP.finditer(segment)]
        out: list[str] = []
        at = 0
        for start, end in _merged(spans):
            if any(k_start <= start and end <= k_end for k_start, k_end in kept):
                continue
            out.append(segment[at:start])
            out.append(self._token(segment[start:end]))
            at = end
        out.append(segment[at:])
        return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping matches of different patterns become one identifier (sorted input)."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
