"""Reports as CSV and as one self-contained HTML page.

The page loads nothing: no script, no stylesheet, font or image from anywhere, and a
Content-Security-Policy that forbids it, so opening it sends no request (a report names who
opened a patient's record; its viewing must not be observable). Every value is escaped:
names and operations come from the wire.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Table:
    caption: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]


def to_csv(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_cell(_neutralised(v)) for v in row])
    return buffer.getvalue()


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _neutralised(value: object) -> object:
    # A value from the wire starting with = + - @ would run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}
h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0;font-size:12px}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee}caption{text-align:left;font-weight:bold;padding:4px 0}
.ok{color:#060}.bad{color:#a00}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}
dt{font-weight:bold}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'"


def to_html(
    title: str, summary: Sequence[tuple[str, str]], tables: Sequence[Table], *, verified: bool
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="{"ok" if verified else "bad"}">'
        + ("Archive verified for the range." if verified else "Archive NOT verified for the range.")
        + "</p>",
        "<dl>",
    ]
    for label, value in summary:
        parts.append(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>")
    parts.append("</dl>")
    for table in tables:
        parts.append(f"<table><caption>{escape(table.caption)}</caption><thead><tr>")
        parts.extend(f"<th>{escape(h)}</th>" for h in table.headers)
        parts.append("</tr></thead><tbody>")
        for row in table.rows:
            cells = "".join(f"<td>{escape(_cell(v))}</td>" for v in row)
            parts.append(f"<tr>{cells}</tr>")
        if not table.rows:
            parts.append(f'<tr><td colspan="{len(table.headers)}">none</td></tr>')
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


__all__ = ["Table", "to_csv", "to_html"]
