"""All settings, read from the environment in one place (prefix `PHIWATCH_`).

In Azure, secrets arrive as Key Vault references in app settings (the Functions host
resolves `@Microsoft.KeyVault(...)` into the environment); nothing secret lives in code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Identifier shapes pseudonymised inside the names and paths copied into events (secret
# names, resource ids, user agents...): a secret or resource can be named after a patient.
# Matched case-insensitively within one segment (between `/`, `?`, `&`, `=`, spaces, ...);
# GUIDs and 32-hex versions are never touched (phiwatch.identifier_redaction).
DEFAULT_IDENTIFIER_PATTERNS: tuple[str, ...] = (
    r"MRN[-_:#]?\d+",  # medical record numbers: MRN12345, mrn-4471
    r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)",  # US SSN shape
    r"(?<!\d)\d{7,}(?!\d)",  # long digit runs: MRNs, member and account numbers
    r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail addresses
)


_APP_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")


def default_home() -> Path:
    return Path.home() / ".phiwatch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHIWATCH_", extra="ignore")

    # Pseudonymisation key for patient ids (hex or base64, at least 32 bytes).
    pseudonym_key: SecretStr | None = None
    # Where the local embedded default keeps state it generates (the pseudonym key).
    home: Path = Field(default_factory=default_home)
    # Generating a key is only right for a single local user; in Azure every instance must
    # share the Key Vault key, so the Function App refuses to start without one.
    allow_generated_key: bool = False

    # Detection parameters, e.g. {"mass-record-access": {"threshold": 80}}.
    detection_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    allowed_lateness_seconds: int = Field(default=900, ge=1)
    # Events wait this long (in event time, behind the watermark) so detections see them in
    # event-time order: within it, any arrival order gives the same alerts and AlertIds.
    # Must be below the allowed lateness; 0 turns the buffer off.
    reorder_seconds: int = Field(default=120, ge=0)

    max_record_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A batch failing after its raw put (in its own handling, never an archive or hub outage)
    # this many times in a row is set aside as `batch-quarantined` so its partition moves on
    # (phiwatch/quarantine.py). Retries are cheap and a transient fault rarely repeats five
    # times; a poison record repeats every time.
    poison_batch_attempts: int = Field(default=5, ge=1)

    # The diagnostics hub's generation, part of every batch name: bump it (1, 2, ...) when the
    # hub is re-created or a Geo-DR failover makes the secondary primary, since sequence
    # numbers start again. (Names carry the first message's enqueued time as well.)
    eventhub_generation: str = Field(default="", pattern=r"^[A-Za-z0-9]{0,16}$")

    # Regular expressions (a JSON list) whose matches inside copied names and paths become
    # keyed `pt_` tokens; the list replaces the defaults, `[]` turns them off.
    identifier_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IDENTIFIER_PATTERNS)
    )

    # Storage blob logs (phiwatch/sources/storage.py). A blob path is never copied into an
    # event: by default only a keyed hash of it. Regular expressions (a JSON list), each with
    # exactly one group, the patient identifier inside a blob path (`(MRN\d+)`); a path
    # one matches keeps its shape with the identifier as its PatientRef, and the event gets
    # that PatientRef. Searched in the blob path under the container, as written (no flags).
    storage_patient_patterns: list[str] = Field(default_factory=list)
    # Containers holding PHI, as `account` (all its containers) or `account/prefix` (the
    # containers whose name starts with prefix). Unset: every container counts as PHI.
    storage_phi_containers: list[str] = Field(default_factory=list)

    # Archive manifest signing: a Key Vault EC P-256 key URL (Azure), or an Ed25519 seed
    # (hex, base64 or PEM). The local default generates one in PHIWATCH_HOME.
    archive_signing_key_url: str | None = None
    archive_signing_key: SecretStr | None = None

    # Archive location for the Functions host: an Azure Blob container URL (production,
    # reached with the managed identity), or a local directory. The CLI uses --out instead.
    archive_url: str | None = None
    # Local development against Azurite only: a connection string (the well-known dev key).
    # In Azure, leave it unset: the managed identity reaches the container.
    archive_connection_string: SecretStr | None = None
    archive_dir: Path | None = None
    # The container must carry a version-level immutability policy (set by infra). Turn off
    # only for a test container.
    archive_require_immutability: bool = True
    # Whether the archive's retention policy has been locked (infra sets it from the same
    # parameter that stops the template from rewriting the policy). The Blob data plane does
    # not say whether a container policy is locked, so health and the startup warning report
    # `unlocked` from this until the operator has locked it (infra/README.md).
    archive_immutability_locked: bool = False

    # Microsoft Sentinel through the Logs Ingestion API: the DCR's ingestion endpoint (or the
    # DCE) and the DCR's immutable id. Both set = deliver; unset = archive only. The managed
    # identity needs Monitoring Metrics Publisher on the DCR.
    dcr_endpoint: str | None = None
    dcr_immutable_id: str | None = None
    dcr_events_stream: str = "Custom-PhiAccessEvents"
    dcr_alerts_stream: str = "Custom-PhiAlerts"
    dcr_health_stream: str = "Custom-PhiPipelineHealth"
    # Rows Sentinel did not take yet wait here: a Blob container (mutable; never the archive)
    # or, for local runs, a directory. A connection string only for Azurite.
    outbox_url: str | None = None
    outbox_dir: Path | None = None
    outbox_connection_string: SecretStr | None = None
    # Time Sentinel delivery may take per batch, outbox backlog and new rows together: what
    # does not go out in time waits in the outbox, so a slow or hanging Sentinel never holds
    # up the archive path (issue #12). The outbox holds at most `outbox_max_entries` pending
    # entries (beyond, new rows are refused, counted and logged: the archive holds them);
    # past `outbox_backlog_alert_entries` an `outbox-backlog` alert is raised once an hour.
    sentinel_seconds_per_batch: float = Field(default=5.0, gt=0)
    # Rows go out compact (docs/sentinel-ingestion.md) and the DCR transform rebuilds every
    # column; the DCR accepts both forms. False sends the full rows: for a code deployment
    # that reaches a workspace before its DCR is updated (an older DCR drops compact keys).
    sentinel_compact_rows: bool = True
    outbox_max_entries: int = Field(default=20_000, ge=1)
    outbox_backlog_alert_entries: int = Field(default=1_000, ge=1)

    # The diagnostics hub `normalize` reads (its trigger binds %PHIWATCH_EVENTHUB_NAME%); the
    # name goes into archive batch names, so it is read from here, not from each message.
    eventhub_name: str | None = None

    # Two-stage scaling (README "Scaling"): with a phi-events hub, `normalize` publishes every
    # event there keyed by its routing key and `detect` runs the detections, keeping state per
    # partition in the state container (mutable; never the archive). Without one, detections
    # run inside `normalize`, which is only correct for a diagnostics hub with one partition.
    phi_events_hub: str | None = None
    phi_events_namespace: str | None = None  # <namespace>.servicebus.windows.net
    phi_events_consumer_group: str = "phiwatch"
    state_url: str | None = None  # https://<account>.blob.core.windows.net/phiwatch-state
    state_dir: Path | None = None  # local runs only
    state_connection_string: SecretStr | None = None  # Azurite only

    # Scheduled KQL rules (kql/ rules with a `phiwatch.run` block): where they run.
    rules_workspace_id: str | None = None  # Log Analytics workspace (customer) id
    rules_adx_cluster_url: str | None = None  # https://<cluster>.<region>.kusto.windows.net
    rules_adx_database: str | None = None

    # /api/health: the time each check may take, and the age of a partition's last
    # successful batch above which health answers 503 (unset: ages are reported only; a
    # quiet tenant has no batches, so send a canary on a schedule when setting this).
    health_check_timeout_seconds: float = Field(default=5.0, gt=0)
    health_max_batch_age_seconds: int | None = Field(default=None, ge=1)

    log_level: str = "INFO"

    # FHIR: application (client) ids, a JSON list, whose X-MS-AZUREFHIR-AUDIT-* headers name
    # the actor (an EHR calling FHIR on behalf of its signed-in clinician). Any other
    # application's headers are kept as its claim (ClaimedUserId/ClaimedUsername), never
    # the actor: a header is whatever the caller chose to send.
    fhir_trusted_audit_apps: list[str] = Field(default_factory=list)

    # Patient privacy (docs/privacy.md): the workforce roster and the patient index, each a
    # CSV blob read with the managed identity (Storage Blob Data Reader on its container;
    # `?versionid=` pins one version). Checked for a new version or ETag at most every
    # `privacy_check_seconds`. Either may be unset: what needs it stays off, and says so at
    # start-up. `phiwatch replay --roster/--patients` reads local files instead.
    roster_url: str | None = None
    patients_url: str | None = None
    privacy_check_seconds: float = Field(default=300.0, gt=0)
    # The FHIR service (ARM id) of a patient index without a FhirService column.
    patients_fhir_service: str | None = None
    # Local runs against Azurite only; in Azure the managed identity reads the blobs.
    privacy_connection_string: SecretStr | None = None
    # Application (client) ids, comma-separated, whose accesses are explained by being
    # theirs (an integration engine, a nightly extract): such an access raises no
    # relationship. An EHR that names its signed-in clinician (PHIWATCH_FHIR_TRUSTED_AUDIT_APPS)
    # belongs here only if none of its users' accesses should ever raise one.
    privacy_allow_applications: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("privacy_allow_applications", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.split(",")
        return value

    @field_validator("fhir_trusted_audit_apps", "privacy_allow_applications")
    @classmethod
    def _app_ids(cls, apps: list[str], info: ValidationInfo) -> list[str]:
        ids = [app.strip().lower() for app in apps if app.strip()]
        for app in ids:
            if not _APP_ID.match(app):
                setting = f"PHIWATCH_{(info.field_name or '').upper()}"
                raise ValueError(f"{setting}: entries must be app ids")
        return list(dict.fromkeys(ids))

    @field_validator("identifier_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"PHIWATCH_IDENTIFIER_PATTERNS: {pattern!r} is not a regular expression ({exc})"
                ) from exc
            if compiled.match(""):
                raise ValueError(
                    f"PHIWATCH_IDENTIFIER_PATTERNS: {pattern!r} matches the empty string"
                )
        return patterns

    @field_validator("storage_patient_patterns")
    @classmethod
    def _storage_patterns_have_one_group(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"PHIWATCH_STORAGE_PATIENT_PATTERNS: {pattern!r} is not a regular "
                    f"expression ({exc})"
                ) from exc
            if compiled.groups != 1:
                raise ValueError(
                    f"PHIWATCH_STORAGE_PATIENT_PATTERNS: {pattern!r} has {compiled.groups} "
                    "groups; it needs exactly one, the patient identifier"
                )
            if compiled.match(""):
                raise ValueError(
                    f"PHIWATCH_STORAGE_PATIENT_PATTERNS: {pattern!r} matches the empty string"
                )
        return patterns

    @field_validator("storage_phi_containers")
    @classmethod
    def _phi_containers_name_an_account(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not entry.strip().removeprefix("/").split("/", 1)[0]:
                raise ValueError(
                    f"PHIWATCH_STORAGE_PHI_CONTAINERS: {entry!r} names no storage account "
                    "(write account or account/container-prefix)"
                )
        return entries

    @model_validator(mode="after")
    def _reorder_within_lateness(self) -> Settings:
        if self.reorder_seconds >= self.allowed_lateness_seconds:
            raise ValueError(
                "PHIWATCH_REORDER_SECONDS must be less than PHIWATCH_ALLOWED_LATENESS_SECONDS"
            )
        return self


# The command line reads two settings before (or without) building Settings: its log level
# (quieter than a host's: WARNING unless asked) and the archive to verify. Read here, so no
# other module reads the environment.
CLI_LOG_LEVEL = "WARNING"


def cli_log_level() -> str:
    return os.environ.get("PHIWATCH_LOG_LEVEL", CLI_LOG_LEVEL)


def env_archive_dir() -> str | None:
    return os.environ.get("PHIWATCH_ARCHIVE_DIR") or None


def env_node_modules() -> str | None:
    """Where `phiwatch rules lint` finds Kusto.Language (PHIWATCH_NODE_MODULES)."""
    return os.environ.get("PHIWATCH_NODE_MODULES") or None
