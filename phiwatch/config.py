"""All settings, read from the environment in one place (prefix `PHIWATCH_`).

In Azure, secrets arrive as Key Vault references in app settings (the Functions host
resolves `@Microsoft.KeyVault(...)` into the environment); nothing secret lives in code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @model_validator(mode="after")
    def _reorder_within_lateness(self) -> Settings:
        if self.reorder_seconds >= self.allowed_lateness_seconds:
            raise ValueError(
                "PHIWATCH_REORDER_SECONDS must be less than PHIWATCH_ALLOWED_LATENESS_SECONDS"
            )
        return self
