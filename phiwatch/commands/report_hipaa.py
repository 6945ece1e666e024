"""`phiwatch report hipaa`: the HIPAA audit-readiness page for an auditor
(phiwatch/reports/hipaa.py, rendered by hipaa_html.py).

`hipaa_command` sits on the `report` group beside `report patient` and `report actor`
(commands/report.py registers it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from phiwatch.commands.archive import ConnectionOpt, KeysOpt, open_store, trusted_keys
from phiwatch.commands.output import fail, out
from phiwatch.reports.hipaa import ReportError, build_report, parse_time, read_inventory
from phiwatch.reports.hipaa_html import render
from phiwatch.wiring import ConfigurationError, load_settings


def hipaa_command(
    archive: Annotated[
        str,
        typer.Option(
            help="Archive directory, or a container URL (https://ACCOUNT.blob.core.windows.net/C); "
            "with --connection-string, the container name."
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", help="The page to write (HTML).")],
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO 8601 or a span back (30d, 12h).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this time: ISO 8601 or a span back.")
    ] = None,
    inventory: Annotated[
        Path | None,
        typer.Option(help="Expected PHI resources: CSV with ResourceId,Kind[,Name]."),
    ] = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Write the HIPAA audit-readiness page: coverage, silences, missing resources, integrity,
    retention, detections, alerts, dead-letters, and the controls they evidence. Exit 0 when
    written (the controls' statuses are in the page), 1 when the archive is not verified."""
    now = datetime.now(UTC)
    try:
        start = parse_time(since, now) if since else None
        end = parse_time(until, now) if until else None
        expected = read_inventory(inventory) if inventory else None
    except ReportError as exc:
        raise fail(str(exc)) from None
    if start and end and start > end:
        raise fail("--since is after --until")
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        raise fail(str(exc)) from None
    store = open_store(archive, connection_string)
    report = build_report(
        store,
        trusted=trusted_keys(public_key),
        settings=settings,
        since=start,
        until=end,
        inventory=expected,
        now=now,
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(render(report), encoding="utf-8")
    integrity = report.integrity
    out.print(
        f"wrote {out_file}: {report.events} events, {len(report.sources)} sources, "
        f"{len(report.gaps)} silence(s), {len(report.missing)} expected resource(s) silent; "
        + ("archive verified" if integrity.verified else "archive NOT verified"),
        markup=False,
        highlight=False,
    )
    for control in report.controls:
        out.print(f"{control.citation}: {control.status}", markup=False, highlight=False)
    if not integrity.verified and integrity.problem_count:
        raise typer.Exit(1)
