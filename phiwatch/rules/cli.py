"""`phiwatch rules`: the KQL rules in kql/ (schema, lint, test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from phiwatch.rules.problems import display_path
from phiwatch.rules.tables import SCHEMA_FILE, render_schema, schema_drift

app = typer.Typer(
    no_args_is_help=True,
    help="KQL analytic rules in kql/: table schema, lint, test.",
)
err = Console(stderr=True, soft_wrap=True, highlight=False)


@app.command("schema")
def schema_command(
    write: Annotated[bool, typer.Option("--write", help="Write the schema file.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the schema file is stale (writes nothing).")
    ] = False,
    path: Annotated[Path, typer.Option("--path", help="The schema file.")] = SCHEMA_FILE,
) -> None:
    """The table schema rules are linted and tested against (kql/schema/tables.json),
    generated from the phiwatch models plus Log Analytics' built-in tables."""
    fresh = render_schema()
    if check:
        if not path.is_file():
            err.print(f"[bold red]drift:[/] {escape(display_path(path))} does not exist")
            raise typer.Exit(1)
        committed = path.read_text(encoding="utf-8")
        if committed == fresh:
            err.print(f"{escape(display_path(path))} is up to date")
            return
        try:
            problems = schema_drift(json.loads(committed), json.loads(fresh))
        except ValueError:
            problems = ["the file is not valid JSON"]
        for problem in problems or ["formatting differs"]:
            err.print(f"[bold red]drift:[/] {escape(problem)}")
        err.print("regenerate with: phiwatch rules schema --write")
        raise typer.Exit(1)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fresh, encoding="utf-8")
        err.print(f"wrote {escape(display_path(path))}")
        return
    typer.echo(fresh, nl=False)
