"""`phiwatch replay`: the pipeline over local diagnostic-log files (the embedded default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from detections import RegistryError
from phiwatch.archive.archive import ArchiveIntegrityError
from phiwatch.archive.locate import record_replay
from phiwatch.archive.signer import SignerError
from phiwatch.commands.output import err, fail, out
from phiwatch.config import Settings, cli_log_level
from phiwatch.envelope import InputError, discover
from phiwatch.hosts.replay import ReplaySummary, ReplayWorkerError, replay
from phiwatch.logs import configure_logging
from phiwatch.pseudonym import PseudonymKeyError


def _parse_params(params: list[str]) -> dict[str, dict[str, Any]]:
    """`rule-id.name=value` → {"rule-id": {"name": value}}; values are JSON when they parse."""
    parsed: dict[str, dict[str, Any]] = {}
    for item in params:
        target, sep, value = item.partition("=")
        rule, dot, name = target.partition(".")
        if not sep or not dot or not rule or not name:
            raise fail(f"--param {item!r}: expected RULE.NAME=VALUE")
        try:
            parsed.setdefault(rule, {})[name] = json.loads(value)
        except ValueError:
            parsed.setdefault(rule, {})[name] = value
    return parsed


def replay_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Files (.json, .jsonl, .ndjson, optionally .gz) or dirs.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("out"),
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Detection parameter, e.g. mass-record-access.threshold=80"),
    ] = None,
    batch_bodies: Annotated[int, typer.Option(help="Event Hub bodies per batch.", min=1)] = 100,
    roster: Annotated[
        Path | None,
        typer.Option(
            "--roster",
            help="Workforce roster CSV (docs/privacy.md); stamps events with the actor's "
            "employment and relationship to the patient.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    patients: Annotated[
        Path | None,
        typer.Option(
            "--patients",
            help="Patient index CSV (docs/privacy.md); stamps accesses as care-team, "
            "allowed-application or unexplained.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    allow_application: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-application",
            help="An application (client) id whose accesses are explained (repeatable; "
            "added to PHIWATCH_PRIVACY_ALLOW_APPLICATIONS).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Processes reading the files, one file (input stream) each at a time; the "
            "output is the same as with 1. Helps a backfill of many files on several cores.",
            min=1,
        ),
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the pipeline over local diagnostic-log files; write events, alerts, dead-letters,
    an archive and a summary to --out."""
    configure_logging(cli_log_level())
    try:
        settings = Settings(allow_generated_key=True)
        if param:
            settings = settings.model_copy(
                update={"detection_params": {**settings.detection_params, **_parse_params(param)}}
            )
        if allow_application:
            # Validated as the setting is (app ids, lowercased), not just copied in.
            settings = Settings(
                allow_generated_key=True,
                detection_params=settings.detection_params,
                privacy_allow_applications=[
                    *settings.privacy_allow_applications,
                    *allow_application,
                ],
            )
        files = discover(paths)
    except InputError as exc:
        raise fail(str(exc)) from None
    except ValidationError as exc:
        raise fail(f"bad setting: {exc}") from None
    total = sum(f.stat().st_size for f in files)
    progress = Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[file]}"),
        console=err,
        disable=quiet,
        transient=True,
    )
    try:
        with progress:
            task = progress.add_task("replay", total=total, file="")
            summary = replay(
                files,
                out_dir,
                settings,
                batch_bodies=batch_bodies,
                on_file=lambda path, size: progress.update(task, advance=size, file=path.name),
                roster=roster,
                patients=patients,
                workers=workers,
            )
    except InputError as exc:
        raise fail(str(exc)) from None
    except (PseudonymKeyError, RegistryError, SignerError) as exc:
        raise fail(str(exc)) from None
    except ReplayWorkerError as exc:
        raise fail(f"{exc}; nothing was written to {out_dir / 'summary.json'}", code=1) from None
    except ArchiveIntegrityError as exc:
        raise fail(
            f"archive integrity: {exc}. The archive in {out_dir / 'archive'} never overwrites; "
            "replaying the same input with other settings or another phiwatch version needs "
            "a new --out directory.",
            code=1,
        ) from None
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2) + b"\n"
    )
    # `phiwatch archive verify|evidence|raw` default to this archive (not a fixed path).
    record_replay(settings.home, out_dir)
    _print_summary(summary, out_dir)
    if summary.problems:
        for problem in summary.problems:
            err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(1)


def _print_summary(summary: ReplaySummary, out_dir: Path) -> None:
    counts = summary.counts
    table = Table(
        title=f"phiwatch replay: {summary.files} file(s) → {escape(str(out_dir))}", show_lines=False
    )
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_column("reason")
    table.add_row("records read", f"{counts.records:,}", "")
    table.add_row("events", f"{counts.events:,}", f"from {counts.event_records:,} records")
    by_product = sorted(summary.events_by_product.items(), key=lambda i: (-i[1], i[0]))
    for product, n in by_product:
        table.add_row(f"  {escape(product)}", f"{n:,}", "")
    table.add_row("dead-letters", f"{sum(counts.dead_letters.values()):,}", "")
    for code, n in sorted(counts.dead_letters.items(), key=lambda i: (-i[1], i[0])):
        table.add_row(f"  {escape(code)}", f"{n:,}", escape(counts.examples.get(code, "")))
    table.add_row("skipped", f"{sum(counts.skipped.values()):,}", "")
    for code, n in sorted(counts.skipped.items(), key=lambda i: (-i[1], i[0])):
        table.add_row(f"  {escape(code)}", f"{n:,}", escape(counts.examples.get(code, "")))
    table.add_row("late events", f"{summary.late:,}", "older than the allowed lateness")
    table.add_row("alerts", f"{sum(counts.alerts.values()):,}", "")
    for rule, n in sorted(counts.alerts.items()):
        table.add_row(f"  {rule}", f"{n:,}", "")
    table.add_row(
        "archive objects", f"{summary.archive_objects:,}", escape(str(out_dir / "archive"))
    )
    out.print(table)
    accounted = "yes" if counts.accounted else "NO"
    out.print(f"every record accounted for: {accounted}", markup=False, highlight=False)
    for alert in summary.alerts:
        out.print(
            f"[bold]{alert.severity:<6}[/] {escape(alert.rule_id)}: {escape(alert.title)}",
            highlight=False,
        )
