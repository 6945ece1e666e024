"""`phiwatch report ...`: investigations over the audit archive (docs/reports.md).

`patient` lists every access to one patient's record in a range, `actor` everything one
user or application did on PHI; both verify the archive for the range first and say so.
Output goes to stdout unless `--out`; the verification's verdict also goes to stderr, so a
CSV stays a plain table.
"""

from __future__ import annotations

import os
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import orjson
import typer

from phiwatch.commands.archive import ConnectionOpt, KeysOpt, open_store, trusted_keys
from phiwatch.commands.keys import tenant_pseudonymizer
from phiwatch.commands.output import err, fail, out
from phiwatch.commands.report_hipaa import hipaa_command
from phiwatch.config import cli_log_level
from phiwatch.logs import configure_logging
from phiwatch.privacy.fhir_sync import FhirSyncError, check_fhir_service
from phiwatch.pseudonym import Pseudonymizer
from phiwatch.reports.actor import actor_report
from phiwatch.reports.patient import fhir_id_ref, identifier_refs, patient_report
from phiwatch.reports.timespec import HELP as TIME_HELP
from phiwatch.reports.timespec import TimeRange, TimeSpecError, time_range

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Investigation reports from the audit archive: a patient's accesses, an actor's.",
)

# HIPAA 164.528(a): an accounting covers the six years before the request.
PATIENT_DEFAULT_SPAN = timedelta(days=2190)
ACTOR_DEFAULT_SPAN = timedelta(days=1)


class Format(StrEnum):
    json = "json"
    csv = "csv"
    html = "html"


ArchiveOpt = Annotated[
    str | None,
    typer.Option(
        "--archive",
        help="Archive directory or container URL (as for `archive verify`). Default: "
        "PHIWATCH_ARCHIVE_DIR, else out/demo/archive.",
    ),
]
SinceOpt = Annotated[str | None, typer.Option("--since", help=f"Range start. {TIME_HELP}")]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help=f"Range end (exclusive; default now). {TIME_HELP}")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="json (default), csv or html.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="File to write (default stdout).")]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The pseudonym key (default PHIWATCH_PSEUDONYM_KEY, else PHIWATCH_HOME's key "
        "file, as replay uses).",
    ),
]


def _range(since: str | None, until: str | None, default: timedelta) -> TimeRange:
    try:
        return time_range(since, until, default_span=default)
    except TimeSpecError as exc:
        raise fail(str(exc)) from None


def _credential() -> TokenCredential:
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 (slow import)

    return DefaultAzureCredential()


def _write(text: str, out_file: Path | None) -> None:
    if out_file is None:
        out.file.write(text)
        out.file.flush()
        return
    try:
        # Owner-only: a report says who opened whose record, itself sensitive.
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
    except OSError as exc:
        raise fail(f"{out_file}: cannot write it ({type(exc).__name__})", 1) from None


def _say_verified(verified: bool, problems: list[str]) -> None:
    if verified:
        err.print("archive verified for the range", markup=False, highlight=False)
        return
    for problem in problems:
        err.print(f"FAIL {problem}", markup=False, highlight=False)
    err.print(
        f"archive NOT verified for the range: {len(problems)} problem(s)",
        markup=False,
        highlight=False,
    )


class _Report(Protocol):
    """What the patient and actor reports both offer (phiwatch/reports/)."""

    verified: bool
    problems: list[str]

    def as_dict(self) -> dict[str, Any]: ...
    def to_csv(self) -> str: ...
    def to_html(self) -> str: ...


def _deliver(report: _Report, output_format: Format, out_file: Path | None) -> None:
    """Write the report in its format, say on stderr whether the archive verified, and exit
    1 when it did not (docs/reports.md), so a script cannot take it for a clean one."""
    if output_format is Format.csv:
        text = report.to_csv()
    elif output_format is Format.html:
        text = report.to_html()
    else:
        text = orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
    _write(text, out_file)
    _say_verified(report.verified, report.problems)
    if not report.verified:
        raise typer.Exit(1)


