"""`phiwatch roster`: the privacy inputs (docs/privacy.md) outside the pipeline.
`sync-patients` builds the patient index from the FHIR service's Patient resources;
`watchlists` writes the pseudonymised Sentinel watchlists of the loaded inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from phiwatch.commands.keys import tenant_pseudonymizer
from phiwatch.commands.output import err, fail, out
from phiwatch.config import Settings, cli_log_level
from phiwatch.logs import configure_logging
from phiwatch.privacy.csvrows import InputRefused, LoadReport
from phiwatch.privacy.fhir_sync import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FhirSyncError,
    check_fhir_service,
    check_fhir_url,
    sync_patients,
)
from phiwatch.privacy.loaded import directory
from phiwatch.privacy.patients import PatientIndex, load_patients
from phiwatch.privacy.roster import Roster, load_roster
from phiwatch.privacy.watchlists import LARGE_MAX_BYTES, RAW_CONTENT_MAX_BYTES, write_watchlists

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The workforce roster and patient index (docs/privacy.md).",
)


def _print_errors(report: LoadReport) -> None:
    # Row and column only: a RowError never holds the value (csvrows.py).
    for error in report.errors:
        err.print(f"[yellow]{report.source}:[/] {escape(str(error))}", highlight=False)
    if report.errors_dropped:
        err.print(f"[yellow]{report.source}:[/] {report.errors_dropped:,} more bad rows")


def watchlists_command(
    roster: Annotated[
        Path | None,
        typer.Option("--roster", help="Workforce roster CSV.", exists=True, dir_okay=False),
    ] = None,
    patients: Annotated[
        Path | None,
        typer.Option("--patients", help="Patient index CSV.", exists=True, dir_okay=False),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the CSVs.")] = Path(
        "watchlists"
    ),
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The tenant pseudonym key (hex or base64), when not in PHIWATCH_PSEUDONYM_KEY "
            "or PHIWATCH_HOME/pseudonym.key.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    fhir_service: Annotated[
        str | None,
        typer.Option(
            "--fhir-service",
            help="FHIR service ARM id for an index without a FhirService column "
            "(default PHIWATCH_PATIENTS_FHIR_SERVICE).",
        ),
    ] = None,
) -> None:
    """Write phiwatch-workforce.csv and phiwatch-patients.csv: the inputs pseudonymised with
    the tenant key, for the Sentinel watchlists (infra/sentinel/watchlists.bicep). They hold
    pseudonyms and flags only; the raw files never go to Sentinel."""
    configure_logging(cli_log_level())
    if roster is None and patients is None:
        raise fail("give --roster, --patients or both")
    pseudonymizer = tenant_pseudonymizer(
        key_file, missing_hint=" (the key replay uses is PHIWATCH_HOME/pseudonym.key)"
    )
    tagger = pseudonymizer.privacy_tagger()
    service = fhir_service or Settings().patients_fhir_service
    loaded_roster: Roster | None = None
    loaded_patients: PatientIndex | None = None
    try:
        if roster is not None:
            with roster.open("rb") as handle:
                loaded_roster = load_roster(handle, tagger)
        if patients is not None:
            with patients.open("rb") as handle:
                loaded_patients = load_patients(
                    handle, pseudonymizer, tagger, default_fhir_service=service
                )
    except InputRefused as exc:
        raise fail(str(exc), code=1) from None
    except OSError as exc:
        raise fail(f"cannot read an input ({type(exc).__name__})", code=1) from None
    reports = [r.report for r in (loaded_roster, loaded_patients) if r is not None]
    for report in reports:
        _print_errors(report)
    written = write_watchlists(directory(loaded_roster, loaded_patients), out_dir)
    out.print(f"pseudonym key id {pseudonymizer.key_id}", highlight=False)
    for report, file in zip(reports, written, strict=True):
        out.print(
            f"{file.alias}: {file.rows:,} rows ({report.rows - report.loaded:,} of "
            f"{report.rows:,} input rows refused or repeated), {file.size:,} bytes → "
            f"{escape(str(file.path))}",
            highlight=False,
        )
        if file.size > LARGE_MAX_BYTES:
            err.print(
                f"[bold red]{file.alias}:[/] over {LARGE_MAX_BYTES:,} bytes, Sentinel's limit "
                "for a watchlist file even from Azure Storage",
                highlight=False,
            )
        elif file.needs_large_watchlist:
            err.print(
                f"[yellow]{file.alias}:[/] over {RAW_CONTENT_MAX_BYTES:,} bytes: too large "
                "for rawContent; upload it to storage and create the watchlist from its "
                "SAS URI (infra/sentinel/README.md, Watchlists)",
                highlight=False,
            )


app.command("watchlists")(watchlists_command)


def _credential() -> TokenCredential:
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 (slow import)

    return DefaultAzureCredential()


@app.command("sync-patients")
def sync_patients_command(
    fhir_url: Annotated[
        str,
        typer.Option(
            "--fhir-url",
            help="The FHIR service's URL (https://<workspace>-<service>.fhir."
            "azurehealthcareapis.com).",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The patient index CSV to write (mode 0600: it holds raw names, addresses "
            "and MRNs). Replaced only when the sync completes.",
            show_default=False,
        ),
    ],
    fhir_service: Annotated[
        str,
        typer.Option(
            "--fhir-service",
            help="The FHIR service's ARM resource id, the id its diagnostic records carry "
            "(every row's FhirService).",
            show_default=False,
        ),
    ],
    page_size: Annotated[
        int,
        typer.Option(
            "--page-size",
            min=1,
            max=MAX_PAGE_SIZE,
            help="Patients per search page (_count).",
        ),
    ] = DEFAULT_PAGE_SIZE,
) -> None:
    """Write the patient index from every Patient resource of a FHIR service.

    Signs in with DefaultAzureCredential (the identity needs 'FHIR Data Reader' on the
    service). Care teams are not on the Patient resource: the column is left empty (an EHR
    extract supplies it). Logs and output carry counts only.
    """
    configure_logging(cli_log_level())
    try:
        check_fhir_url(fhir_url)
        check_fhir_service(fhir_service)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not out_file.parent.is_dir():
        raise fail(f"--out: no directory {out_file.parent}")
    try:
        report = sync_patients(fhir_url, out_file, fhir_service, _credential(), page_size=page_size)
    except FhirSyncError as exc:
        raise fail(f"{exc}; {out_file} is unchanged", 1) from None
    out.print(f"wrote {report.summary()} to {out_file}", markup=False, highlight=False)
