"""`phiwatch` command line (also `python -m phiwatch`): the root, one command group per
module beside it (replay, samples, archive, report, rules, roster, schema, send, consume)."""

from __future__ import annotations

import typer

from phiwatch.commands.archive import app as archive_app
from phiwatch.commands.consume import consume_command
from phiwatch.commands.replay import replay_command
from phiwatch.commands.report import app as report_app
from phiwatch.commands.roster import app as roster_app
from phiwatch.commands.rules import app as rules_app
from phiwatch.commands.samples import samples_app
from phiwatch.commands.schema import schema_command
from phiwatch.commands.send import send_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="PHI-access monitoring for Azure diagnostic logs.",
    pretty_exceptions_enable=False,
)
app.add_typer(samples_app, name="samples")
app.add_typer(archive_app, name="archive")
app.add_typer(report_app, name="report")
app.add_typer(rules_app, name="rules")
app.add_typer(roster_app, name="roster")
app.command("replay")(replay_command)
app.command("schema")(schema_command)
app.command("send")(send_command)
app.command("consume")(consume_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
