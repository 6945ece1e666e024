"""`phiwatch samples`: synthetic diagnostic logs with injected incidents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phiwatch.commands.output import out
from phiwatch.samplegen import generate

samples_app = typer.Typer(no_args_is_help=True, help="Synthetic diagnostic logs.")


@samples_app.command("generate")
def samples_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files.")] = 7,
    records: Annotated[int, typer.Option(help="Approximate number of records.", min=2000)] = 20_000,
) -> None:
    """Write realistic synthetic diagnostic logs with injected incidents and ground truth."""
    report = generate(out_dir, seed=seed, records=records)
    out.print(
        f"wrote {report.records:,} records in {report.bodies:,} bodies "
        f"({report.bytes / 1e6:.1f} MB, {len(report.files)} files) and "
        f"{report.incidents} incidents to {out_dir}",
        highlight=False,
    )