@app.command("patient")
def patient_command(
    patient_id: Annotated[
        str | None, typer.Argument(help="The patient's FHIR logical id (or use --identifier).")
    ] = None,
    service: Annotated[
        str,
        typer.Option(
            "--service",
            help="The FHIR service's ARM resource id, as its records' resourceId (any case).",
            show_default=False,
        ),
    ] = "",
    archive: ArchiveOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    output_format: FormatOpt = Format.json,
    out_file: OutOpt = None,
    identifier: Annotated[
        str | None,
        typer.Option(
            "--identifier",
            help="SYSTEM|VALUE (an MRN): resolved to FHIR ids through --fhir-url; the report "
            "covers them and the identifier's own PatientRef.",
        ),
    ] = None,
    fhir_url: Annotated[
        str | None, typer.Option("--fhir-url", help="The FHIR service's URL, for --identifier.")
    ] = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
    key_file: KeyFileOpt = None,
) -> None:
    """Every access to one patient's record in the range, after verifying the archive."""
    configure_logging(cli_log_level())  # to stderr, with the PHI redaction: stdout is the report
    if (patient_id is None) == (identifier is None):
        raise fail("give the patient's FHIR id or --identifier SYSTEM|VALUE (one of them)")
    try:
        service_id = check_fhir_service(service)
    except ValueError as exc:
        raise fail(str(exc)) from None
    span = _range(since, until, PATIENT_DEFAULT_SPAN)
    pseudonymizer = tenant_pseudonymizer(key_file)
    if identifier is not None:
        refs = _identifier_refs(pseudonymizer, service_id, identifier, fhir_url)
    else:
        assert patient_id is not None
        refs = [fhir_id_ref(pseudonymizer, service_id, patient_id.strip())]
    store = open_store(archive, connection_string)
    report = patient_report(store, trusted_keys(public_key), refs, span)
    _deliver(report, output_format, out_file)


def _identifier_refs(
    pseudonymizer: Pseudonymizer, service_id: str, identifier: str, fhir_url: str | None
) -> list[str]:
    """The identifier's own PatientRefs first (the report's title), then those of the FHIR
    ids the service resolves it to."""
    from phiwatch.reports.identifier import resolve_identifier  # noqa: PLC0415 (azure-core)

    own = identifier_refs(pseudonymizer, identifier)
    if not own:
        raise fail("--identifier must be SYSTEM|VALUE")
    if fhir_url is None:
        raise fail("--identifier needs --fhir-url (the FHIR service that resolves it)")
    try:
        ids = resolve_identifier(fhir_url, identifier, _credential())
    except ValueError as exc:
        raise fail(str(exc)) from None
    except FhirSyncError as exc:
        raise fail(str(exc), 1) from None
    # Counts only: the ids are the patient's, and a terminal's scroll-back is no record.
    err.print(f"the identifier resolves to {len(ids)} FHIR patient id(s)", highlight=False)
    return list(dict.fromkeys([*own, *(fhir_id_ref(pseudonymizer, service_id, i) for i in ids)]))


@app.command("actor")
def actor_command(
    user: Annotated[str, typer.Argument(help="Object id, UPN or application (client) id.")],
    archive: ArchiveOpt = None,
    since: Annotated[
        str | None, typer.Option("--since", help=f"Range start (default: a day back). {TIME_HELP}")
    ] = None,
    until: UntilOpt = None,
    output_format: FormatOpt = Format.json,
    out_file: OutOpt = None,
    public_key: KeysOpt = None,
    connection_string: ConnectionOpt = None,
) -> None:
    """Everything one user or application did on PHI in the range, beside its usual volume."""
    configure_logging(cli_log_level())
    span = _range(since, until, ACTOR_DEFAULT_SPAN)
    store = open_store(archive, connection_string)
    report = actor_report(store, trusted_keys(public_key), user, span)
    _deliver(report, output_format, out_file)


# The auditor's page lives in its own module (its options are many).
app.command("hipaa")(hipaa_command)
