"""`phiwatch rules`: the KQL rules in kql/ (schema, lint, test).

Background in kql/README.md; the work is done in the modules beside this one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from phiwatch.rules.engine import EngineUnavailable
from phiwatch.rules.kql_check import ValidatorUnavailable
from phiwatch.rules.lint import lint
from phiwatch.rules.loader import discover, discover_queries
from phiwatch.rules.problems import display_path
from phiwatch.rules.tables import SCHEMA_FILE, render_schema, schema_drift
from phiwatch.rules.testing import Outcome, run_rule_tests

app = typer.Typer(
    no_args_is_help=True,
    help="KQL analytic rules in kql/: table schema, lint, test.",
)
out = Console(soft_wrap=True, highlight=False)
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


RulesArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Rule files, directories or rule names (default: every rule in kql/; lint and "
        "test: and every hunting query in kql/hunting/).",
        show_default=False,
    ),
]


def _targets(rules: list[Path] | None, *, hunting: bool = False) -> list[Path]:
    try:
        paths = discover_queries(rules or []) if hunting else discover(rules or [])
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if not paths:
        err.print("[bold red]error:[/] no rule files found")
        raise typer.Exit(2)
    return paths


@app.command("lint")
def lint_command(rules: RulesArg = None) -> None:
    """Check rules as Sentinel would: template constraints and the KQL (Kusto.Language, against
    kql/schema/tables.json). Exit 1 on any error."""
    paths = _targets(rules, hunting=True)
    try:
        report = lint(paths)
    except ValidatorUnavailable as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    for problem in report.problems:
        colour = "red" if problem.severity == "error" else "yellow"
        out.print(f"[{colour}]{escape(problem.render())}[/]")
    for note in report.notes:
        out.print(f"note: {escape(note)}")
    errors, warnings = len(report.errors), len(report.warnings)
    out.print(
        f"{len(paths)} rule(s) linted: {errors} error(s), {warnings} warning(s)",
        style="bold red" if errors else "bold green",
    )
    if errors:
        raise typer.Exit(1)


@app.command("test")
def test_command(
    rules: RulesArg = None,
    minimum_tests: Annotated[
        int,
        typer.Option(
            "--minimum-tests",
            min=0,
            help="Positive and negative cases each rule needs (each kind).",
        ),
    ] = 1,
) -> None:
    """Run every rule's query on its cases (kql/tests/<rule>/*.yaml) with duckdb-kql and
    compare with the expected rows. Exit 1 unless every case passes or is declared not
    executable locally."""
    paths = _targets(rules, hunting=True)
    try:
        report = run_rule_tests(paths, minimum=minimum_tests)
    except EngineUnavailable as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    for rule in report.rules:
        out.print(f"[bold]{escape(display_path(rule.path))}[/]")
        for case in rule.cases:
            kind = {True: "positive", False: "negative", None: "?"}[case.positive]
            colour = {
                Outcome.passed: "green",
                Outcome.not_executed: "yellow",
            }.get(case.outcome, "red")
            out.print(
                f"  [{colour}]{case.outcome.value:<12}[/] {escape(case.name)} ({kind})"
                f"  {case.seconds * 1000:.0f} ms"
            )
            for message in case.messages:
                out.print(f"      {escape(message)}")
        for problem in rule.problems:
            out.print(f"  [red]{escape(problem.render())}[/]")
    summary = ", ".join(
        f"{report.count(outcome)} {outcome.value.lower()}"
        for outcome in (
            Outcome.passed,
            Outcome.failed,
            Outcome.error,
            Outcome.unsupported,
            Outcome.not_executed,
        )
    )
    problems = sum(len(r.problems) for r in report.rules)
    out.print(
        f"{len(report.rules)} rule(s): {summary}; {problems} rule problem(s)",
        style="bold green" if report.ok else "bold red",
    )
    if not report.ok:
        raise typer.Exit(1)


# --- export, backtest (phiwatch/rules/export.py, backtest.py) ------------------------------


@app.command("export")
def export_command(
    rules: RulesArg = None,
    format_: Annotated[str, typer.Option("--format", help="Output format (arm).")] = "arm",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Write the rules as a deployable ARM template of Sentinel alertRules (parameter
    `workspace`)."""
    from phiwatch.rules.export import export_cli  # noqa: PLC0415 - logic lives there

    export_cli(_targets(rules), format_, out_file)


@app.command("backtest")
def backtest_command(
    rule: Annotated[Path, typer.Argument(help="Rule file or rule name in kql/.")],
    archive: Annotated[Path, typer.Option("--archive", help="Archive directory.")],
    since: Annotated[
        str | None, typer.Option("--since", help="Start (ISO date/time, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (ISO date/time, UTC).")] = None,
    step_minutes: Annotated[
        int | None, typer.Option("--step", min=1, help="Minutes between runs (queryFrequency).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What RULE would have fired on over the archive's events, per day (one run per
    queryFrequency with now() pinned at each run)."""
    from phiwatch.rules.backtest import backtest_cli  # noqa: PLC0415 - logic lives there

    backtest_cli(_targets([rule])[0], archive, since, until, step_minutes, as_json)
