"""Identifying values in one canonical form before they are tagged (tags.py).

Two systems rarely spell a name or an address the same way: the roster says `Müller-Smith,
Jr.`, the patient index `MULLER SMITH`; one says `12 North Main Street Apt 4`, the other `12
N Main St`. A tag is an exact match of keyed hashes, so the spelling has to agree first:
Unicode NFKC, casefold, diacritics removed (NFKD, combining marks dropped), punctuation
removed (apostrophes vanish, anything else becomes a space), whitespace collapsed.

Every function is pure and cached (a roster and an index repeat surnames, streets and
postcodes); ASCII, most of the input, skips the Unicode work.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

_CACHE = 1 << 16  # bounded: a cache of repeated values, not a copy of the input
_APOSTROPHES = frozenset("'`\u2018\u2019\u02bc\u02b9")
# ASCII in one C call: letters and digits kept (lowered), apostrophes deleted, the rest spaces.
_ASCII = {
    i: (chr(i).lower() if chr(i).isalnum() else ("" if chr(i) in _APOSTROPHES else " "))
    for i in range(128)
}
SURNAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
# USPS Publication 28 street suffixes and directionals people spell out, and the common
# spelled-out forms of the rest; the abbreviation is what both sides end up with.
ADDRESS_WORDS: dict[str, str] = {
    "street": "st",
    "str": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "boulevard": "blvd",
    "court": "ct",
    "place": "pl",
    "terrace": "ter",
    "circle": "cir",
    "highway": "hwy",
    "parkway": "pkwy",
    "square": "sq",
    "trail": "trl",
    "crescent": "cres",
    "expressway": "expy",
    "freeway": "fwy",
    "heights": "hts",
    "mount": "mt",
    "mountain": "mtn",
    "point": "pt",
    "ridge": "rdg",
    "route": "rte",
    "turnpike": "tpke",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "northeast": "ne",
    "northwest": "nw",
    "southeast": "se",
    "southwest": "sw",
}
# A unit designator and what follows it: a flat is the same building for a neighbour and
# may be omitted by one side for a household, so neither key keeps it.
_UNIT = re.compile(r"(?:\b(?:apt|apartment|unit|suite|ste|flat|rm|room)\b|#)")


class AddressKeys(NamedTuple):
    household: str | None  # house number, street, postcode: one household
    street: str | None  # street and postcode without the house number: a neighbour's block


def text(value: str) -> str:
    """The canonical form of any identifying text (idempotent)."""
    if value.isascii():
        return " ".join(value.translate(_ASCII).split())
    return _unicode_text(value)


@lru_cache(maxsize=_CACHE)
def _unicode_text(value: str) -> str:
    # One pass can expose new foldable text (a casefold after NFKD, a mark after casefold):
    # repeat to a fixed point so normalising twice never changes a tag. Two passes is usual.
    for _ in range(4):
        once = _scrub(_fold(value))
        if once == value:
            break
        value = once
    return value


def _fold(value: str) -> str:
    """NFKC, casefold, diacritics removed; punctuation still there (the unit finder wants `#`)."""
    if value.isascii():
        return value.lower()
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", value).casefold())
    return "".join(c for c in folded if not unicodedata.category(c).startswith("M"))


def _scrub(folded: str) -> str:
    if folded.isascii():
        return " ".join(folded.translate(_ASCII).split())
    kept = [c if c.isalnum() else ("" if c in _APOSTROPHES else " ") for c in folded]
    return " ".join("".join(kept).split())


@lru_cache(maxsize=_CACHE)
def surname(value: str) -> str | None:
    """One token: suffixes (jr, sr, ii, iii, iv) dropped, spaces removed (`de la Cruz` and
    `DeLaCruz` agree); None when nothing is left."""
    words = text(value).split()
    while len(words) > 1 and words[-1] in SURNAME_SUFFIXES:
        words.pop()
    return "".join(words) or None


def identifier(value: str) -> str | None:  # unique per row: a cache would only miss
    """An employee id or MRN: case, spaces and punctuation are formatting, not identity."""
    return text(value).replace(" ", "") or None


def employee_id(value: str) -> str | None:
    """Leading zeros dropped as well: HR exports pad employee numbers, EHRs often do not."""
    ident = identifier(value)
    if ident is None:
        return None
    return ident.lstrip("0") or "0"


@lru_cache(maxsize=_CACHE)
def postcode(value: str) -> str | None:
    """Uppercase, no spaces or punctuation; a US ZIP+4 is its 5-digit ZIP (one side often
    lacks the +4)."""
    code = "".join(c for c in _fold(value) if c.isalnum()).upper()
    if len(code) == 9 and code.isdigit():  # `12345-6789` once the hyphen is gone
        return code[:5]
    return code or None


def street_line(value: str) -> tuple[str | None, str | None]:
    """(house number, street) of an address line: unit removed, words abbreviated.

    A leading run of digits is the house number and is split off first, so the rest (a
    street, repeated by every house on it) is what the cache holds: house numbers would
    make almost every line a miss."""
    head, _, tail = value.strip().partition(" ")
    if not (head.isascii() and head.isdigit()):
        return _street(value)
    house, street = _street(tail)
    return head, (f"{house} {street}" if house and street else house or street)


@lru_cache(maxsize=_CACHE)
def _street(value: str) -> tuple[str | None, str | None]:
    folded = _fold(value)
    unit = _UNIT.search(folded)
    if unit is not None:
        before = folded[: unit.start()]
        if _scrub(before):
            folded = before
        else:  # the unit first (`Flat 2, 10 High Street`): drop the designator and its id
            rest = _scrub(folded[unit.end() :]).split()
            folded = " ".join(rest[1:])
    words = [ADDRESS_WORDS.get(w, w) for w in _scrub(folded).split()]
    house = None
    if words and any(c.isdigit() for c in words[0]):
        house = words.pop(0)
    return house, (" ".join(words) or None)


def address(line: str, code: str) -> AddressKeys:
    """The household and street keys; both need a postcode (`12 main st` alone names a
    house in every town) and a street."""
    house, street = street_line(line)
    post = postcode(code)
    if street is None or post is None:
        return AddressKeys(None, None)
    block = f"{street}\x1f{post}"
    return AddressKeys(f"{house}\x1f{block}" if house else None, block)


def clear_caches() -> None:
    """Forget every cached value: the loaders call this when a file is loaded, so no name
    or address outlives its load in this process (only tags are kept)."""
    for cached in (_unicode_text, surname, postcode, _street):
        cached.cache_clear()
