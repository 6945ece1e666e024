"""`phiwatch schema`: print the Log Analytics / DCR schemas derived from the models.

`--format bicep-json --out infra/generated/log-analytics-schema.json` regenerates the file
the Bicep in infra/sentinel/ loads; `--check` verifies the committed copy instead.
"""

from __future__ import annotations

import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phiwatch.schema.export import (
    bicep_document,
    dcr_document,
    describe_drift,
    full_document,
    render_json,
)
from phiwatch.schema.tables import SYSTEM_COLUMNS, TABLES, TableSpec, table_columns, transform_kql

err = Console(stderr=True, soft_wrap=True)


class SchemaFormat(StrEnum):
    table = "table"
    dcr = "dcr"
    json = "json"
    bicep_json = "bicep-json"


def schema_command(
    fmt: Annotated[
        SchemaFormat,
        typer.Option(
            "--format",
            "-f",
            help="table: columns per table; dcr: DCR streamDeclarations + dataFlows; "
            "json: everything; bicep-json: the file infra/sentinel/*.bicep load.",
        ),
    ] = SchemaFormat.table,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="With --out: compare the file with a fresh generation and exit 1 if it "
            "drifted (writes nothing).",
        ),
    ] = False,
) -> None:
    """Print the Log Analytics tables and DCR streams derived from the phiwatch models."""
    if fmt is SchemaFormat.table:
        text = render_tables(TABLES)
    elif fmt is SchemaFormat.dcr:
        text = render_json(dcr_document())
    elif fmt is SchemaFormat.json:
        text = render_json(full_document())
    else:
        text = render_json(bicep_document())

    if check:
        if out_file is None:
            err.print("[bold red]error:[/] --check needs --out FILE", highlight=False)
            raise typer.Exit(2)
        _check(out_file, text, fmt)
        return
    if out_file is None:
        typer.echo(text, nl=False)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(text, encoding="utf-8")
    err.print(f"wrote {escape(str(out_file))}", highlight=False)


def _check(path: Path, fresh: str, fmt: SchemaFormat) -> None:
    if not path.is_file():
        err.print(f"[bold red]drift:[/] {escape(str(path))} does not exist", highlight=False)
        raise typer.Exit(1)
    committed = path.read_text(encoding="utf-8")
    if committed == fresh:
        err.print(f"{escape(str(path))} is up to date", highlight=False)
        return
    problems = ["content differs"]
    if fmt is SchemaFormat.bicep_json:
        try:
            problems = describe_drift(json.loads(committed), json.loads(fresh)) or [
                "formatting differs"
            ]
        except ValueError:
            problems = ["the committed file is not valid JSON"]
    for problem in problems:
        err.print(f"[bold red]drift:[/] {escape(problem)}", highlight=False)
    err.print(
        f"regenerate with: phiwatch schema --format {fmt.value} --out {escape(str(path))}",
        highlight=False,
    )
    raise typer.Exit(1)


def render_tables(tables: tuple[TableSpec, ...] | list[TableSpec]) -> str:
    """A readable listing of every table's columns (plain text, no colour codes)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=110, color_system=None, highlight=False)
    for spec in tables:
        renamed = {new: old for old, new in spec.renames}
        table = Table(
            title=f"{spec.table}  (stream {spec.stream})",
            caption=f"transformKql: {transform_kql(spec)}",
            caption_justify="left",
        )
        table.add_column("column")
        table.add_column("type")
        table.add_column("note")
        for column in table_columns(spec):
            name = column["name"]
            note = ""
            if name in renamed:
                note = f"stream column {renamed[name]} (reserved name), renamed by the DCR"
            elif name == "TimeGenerated" and spec.time_from:
                note = f"set by the DCR from {spec.time_from}"
            table.add_row(escape(name), column["type"], escape(note))
        for name, kind in SYSTEM_COLUMNS:
            table.add_row(escape(name), kind, "added by Log Analytics")
        console.print(table)
        console.print(escape(spec.description))
        console.print()
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
