"""The HIPAA report as one self-contained HTML page: inline CSS, charts drawn here as inline
SVG, no script, no font, no image, nothing fetched. A Content-Security-Policy that allows
nothing to load makes that a property of the page, not only of this code: an auditor can
open it offline, and a browser refuses any request that slipped in.

Every value is escaped; the page holds resource ids, rule ids, categories and counts only
(hipaa.py never passes a patient or a user here)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape

import orjson

from phiwatch.attest.attestation import CONTROLS as ATTESTED_CONTROLS
from phiwatch.attest.attestation import ControlCoverage
from phiwatch.reports.hipaa import Control, HipaaReport, SourceCoverage, coverage_status

# Sections, in page order: (id, heading); the charts and the short answers first, the long
# tables last. The browser test looks for every id.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("controls", "HIPAA controls and their evidence"),
    ("volume", "Events per period"),
    ("coverage", "Coverage per resource"),
    ("alerts", "Alerts per rule"),
    ("deadletters", "Dead-letters by reason"),
    ("attestation", "Attested coverage per control (inventory)"),
    ("integrity", "Archive integrity"),
    ("retention", "Retention and immutability"),
    ("inventory", "Expected resources (inventory)"),
    ("sources", "Coverage per source"),
    ("detections", "Detections on, with their parameters"),
    ("resources", "First and last record per resource and category"),
    ("gaps", "Silences longer than the category floor"),
)
MAX_TIMELINE_ROWS = 60
# Failing resources named per control, so four controls stay one screen; the inventory
# table names every one with the checks it fails.
MAX_FAILING_SHOWN = 20
ATTEST_PASS, ATTEST_FAIL = "#2b8a9e", "#c4432f"
CHECKS_OF = {control.control_id: control.checks for control in ATTESTED_CONTROLS}
STATUS_CLASS = {"met": "ok", "attention": "warn", "not met": "bad", "not checked": "na"}

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#1c2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;
border-bottom:1px solid #d5dbe3;padding-bottom:4px}p.meta{color:#5a6676;margin:0 0 12px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}th,td{text-align:left;
padding:4px 8px;border-bottom:1px solid #e6eaef;vertical-align:top}th{background:#f3f5f8}
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px;word-break:break-all}
.status{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;font-size:12px}
.ok{background:#d7f2de;color:#11602b}.warn{background:#fdf0c6;color:#7a5300}
.bad{background:#fbd9d6;color:#8a1c12}.na{background:#e7eaee;color:#3d4754}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d5dbe3;border-radius:6px;
padding:8px 12px;min-width:110px}.card b{display:block;font-size:20px}
svg{display:block;max-width:100%;height:auto;margin:6px 0}svg text{font:11px system-ui,sans-serif;
fill:#3d4754}ul{margin:4px 0;padding-left:20px}.muted{color:#5a6676}
"""


def _t(when: datetime | None) -> str:
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


