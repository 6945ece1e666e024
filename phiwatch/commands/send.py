"""`phiwatch send`: a canary to a hub (check a deployment), or local files to a test hub."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from phiwatch.commands import eventhubs
from phiwatch.commands.eventhubs import (
    HubOpt,
    NamespaceOpt,
    azure_errors,
    azure_problem,
    close_quietly,
)
from phiwatch.commands.output import err, fail, out
from phiwatch.config import cli_log_level
from phiwatch.envelope import InputError, discover
from phiwatch.eventhubs.names import (
    EventHubsConfigError,
    check_hub_name,
    fully_qualified_namespace,
)
from phiwatch.eventhubs.producer import Producer, SendReport, send_files
from phiwatch.logs import configure_logging
from phiwatch.sources.canary import canary_record

SYNTHETIC_REFUSED = (
    "refusing to send files to {target} without --allow-synthetic: files such as "
    "samples/logs hold synthetic incidents, which would be archived for the retention period "
    "(six years by default, immutable) and raise alerts and incidents in Sentinel. To check a "
    "production deployment send a canary (--canary); pass --allow-synthetic only for a test "
    "deployment"
)


def send_command(
    namespace: NamespaceOpt,
    hub: HubOpt,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files (.json, .jsonl, .ndjson, optionally .gz) or directories; needs "
            "--allow-synthetic.",
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="Send one PhiwatchCanary record (a time and an id): archived raw, counted as "
            "the skip `canary`, shown by /api/health as last seen, never an event or alert.",
        ),
    ] = False,
    allow_synthetic: Annotated[
        bool,
        typer.Option(
            "--allow-synthetic",
            help="Allow sending files: their records are archived (immutably) and detected "
            "on like real ones. For test deployments only.",
        ),
    ] = False,
) -> None:
    """Send a canary to a hub (check a deployment), or local files to a test hub.

    --canary sends one record of category PhiwatchCanary that goes the whole way a real record
    goes and is then counted as a `canary` skip. Files: each body (a line of .jsonl, a .json
    file or each element of a .json array) becomes one event, in batches under the hub's size
    limit; refused without --allow-synthetic. Signs in with DefaultAzureCredential (the
    identity needs 'Azure Event Hubs Data Sender').
    """
    configure_logging(cli_log_level())
    try:
        fqns = fully_qualified_namespace(namespace)
        check_hub_name(hub)
    except EventHubsConfigError as exc:
        raise fail(str(exc)) from None
    if canary and paths:
        raise fail("--canary sends one canary record: give no files with it")
    if canary:
        _send_canary(fqns, hub)
        return
    if not paths:
        raise fail("nothing to send: give files (with --allow-synthetic) or --canary")
    if not allow_synthetic:
        raise fail(SYNTHETIC_REFUSED.format(target=f"{fqns}/{hub}"))
    try:
        discover(paths)  # every path is checked before anything is sent
    except InputError as exc:
        raise fail(str(exc)) from None
    report = SendReport()
    producer: Producer | None = None
    try:
        producer = eventhubs.make_producer(fqns, hub)
        send_files(paths, producer, report=report)
    except InputError as exc:
        raise fail(f"{exc} ({report.summary()} before this)", 1) from None
    except azure_errors() as exc:
        sent = f" ({report.summary()} before the failure)" if report.bodies else ""
        raise azure_problem(f"cannot send to {fqns}/{hub}{sent}", exc) from None
    finally:
        if producer is not None:
            close_quietly(producer)
    out.print(f"{report.summary()} to {fqns}/{hub}", markup=False, highlight=False)
    if report.skipped:
        for problem in report.skipped:
            err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)


def _send_canary(fqns: str, hub: str) -> None:
    canary_id = str(uuid.uuid4())
    body = json.dumps({"records": [canary_record(canary_id=canary_id)]}).encode()
    producer: Producer | None = None
    try:
        producer = eventhubs.make_producer(fqns, hub)
        producer.send_batch([body])
    except azure_errors() as exc:
        raise azure_problem(f"cannot send the canary to {fqns}/{hub}", exc) from None
    finally:
        if producer is not None:
            close_quietly(producer)
    out.print(
        f"sent canary {canary_id} to {fqns}/{hub}; /api/health shows it as "
        "batches.canary_last_seen once normalize has read it",
        markup=False,
        highlight=False,
    )
