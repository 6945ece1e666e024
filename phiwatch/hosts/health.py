"""The health endpoint's answer: what is configured, whether the archive and the state
store answer (each check bounded in time), and how old each partition's last batch is.
Never a value from the configuration or the data.
"""

from __future__ import annotations

import functools
from typing import Any

import phiwatch
from phiwatch.archive.blob_store import ArchiveContainerMissing
from phiwatch.config import Settings
from phiwatch.detect.state_store import (
    StateStoreError,
)
from phiwatch.hosts.activity import ACTIVITY, Activity, CheckResult, run_checks
from phiwatch.wiring import (
    SETTINGS_ERRORS,
    ConfigurationError,
    blob_archive,
    immutability_state,
    settings_problem,
    state_store,
)

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def health_status(activity: Activity = ACTIVITY) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for the health endpoint: what is configured, whether the archive
    and the state store answer (each check bounded in time), and how old each partition's
    last successful batch is. Never a value; 503 names the failing check."""
    try:
        settings = Settings()
    except SETTINGS_ERRORS as exc:
        failed: dict[str, Any] = {"status": "misconfigured", "version": phiwatch.__version__}
        return 503, failed | {"problem": settings_problem(exc)}
    archive = settings.archive_url is not None or settings.archive_dir is not None
    secret = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else ""
    # A Key Vault reference the platform could not resolve arrives as its own literal text.
    unresolved = secret.startswith(KEY_VAULT_REFERENCE)
    key = bool(secret) and not unresolved
    two_stage = bool(settings.phi_events_hub)
    state = settings.state_url is not None or settings.state_dir is not None
    # Without phi-events, detections run inside normalize: right for one partition only.
    detection = "two-stage" if two_stage else "in-process (one diagnostics partition only)"
    problems: list[str] = []
    if unresolved:
        problems.append("PHIWATCH_PSEUDONYM_KEY: the Key Vault reference did not resolve")
    elif not key:
        problems.append(
            "PHIWATCH_PSEUDONYM_KEY is not set: set the secret and deploy with "
            "pseudonymKeyVersion (infra/README.md, Keys)"
        )
    if two_stage and not state:
        problems.append("PHIWATCH_STATE_URL: detect needs a state container")
    if not archive:
        problems.append("PHIWATCH_ARCHIVE_URL: no archive configured")
    checks: dict[str, Any] = {}
    if archive:
        checks["archive"] = functools.partial(_check_archive, settings)
    if two_stage and state:
        checks["state"] = functools.partial(_check_state, settings)
    results = run_checks(checks, settings.health_check_timeout_seconds)
    batches, stale = activity.report(settings.health_max_batch_age_seconds)
    problems += [r.problem for r in results.values() if r.problem]
    problems += stale
    warnings = [r.warning for r in results.values() if r.warning]
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "version": phiwatch.__version__,
        "archive_configured": archive,
        "pseudonym_key_configured": key,
        "detection": detection,
        "state_configured": state,
        "checks": {name: dict(result.detail) for name, result in results.items()},
        "batches": batches,
    }
    if "archive" in results:
        body["immutability"] = results["archive"].detail.get("immutability", "unknown")
    if warnings:
        body["warnings"] = warnings
    if problems:
        body["problem"] = problems[0]
        body["problems"] = problems
    return (503 if problems else 200), body


def _check_archive(settings: Settings) -> CheckResult:
    """Reachable, the container exists, and its immutability: one container GET."""
    if not settings.archive_url:
        found = settings.archive_dir is not None and settings.archive_dir.is_dir()
        detail = {"status": "ok" if found else "missing", "immutability": "local directory"}
        problem = None if found else "archive: PHIWATCH_ARCHIVE_DIR does not exist"
        return CheckResult(found, detail, problem)
    try:
        store = blob_archive(settings, require_immutability=False)
    except ArchiveContainerMissing:
        return CheckResult(False, {"status": "missing"}, "archive: the container does not exist")
    state = immutability_state(settings, store)
    detail = {"status": "ok", "immutability": state}
    if state == "none":
        text = "archive: the container is not immutable (no version-level retention policy)"
        if settings.archive_require_immutability:
            return CheckResult(False, detail, text)
        return CheckResult(True, detail, warning=text)
    if state == "unlocked":
        return CheckResult(
            True,
            detail,
            warning="archive: the immutability policy is unlocked; lock it for production "
            "(infra/README.md, 'Immutability: unlocked or locked')",
        )
    return CheckResult(True, detail)


# A key no snapshot ever has (dot-free, valid): loading it proves the container answers.
_HEALTH_PROBE_KEY = "health/probe.json.gz"


def _check_state(settings: Settings) -> CheckResult:
    try:
        state_store(settings).load(_HEALTH_PROBE_KEY)
    except (ConfigurationError, StateStoreError) as exc:
        return CheckResult(False, {"status": "failed"}, f"state: {exc}")
    return CheckResult(True, {"status": "ok"})