def _minutes(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _short(resource: str) -> str:
    """The readable tail of an ARM id: its name (name/child for nested services), else the
    scope it logs for (a subscription's Activity Log, a tenant's Entra logs)."""
    parts = resource.strip("/").split("/")
    if "providers" in parts:
        at = parts.index("providers")
        names = parts[at + 3 :: 2]
        if names:
            return "/".join(names)
        return f"{parts[0].rstrip('s')} {parts[1][:8]}…"  # a tenant's Entra logs
    if len(parts) >= 2:
        return f"{parts[0].rstrip('s')} {parts[1][:8]}…"
    return resource


def _table(
    head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] | None = None
) -> str:
    """Cells are HTML already (escaped by the caller)."""
    numeric = numeric or set()
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    count = 0
    for row in rows:
        count += 1
        out.append("<tr>")
        out.extend(
            f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        out.append("</tr>")
    if not count:
        out.append(f'<tr><td colspan="{len(head)}" class="muted">none</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


# --- charts ----------------------------------------------------------------------------


def volume_chart(volume: dict[datetime, int], step: timedelta) -> str:
    width, height, left, bottom, top = 1000, 200, 48, 28, 12
    if not volume:
        return '<p class="muted">No events in the period.</p>'
    peak = max(volume.values()) or 1
    times = sorted(volume)
    slot = (width - left - 8) / len(times)
    plot = height - bottom - top
    bars = []
    for i, at in enumerate(times):
        h = plot * volume[at] / peak
        bars.append(
            f'<rect x="{left + i * slot:.2f}" y="{top + plot - h:.2f}" '
            f'width="{max(slot - 1, 0.8):.2f}" height="{h:.2f}" fill="#3b7dd8">'
            f"<title>{escape(at.strftime('%Y-%m-%d %H:%M'))}: {volume[at]}</title></rect>"
        )
    labels = []
    ticks = min(8, len(times))
    for k in range(ticks):
        i = round(k * (len(times) - 1) / max(ticks - 1, 1))
        fmt = "%m-%d %H:%M" if step < timedelta(days=1) else "%Y-%m-%d"
        anchor = "end" if k == ticks - 1 and ticks > 1 else "start"
        labels.append(
            f'<text x="{left + (i + 1) * slot if anchor == "end" else left + i * slot:.1f}" '
            f'y="{height - 8}" text-anchor="{anchor}">{escape(times[i].strftime(fmt))}</text>'
        )
    unit = "hour" if step < timedelta(days=1) else "day"
    return (
        f'<svg class="chart" id="chart-volume" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="Events per {unit}">'
        f'<line x1="{left}" y1="{top + plot}" x2="{width - 8}" y2="{top + plot}" stroke="#8a96a6"/>'
        f'<text x="4" y="{top + 10}">{peak}</text><text x="4" y="{top + plot}">0</text>'
        + "".join(bars)
        + "".join(labels)
        + "</svg>"
        + f'<p class="muted">Events per {unit}; the highest bar is {peak}.</p>'
    )


def coverage_chart(sources: list[SourceCoverage], start: datetime, end: datetime) -> str:
    """One row per source: logging from first to last record (green), silences longer than
    the floor (red)."""
    if not sources:
        return '<p class="muted">No resource sent records in the period.</p>'
    # Sources with silences first: they are what the reader is looking for.
    rows = sorted(sources, key=lambda s: (not s.gaps, s.resource, s.category))[:MAX_TIMELINE_ROWS]
    width, label, row_h, top = 1000, 330, 16, 8
    span = max((end - start).total_seconds(), 1.0)
    plot = width - label - 10

    def x(at: datetime) -> float:
        return label + plot * max(0.0, min(1.0, (at - start).total_seconds() / span))

    height = top + row_h * len(rows) + 24
    parts = [
        f'<svg class="chart" id="chart-coverage" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="Coverage per source">'
    ]
    for i, source in enumerate(rows):
        y = top + i * row_h
        name = f"{_short(source.resource)} · {source.category}"
        parts.append(f'<text x="4" y="{y + 11}">{escape(name[:52])}</text>')
        x0, x1 = x(source.first), x(source.last)
        parts.append(
            f'<rect x="{x0:.2f}" y="{y + 2}" width="{max(x1 - x0, 2):.2f}" height="{row_h - 5}" '
            f'fill="#3aa66a"><title>{escape(name)}: {_t(source.first)} to {_t(source.last)}'
            "</title></rect>"
        )
        for gap in source.gaps:
            g0, g1 = x(gap.start), x(gap.end)
            parts.append(
                f'<rect x="{g0:.2f}" y="{y + 2}" width="{max(g1 - g0, 2):.2f}" '
                f'height="{row_h - 5}" fill="#d64545"><title>silent {_minutes(gap.minutes)} '
                f"from {_t(gap.start)}</title></rect>"
            )
    axis = top + row_h * len(rows) + 14
    parts.append(f'<text x="{label}" y="{axis}">{escape(_t(start))}</text>')
    parts.append(f'<text x="{width - 10}" y="{axis}" text-anchor="end">{escape(_t(end))}</text>')
    parts.append("</svg>")
    more = len(sources) - len(rows)
    note = f" {more} more source(s) in the table below." if more > 0 else ""
    return (
        "".join(parts)
        + '<p class="muted">Green: first to last record; red: a silence longer than the '
        f"category's floor.{note}</p>"
    )


def bar_chart(chart_id: str, items: list[tuple[str, int]], colour: str) -> str:
    if not items:
        return '<p class="muted">None in the period.</p>'
    width, label, row_h = 1000, 300, 20
    peak = max(count for _, count in items) or 1
    plot = width - label - 60
    height = row_h * len(items) + 8
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img">'
    ]
    for i, (name, count) in enumerate(items):
        y = 4 + i * row_h
        w = max(plot * count / peak, 2)
        parts.append(f'<text x="4" y="{y + 13}">{escape(name[:46])}</text>')
        parts.append(
            f'<rect x="{label}" y="{y + 2}" width="{w:.2f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{escape(name)}: {count}</title></rect>"
        )
        parts.append(f'<text x="{label + w + 6:.2f}" y="{y + 13}">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def attestation_chart(coverage: list[ControlCoverage]) -> str:
    """One bar per control: the passing share of its applicable resources, the rest failing."""
    width, label, row_h = 1000, 300, 24
    plot = width - label - 70
    height = row_h * len(coverage) + 8
    parts = [
        f'<svg class="chart" id="chart-attestation" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Attested coverage per control">'
    ]
    for i, c in enumerate(coverage):
        y = 4 + i * row_h
        name = f"{c.control_id} {c.title}"
        parts.append(f'<text x="4" y="{y + 15}">{escape(name[:46])}</text>')
        if c.applicable == 0:
            parts.append(f'<text x="{label}" y="{y + 15}">no resource it applies to</text>')
            continue
        good = plot * c.passing / c.applicable
        parts.append(
            f'<rect x="{label}" y="{y + 3}" width="{good:.2f}" height="{row_h - 8}" '
            f'fill="{ATTEST_PASS}"><title>{escape(c.control_id)}: {c.passing} of '
            f"{c.applicable} pass</title></rect>"
        )
        if c.passing < c.applicable:
            parts.append(
                f'<rect x="{label + good:.2f}" y="{y + 3}" width="{plot - good:.2f}" '
                f'height="{row_h - 8}" fill="{ATTEST_FAIL}"><title>{escape(c.control_id)}: '
                f"{len(c.failing)} failing</title></rect>"
            )
        parts.append(f'<text x="{label + plot + 6}" y="{y + 15}">{c.percentage:g}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def _failing(c: ControlCoverage, names: dict[str, str]) -> str:
    if not c.failing:
        return "—"
    items = [
        f"<li><b>{escape(names.get(rid, rid))}</b> <code>{escape(rid)}</code>: fails "
        f"{escape(', '.join(c.failing_checks[rid]))}</li>"
        for rid in c.failing[:MAX_FAILING_SHOWN]
    ]
    more = len(c.failing) - MAX_FAILING_SHOWN
    if more > 0:
        items.append(f'<li class="muted">{more} more: see the inventory table.</li>')
    return "<ul>" + "".join(items) + "</ul>"


def _attestation(report: HipaaReport) -> str:
    if report.attestation is None or report.inventory is None:
        return (
            '<p class="muted">No inventory given (--inventory FILE or --resource-graph): '
            "the PHI resources' safeguards are not attested.</p>"
        )
    names = {i.entry.resource_id: i.entry.name for i in report.inventory}
    return (
        f"<p>{len(report.inventory)} PHI resource(s) from "
        f"<code>{escape(report.inventory_source)}</code>. Per control, the share of the "
        "resources its checks apply to that pass them all. <code>diagnostics</code> passes when "
        "the archive holds a data-plane event targeting the resource (or a child) in the "
        "period; the other checks are the inventory's properties, and one it does not state "
        "fails: an attestation needs evidence. Below 100% the control is not met.</p>"
        + attestation_chart(report.attestation)
        + _table(
            ("Control", "Checks", "Coverage", "Passing", "Failing resources (checks failed)"),
            (
                (
                    f"<b>{escape(c.control_id)}</b> {escape(c.title)}",
                    escape(", ".join(CHECKS_OF.get(c.control_id, ()))),
                    _status(
                        coverage_status(c) or "not checked",
                        f"{c.percentage:g}%" if c.applicable else "n/a",
                    ),
                    f"{c.passing} of {c.applicable}",
                    _failing(c, names),
                )
                for c in report.attestation
            ),
            {3},
        )
    )


# --- sections --------------------------------------------------------------------------


def _params(params: dict[str, object]) -> str:
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


def _status(status: str, label: str | None = None) -> str:
    """A coloured badge for a status, worded `label` when the status word does not fit."""
    css = STATUS_CLASS.get(status, "na")
    return f'<span class="status {css}">{escape(label or status)}</span>'


def _controls(controls: list[Control]) -> str:
    return _table(
        ("Control", "Requirement", "Evidence in this report", "Status"),
        (
            (
                f"<b>{escape(c.citation)}</b>",
                escape(c.title),
                "<ul>" + "".join(f"<li>{escape(e)}</li>" for e in c.evidence) + "</ul>",
                _status(c.status),
            )
            for c in controls
        ),
    )


def render(report: HipaaReport) -> str:
    start = report.since or report.first
    end = report.until or report.last
    if report.first and report.last:
        start = max(start, report.first) if start else report.first
        end = min(end, report.last) if end else report.last
    body: dict[str, str] = {}
    body["controls"] = _controls(report.controls)
    body["attestation"] = _attestation(report)
    body["volume"] = volume_chart(report.volume, report.volume_step)
    body["coverage"] = (
        coverage_chart(report.sources, start, end)
        if start and end
        else '<p class="muted">No events in the period.</p>'
    )
    body["resources"] = _table(
        ("Resource", "Category", "Records", "First record", "Last record", "Floor", "Silences"),
        (
            (
                f"<code>{escape(s.resource)}</code>",
                escape(s.category),
                str(s.records),
                _t(s.first),
                _t(s.last),
                _minutes(s.floor_minutes),
                str(len(s.gaps)),
            )
            for s in report.sources
        ),
        {2, 6},
    )
    body["sources"] = _table(
        ("Product", "Category", "Resources", "Records", "First record", "Last record"),
        (
            (
                escape(p.product),
                escape(p.category),
                str(p.resources),
                str(p.records),
                _t(p.first),
                _t(p.last),
            )
            for p in report.products
        ),
        {2, 3},
    )
    body["gaps"] = _table(
        ("Resource", "Category", "Silent from", "Until", "Length", "Floor"),
        (
            (
                f"<code>{escape(s.resource)}</code>",
                escape(s.category),
                _t(g.start),
                "still silent at the period's end" if g.ongoing else _t(g.end),
                _minutes(g.minutes),
                _minutes(s.floor_minutes),
            )
            for s, g in report.gaps
        ),
    )
    if report.inventory is None:
        body["inventory"] = (
            '<p class="muted">No inventory given (--inventory FILE or --resource-graph): '
            "resources that send nothing cannot be listed.</p>"
        )
    else:
        missing = report.missing
        body["inventory"] = (
            f"<p><b>{len(missing)}</b> of {len(report.inventory)} expected resources sent "
            "nothing in the period.</p>"
            + _table(
                ("Name", "Kind", "Resource", "Sending", "Categories", "Checks failed"),
                (
                    (
                        escape(i.entry.name),
                        escape(i.entry.kind),
                        f"<code>{escape(i.entry.resource_id)}</code>",
                        _status("met", "yes") if i.sending else _status("not met", "nothing sent"),
                        escape(", ".join(i.categories)) or "—",
                        escape(", ".join(i.failing)) or "none",
                    )
                    for i in report.inventory
                ),
            )
        )
    integrity = report.integrity
    problems = "".join(f"<li><code>{escape(p)}</code></li>" for p in integrity.problems)
    more = integrity.problem_count - len(integrity.problems)
    body["integrity"] = (
        "<p>"
        + _status("met" if integrity.verified else "not met")
        + (
            f" Verified for the period: {integrity.objects} objects, {integrity.manifests} "
            f"signed manifests, {integrity.streams} stream(s), every chain intact, every "
            "signature by a trusted key."
            if integrity.verified
            else f" NOT verified: {integrity.problem_count} problem(s) over "
            f"{integrity.objects} objects."
        )
        + "</p>"
        + (f"<ul>{problems}</ul>" if problems else "")
        + (f"<p>{more} more: run <code>phiwatch archive verify</code>.</p>" if more > 0 else "")
        + (
            f"<p><b>{len(report.unreadable)}</b> object(s) could not be read and are left out "
            "of this report's counts.</p>"
            if report.unreadable
            else ""
        )
    )
    body["retention"] = (
        f"<p>State: <b>{escape(report.retention.state)}</b></p><ul>"
        + "".join(f"<li>{escape(line)}</li>" for line in report.retention.lines)
        + "</ul>"
    )
    body["detections"] = _table(
        ("Rule", "Name", "Severity", "State", "Parameters"),
        (
            (
                f"<code>{escape(d.rule_id)}</code>",
                escape(d.name),
                escape(d.severity),
                _status("met", "on") if d.on else _status("not checked", "off until set"),
                f"<code>{escape(_params(d.params))}</code>",
            )
            for d in report.detections
        ),
    )
    body["alerts"] = bar_chart(
        "chart-alerts", [(r.rule_id, r.alerts) for r in report.alerts], "#8256c9"
    ) + _table(
        ("Rule", "Name", "Alerts", "By severity"),
        (
            (
                f"<code>{escape(r.rule_id)}</code>",
                escape(r.name),
                str(r.alerts),
                escape(", ".join(f"{k} {v}" for k, v in sorted(r.by_severity.items()))),
            )
            for r in report.alerts
        ),
        {2},
    )
    body["deadletters"] = bar_chart(
        "chart-deadletters", list(report.dead_letters.items()), "#d08a1e"
    ) + _table(
        ("Reason", "Dead-letters"),
        ((escape(reason), str(count)) for reason, count in report.dead_letters.items()),
        {1},
    )

    period = f"{_t(report.since) if report.since else 'the start'} to " + (
        _t(report.until) if report.until else "the end of the archive"
    )
    audit = next((c for c in report.attestation or [] if c.control_id == "164.312(b)"), None)
    audit_coverage = "—" if audit is None or not audit.applicable else f"{audit.percentage:g}%"
    summary = "".join(
        f'<div class="card"><b>{escape(value)}</b>{escape(label)}</div>'
        for value, label in (
            (str(report.events), "events"),
            (str(len(report.sources)), "sources"),
            (str(len(report.gaps)), "silences"),
            ("—" if report.inventory is None else str(len(report.missing)), "resources silent"),
            ("verified" if integrity.verified else "NOT verified", "archive"),
            (str(sum(r.alerts for r in report.alerts)), "alerts"),
            (audit_coverage, "audit coverage"),
        )
    )
    sections = "".join(
        f'<section id="{sid}"><h2>{escape(title)}</h2>{body[sid]}</section>'
        for sid, title in SECTIONS
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        "<title>phiwatch HIPAA audit-readiness report</title>"
        f"<style>{STYLE}</style></head><body>"
        '<header id="summary"><h1>HIPAA audit-readiness report</h1>'
        f'<p class="meta">Archive <code>{escape(report.location)}</code> · period {escape(period)}'
        f" · events from {escape(_t(report.first))} to {escape(_t(report.last))} · generated "
        f"{escape(_t(report.generated_at))}</p>"
        f'<div class="cards">{summary}</div></header>'
        f"<main>{sections}</main>"
        '<footer><p class="muted">Produced by phiwatch from the signed audit archive. '
        "Resource ids, rules and counts only: no patient or user is named.</p></footer>"
        "</body></html>\n"
    )
