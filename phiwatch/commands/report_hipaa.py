"""`phiwatch report hipaa`: the HIPAA audit-readiness page for an auditor
(phiwatch/reports/hipaa.py, rendered by hipaa_html.py).

`hipaa_command` sits on the `report` group beside `report patient` and `report actor`
(commands/report.py registers it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from phiwatch.attest.inventory import (
    Inventory,
    InventoryError,
    inventory_from_graph,
    load_inventory,
)
from phiwatch.commands.archive import ConnectionOpt, KeysOpt, open_store, trusted_keys
from phiwatch.commands.output import fail, out
from phiwatch.reports.hipaa import build_report, parse_time
from phiwatch.reports.hipaa_html import render
from phiwatch.reports.timespec import TimeSpecError
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
        typer.Option(
            help="The PHI inventory, CSV or JSON (docs/attestation.md; ResourceId,Kind[,Name] "
            "is one too): resources sending nothing, and attested coverage per control."
        ),
    ] = None,
    resource_graph: Annotated[
        bool,
        typer.Option(
            "--resource-graph",
            help="Build the inventory from Azure Resource Graph (DefaultAzureCredential: "
            "Reader on the subscriptions) instead of --inventory.",
        ),
    ] = False,
    subscription: Annotated[
        list[str] | None,
        typer.Option(
            help="With --resource-graph: query this subscription id (repeat; default: every "
            "subscription the identity can read)."
        ),
    ] = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Write the HIPAA audit-readiness page: coverage, silences, missing resources, integrity,
    retention, detections, alerts, dead-letters, with an inventory the attested coverage per
    control (failing resources named), and the controls they evidence. Exit 0 when
    written (the controls' statuses are in the page), 1 when the archive is not verified."""
    now = datetime.now(UTC)
    try:
        start = parse_time(since, now) if since else None
        end = parse_time(until, now) if until else None
    except TimeSpecError as exc:
        raise fail(str(exc)) from None
    if start and end and start > end:
        raise fail("--since is after --until")
    if inventory and resource_graph:
        raise fail("give --inventory or --resource-graph, not both")
    if subscription and not resource_graph:
        raise fail("--subscription needs --resource-graph")
    expected = _inventory(inventory, resource_graph, subscription or [])
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
    if report.attestation is not None:
        out.print(
            f"attested over {len(expected or ())} inventory resource(s): "
            + ", ".join(
                f"{c.control_id} {c.percentage:g}%" if c.applicable else f"{c.control_id} n/a"
                for c in report.attestation
            ),
            markup=False,
            highlight=False,
        )
    for control in report.controls:
        out.print(f"{control.citation}: {control.status}", markup=False, highlight=False)
    if not integrity.verified and integrity.problem_count:
        raise typer.Exit(1)


def _inventory(path: Path | None, graph: bool, subscriptions: list[str]) -> Inventory | None:
    if path is not None:
        try:
            return load_inventory(path)
        except InventoryError as exc:
            raise fail(f"{path}: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"{path}: not a readable inventory ({type(exc).__name__})") from None
    if not graph:
        return None
    from azure.core.exceptions import AzureError  # noqa: PLC0415 - only a Graph inventory needs it

    try:
        return inventory_from_graph(subscriptions=subscriptions)
    except InventoryError as exc:
        raise fail(f"Resource Graph: {exc}") from None
    except AzureError as exc:
        # The type and status say what failed (sign-in, permission, throttling); the
        # service's message can quote the query, which says nothing more.
        status = getattr(exc, "status_code", None)
        raise fail(
            f"Resource Graph refused the inventory query ({type(exc).__name__}"
            + (f", HTTP {status}" if status else "")
            + ")",
            1,
        ) from None
