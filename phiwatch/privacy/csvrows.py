"""CSV plumbing shared by the roster and patient-index loaders.

Header names are matched case-blind with spaces, `_` and `-` ignored, and each column has
aliases (the Sentinel watchlist templates' names among them), so an export from HR, the EHR
or an existing watchlist loads as it is. Extra columns are ignored.

A bad row is reported by its row number (the header is row 1, as a spreadsheet shows it)
and column, never by its value: the values are what this package exists not to keep.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import BinaryIO

MAX_ERRORS = 1000  # a wrong file fails on every row: the first thousand say enough
_GUID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0", ""})


class InputRefused(Exception):
    """The whole file cannot be used (no key column, not CSV); the message names no value."""


class RowProblem(ValueError):
    """One cell is unusable: `column` names it, the message says why without the value."""

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1 is the header row
    column: str  # the canonical column name
    problem: str  # why, never the value

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.problem}"


@dataclass(slots=True)
class LoadReport:
    """What a load did: rows kept, rows refused and why, the input's digest."""

    source: str
    digest: str = ""
    rows: int = 0
    loaded: int = 0
    errors: list[RowError] = field(default_factory=list)
    errors_dropped: int = 0

    def add(self, error: RowError) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        else:
            self.errors_dropped += 1


def canonical(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name.strip().lstrip("\ufeff").casefold())


def column_index(header: list[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """The position of every known column, by canonical name (first occurrence wins)."""
    lookup = {canonical(a): name for name, names in aliases.items() for a in (name, *names)}
    found: dict[str, int] = {}
    for i, cell in enumerate(header):
        name = lookup.get(canonical(cell))
        if name is not None:
            found.setdefault(name, i)
    return found


class HashingLines:
    """The file's lines as text for `csv.reader`, hashing the bytes as they stream by, so
    the version digest costs no second read and the file is never whole in memory."""

    def __init__(self, stream: BinaryIO | Iterable[bytes]) -> None:
        self._stream = stream
        self._sha = hashlib.sha256()

    def __iter__(self) -> Iterator[str]:
        first = True
        for raw in self._stream:
            self._sha.update(raw)
            line = raw.decode("utf-8", "replace")
            if first:
                line = line.removeprefix("\ufeff")  # Excel's UTF-8 BOM
                first = False
            yield line

    def digest(self) -> str:
        return self._sha.hexdigest()


GZIP_MAGIC = b"\x1f\x8b"
_OUT_CHUNK = 4 << 20


def gunzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks as they are, or decompressed when they are gzip (an EHR extract is often
    shipped compressed): streamed, never more than a few MB out at a time, however well the
    input compresses."""
    it = iter(chunks)
    first = b""
    for first in it:
        if first:
            break
    if not first.startswith(GZIP_MAGIC):
        if first:
            yield first
        yield from it
        return
    inflate = zlib.decompressobj(wbits=31)
    try:
        for chunk in itertools.chain([first], it):
            data = chunk
            while data:
                out = inflate.decompress(data, _OUT_CHUNK)
                if out:
                    yield out
                data = inflate.unconsumed_tail
        if tail := inflate.flush():
            yield tail
    except zlib.error:
        raise InputRefused("the gzip stream is corrupt") from None
    if not inflate.eof:
        raise InputRefused("the gzip stream ends before its end")


def byte_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Chunks of a download as the lines a binary file yields (each ends with its `\\n`):
    `csv.reader` wants one line per item, and a chunk boundary can fall anywhere, inside a
    UTF-8 character too."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            yield data[start : end + 1]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest


def rows(lines: HashingLines) -> Iterator[list[str] | None]:
    """The records; None for one the csv module cannot read (a field past its size limit):
    its row is reported and the rest still load. csv's messages name no value."""
    reader = csv.reader(iter(lines), strict=False)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None


UNREADABLE = "not readable as CSV (a field too large, or a broken quote)"


def data_rows(
    reader: Iterable[list[str] | None], report: LoadReport
) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of every data row after the header; an unreadable row is counted
    and reported, a blank line skipped. Both loaders read their files through this."""
    for number, cells in enumerate(reader, start=2):
        if cells is None:
            report.rows += 1
            report.add(RowError(number, "-", UNREADABLE))
            continue
        if not "".join(cells).strip():  # a blank line (one C call, not a loop)
            continue
        report.rows += 1
        yield number, cells


class Row:
    """One data row's cells by canonical column name."""

    __slots__ = ("_cells", "_index")

    def __init__(self, cells: list[str], index: dict[str, int]) -> None:
        self._cells = cells
        self._index = index

    def get(self, column: str) -> str:
        i = self._index.get(column)
        if i is None or i >= len(self._cells):
            return ""
        return self._cells[i].strip()


class Fields:
    """The cells of `columns`, in that order, stripped; "" for a column the file lacks or a
    short row. One C `itemgetter` a row: the patient index has millions of them."""

    __slots__ = ("_get", "_width")

    def __init__(self, index: dict[str, int], columns: tuple[str, ...]) -> None:
        self._width = max(index.values(), default=-1) + 1
        # -1: the "" appended to every row (past any extra columns the file has).
        self._get = itemgetter(*(index.get(c, -1) for c in columns))

    def __call__(self, cells: list[str]) -> list[str]:
        if len(cells) < self._width:
            cells += [""] * (self._width - len(cells))
        cells.append("")
        return [v.strip() for v in self._get(cells)]


def object_id(value: str, column: str) -> str:
    oid = value.lower()
    if not _GUID.match(oid):
        raise RowProblem(column, "not an Entra object id (a GUID)")
    return oid


def boolean(value: str, column: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RowProblem(column, "not true/false, yes/no or 1/0")


def epoch(value: str, column: str) -> float | None:
    """ISO 8601 date or date-time as epoch seconds; a date is its midnight UTC, a time
    without an offset is UTC (HR exports rarely say)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RowProblem(column, "not an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
