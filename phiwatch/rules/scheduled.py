"""The Function App's scheduled rules: run the `kql/` rules marked `phiwatch.run` when due,
and send what they find through the normal alert path.

Per invocation: load the rules, read which window each last ran (one small JSON document in
the state store, replaced with its etag), `run_due` against the configured Log Analytics
workspace and/or ADX database, archive the alerts (create-only: a re-run's alert objects are
named by rule and window, so a repeated run adds nothing), emit them to Sentinel, then save
the windows that ran. A crash before that save repeats the window: the same AlertIds again,
which the incident rule deduplicates. Losing the document only repeats windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from phiwatch.archive.alerts import archive_alerts
from phiwatch.archive.archive import Archive
from phiwatch.batch import BatchResult, Sink, emit_to
from phiwatch.detect.state_store import StateConflict, StateStore
from phiwatch.model import Alert
from phiwatch.rules.loader import KQL_DIR, discover, load_rules
from phiwatch.rules.runner import AdxBackend, LogAnalyticsBackend, QueryBackend, RunReport, run_due
from phiwatch.rules.template import Backend

log = structlog.get_logger("phiwatch.rules")

LAST_RUNS_KEY = "rules-runner/last-runs.json"


class ScheduledRules:
    def __init__(
        self,
        *,
        backends: Mapping[Backend, QueryBackend],
        archive: Archive,
        state_store: StateStore,
        sinks: Sequence[Sink] = (),
        rules_dir: Path = KQL_DIR,
    ) -> None:
        paths = discover(root=rules_dir)
        loaded, problems = load_rules(paths)
        if problems:
            # CI lints every rule; a broken one in a deployed package is a packaging bug.
            raise ValueError(f"{len(problems)} rule(s) in {rules_dir} do not load: {problems[0]}")
        self.rules = [r.template for r in loaded]
        self.backends = dict(backends)
        self.archive = archive
        self.state_store = state_store
        self.sinks = list(sinks)

    @property
    def scheduled(self) -> list[str]:
        return [r.name for r in self.rules if r.runs_in_phiwatch]

    def run(self, now: datetime) -> RunReport:
        found = self.state_store.load(LAST_RUNS_KEY)
        etag = found.etag if found else None
        last_runs = {
            k: datetime.fromisoformat(v)
            for k, v in (orjson.loads(found.data) if found else {}).items()
        }
        report = run_due(self.rules, self.backends, now, last_runs)
        if report.alerts:
            self._archive(report)
            self._emit(report.alerts)
        if report.ran:
            last_runs.update(report.ran)
            data = orjson.dumps({k: v.isoformat() for k, v in sorted(last_runs.items())})
            try:
                self.state_store.save(LAST_RUNS_KEY, data, etag)
            except StateConflict:
                # Another instance ran the same windows at the same time: same alerts, same
                # ids; its record of the runs stands.
                log.warning("scheduled rules ran twice at once; keeping the other record")
        log.info(
            "scheduled rules run",
            ran=len(report.ran),
            alerts=len(report.alerts),
            failed=sorted(report.failed),
        )
        return report

    def _archive(self, report: RunReport) -> None:
        by_rule: dict[str, list[Alert]] = {}
        for alert in report.alerts:
            by_rule.setdefault(alert.rule_id, []).append(alert)
        for rule_id, alerts in sorted(by_rule.items()):
            end = max(a.detected_at for a in alerts)
            batch = f"{rule_id}-{end:%Y%m%dT%H%M%S}"
            archive_alerts(self.archive, stream=f"rules:{rule_id}", base=batch, alerts=alerts)

    def _emit(self, alerts: list[Alert]) -> None:
        # Archived already: Sentinel's outbox retries what it cannot take now.
        emit_to(self.sinks, BatchResult.of_alerts(alerts))


def backends_from(settings: Any) -> dict[Backend, QueryBackend]:
    """Log Analytics and/or ADX clients from settings, signed in with the app's identity."""
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only in Azure

    credential = DefaultAzureCredential()
    backends: dict[Backend, QueryBackend] = {}
    if settings.rules_workspace_id:
        from azure.monitor.query import LogsQueryClient  # noqa: PLC0415

        backends["log-analytics"] = LogAnalyticsBackend(
            LogsQueryClient(credential), settings.rules_workspace_id
        )
    if settings.rules_adx_cluster_url and settings.rules_adx_database:
        from azure.kusto.data import KustoClient, KustoConnectionStringBuilder  # noqa: PLC0415

        kcsb = KustoConnectionStringBuilder.with_azure_token_credential(
            settings.rules_adx_cluster_url, credential
        )
        backends["adx"] = AdxBackend(KustoClient(kcsb), settings.rules_adx_database)
    return backends
