"""`phiwatch roster`: the privacy inputs (docs/privacy.md). `sync-patients` builds the
patient index from the FHIR service's Patient resources."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from phiwatch.commands.output import fail, out
from phiwatch.config import cli_log_level
from phiwatch.logs import configure_logging
from phiwatch.privacy.fhir_sync import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FhirSyncError,
    check_fhir_service,
    check_fhir_url,
    sync_patients,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

app = typer.Typer(
    no_args_is_help=True,
    help="The privacy inputs: build the patient index from the FHIR service.",
)


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
