"""Parity: each streaming detection and its KQL twin in kql/ alert on the same entities.

One generated scenario (four incidents and four benign look-alikes) goes through the
streaming pipeline (replay: events.jsonl, alerts) and, as the PhiAccessEvents_CL rows Log
Analytics would hold (after the DCR transform), through each twin on a simulated Sentinel
schedule: a run every queryFrequency, each seeing only the rows with TimeGenerated up to
its `now`. The set of entities the twin alerts on over all runs (actor key, or the
diagnostic setting for diagnostics-disabled) must equal the stream's. A rule that is off by
default runs, in both, with the parameters its look-alike names (`configured`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from detections import detection_classes
from phiwatch.detect.grouping import actor_key, patient_key, source_address_key
from phiwatch.hosts.replay import replay
from phiwatch.model import AccessEvent, Alert
from phiwatch.rules.engine import KqlEngine
from phiwatch.rules.loader import RuleFile, discover, load_rule
from phiwatch.rules.testing import with_parameters
from phiwatch.samplegen import generate
from tests.scenario_inputs import privacy_files, scenario_settings

# Every streaming rule's twin over a generated day, window by window in the local engine:
# minutes on a busy two-core machine, beyond the suite-wide 300 s per test.
pytestmark = pytest.mark.timeout(2400)

# Keyed by a resource (the diagnostic setting, the tampered resource, the container), not the actor.
RESOURCE_RULES = {
    "diagnostics-disabled",
    "audit-tampering",
    "anonymous-phi-read",
    "log-source-silent",
}
# Streaming rules without a KQL twin, and why.
NO_TWIN = {
    # Its state is the PHI inventory file seeded into the stream plus every Activity change
    # since; a scheduled query over PhiAccessEvents_CL has no inventory (a watchlist would
    # be a second copy to keep in step) and no start-up baseline, so a twin could only
    # count changes, not coverage. The HIPAA report computes coverage from the archive.
    "attestation-coverage-drop",
}
# Keyed by the source address (the accounts tried are victims, not the actor).
ADDRESS_RULES = {"password-spray"}
# Keyed by the patient (the chart's many viewers are not one actor).
PATIENT_RULES = {"curious-access"}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> tuple[dict, list[AccessEvent], list[Alert]]:
    root = tmp_path_factory.mktemp("parity")
    generate(root / "gen", seed=11, records=3_000)
    truth = json.loads((root / "gen" / "ground_truth.json").read_text(encoding="utf-8"))
    settings = scenario_settings(truth, detection_params=scenario_params(truth))
    summary = replay(
        [root / "gen" / "logs"], root / "out", settings, **privacy_files(root / "gen", truth)
    )
    assert summary.problems == []
    events = [
        AccessEvent.model_validate_json(line)
        for line in (root / "out" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return truth, events, summary.alerts


def scenario_params(truth: dict) -> dict[str, dict]:
    """What the scenario's deployment sets (ground truth `detection_params`: the sanctioned
    exporters, the public container) and what the off-by-default rules' look-alikes name."""
    params: dict[str, dict] = {k: dict(v) for k, v in truth.get("detection_params", {}).items()}
    for rule_id, values in lookalike_params(truth).items():
        params.setdefault(rule_id, {}).update(values)
    return params


def lookalike_params(truth: dict) -> dict[str, dict]:
    """Parameters of rules that are off by default (break-glass-sign-in: no accounts until
    configured): the scenario's look-alike of such a rule says under which parameters it is
    the rule's incident, and parity runs both the stream and the twin (its `let` lines) so."""
    params: dict[str, dict] = {}
    for item in truth["benign_lookalikes"]:
        for rule_id, values in item.get("configure", {}).items():
            params.setdefault(rule_id, {}).update(values)
    return params


@pytest.fixture(scope="module")
def twins(scenario) -> dict[str, RuleFile]:
    detections = {cls.rule_id for cls in detection_classes()} - NO_TWIN
    params = lookalike_params(scenario[0])
    found: dict[str, RuleFile] = {}
    for rule in (load_rule(path) for path in discover()):
        rule_id = rule.template.rule_id
        if rule_id in detections:
            assert rule_id not in found, f"two twins of {rule_id}"
            if rule_id in params:
                query = with_parameters(rule.template.query, params[rule_id])
                template = rule.template.model_copy(update={"query": query})
                found[rule_id] = RuleFile(rule.path, rule.document, template)
            else:
                found[rule_id] = rule
    return found


def test_every_streaming_detection_has_a_kql_twin(twins):
    detections = {cls.rule_id: cls for cls in detection_classes()}
    assert set(twins) == set(detections) - NO_TWIN  # every other detection has one
    assert set(detections) >= NO_TWIN  # an exemption of a rule that is gone is stale
    for rule_id, rule in twins.items():
        cls = detections[rule_id]
        assert set(rule.template.tactics) == set(cls.tactics), rule_id
        assert set(rule.template.techniques) == {t.split(".")[0] for t in cls.techniques}
        assert rule.template.severity == cls.severity, rule_id
        assert rule.template.unsupported_locally is None, rule_id  # parity needs it to run


def streaming_keys(events: list[AccessEvent], alerts: list[Alert]) -> dict[str, dict[str, str]]:
    """rule id → {entity key: severity} from the stream's alerts; actor keys come from the
    alert's evidence events, as the detection computed them."""
    by_uid = {event.event_uid: event for event in events}
    keys: dict[str, dict[str, str]] = {}
    for alert in alerts:
        if alert.rule_id in RESOURCE_RULES:
            key = alert.target_resource_id or ""
        elif alert.rule_id in PATIENT_RULES:
            key = patient_key(by_uid[alert.evidence_event_uids[0]]) or ""
        elif alert.rule_id in ADDRESS_RULES:
            key = source_address_key(by_uid[alert.evidence_event_uids[0]]) or ""
        else:
            key = actor_key(by_uid[alert.evidence_event_uids[0]]) or ""
        keys.setdefault(alert.rule_id, {})[key] = alert.severity
    return keys


def configured(query: str, params: dict[str, object]) -> str:
    """The twin's query with the deployment's list parameters in its `let` lines (as an
    operator sets both): `let export_allow = dynamic([]);` → the scenario's values."""
    for name, value in params.items():
        if isinstance(value, list):
            query = re.sub(
                rf"let {name} = dynamic\(\[\]\);",
                f"let {name} = dynamic({json.dumps(value)});",
                query,
            )
    return query


def scheduled_keys(
    twins: dict[str, RuleFile],
    events: list[AccessEvent],
    params: dict[str, dict[str, object]] | None = None,
) -> dict[str, dict[str, set[str]]]:
    """rule id → {entity key: severities} over every simulated run of each twin."""
    ordered = sorted(events, key=lambda e: e.time_generated)
    start = ordered[0].time_generated.replace(minute=0, second=0, microsecond=0)
    # No twin fires on absence alone (log-source-silent needs other sources logging past
    # its wait), so once every twin has run past the last event (its frequency, and two
    # hours' margin for rules that read behind an ingestion delay) later runs only repeat:
    # running on to the longest lookback (curious-access's 9 days) would cost minutes.
    end = (
        ordered[-1].time_generated
        + max(r.template.frequency for r in twins.values())
        + timedelta(hours=2)
    )
    step = min(r.template.frequency for r in twins.values())
    found: dict[str, dict[str, set[str]]] = {rule_id: {} for rule_id in twins}
    with KqlEngine() as engine:
        prepared = {
            rule_id: engine.prepare(configured(r.template.query, (params or {}).get(rule_id, {})))
            for rule_id, r in twins.items()
        }
        loaded = 0
        now: datetime = start
        while now <= end + step:
            now += step
            visible = loaded
            while visible < len(ordered) and ordered[visible].time_generated <= now:
                visible += 1
            engine.load_records(ordered[loaded:visible])
            loaded = visible
            for rule_id, rule in twins.items():
                if (now - start) % rule.template.frequency != timedelta(0):
                    continue
                for row in prepared[rule_id].run(now).records():
                    if rule_id in RESOURCE_RULES:
                        key = row["TargetResourceId"]
                    else:
                        key = row["PatientKey"] if rule_id in PATIENT_RULES else row["ActorKey"]
                    severity = row.get("Severity") or rule.template.severity
                    found[rule_id].setdefault(key, set()).add(severity)
    return found


def test_the_same_entities_alert_in_the_stream_and_in_the_kql_twins(scenario, twins):
    truth, events, alerts = scenario
    stream = streaming_keys(events, alerts)
    scheduled = scheduled_keys(twins, events, scenario_params(truth))
    for rule_id in twins:
        assert stream.get(rule_id), f"the scenario raises no {rule_id}: parity is vacuous"
        assert set(scheduled[rule_id]) == set(stream.get(rule_id, {})), rule_id
    # The look-alikes (50 patients exactly, failed reads, token challenges, a setting deleted
    # with its resource) are quiet in both.
    # A look-alike is quiet for the rule it resembles (its actor may act in another rule's
    # incident: scenarios of different rules draw people from one population).
    for rule_id, keys in scheduled.items():
        # (A look-alike naming `configure` is an incident under the parameters parity runs.)
        resembling = [
            b
            for b in truth["benign_lookalikes"]
            if b["resembles_rule_id"] == rule_id and "configure" not in b
        ]
        lookalike_actors = {f"oid:{item.get('actor_user_id')}" for item in resembling}
        lookalike_settings = {item.get("target_resource_id") for item in resembling}
        lookalike_addresses = {f"ip:{item.get('src_ip')}" for item in resembling}
        quiet = lookalike_actors | lookalike_settings | lookalike_addresses
        assert not set(keys) & quiet, rule_id
    # Key Vault: the twin escalates to High exactly where the stream does.
    kv = "keyvault-failed-operations"
    for key, severity in stream[kv].items():
        assert max(scheduled[kv][key]) == severity, key


def test_a_twin_that_drifts_from_its_detection_breaks_parity(scenario, twins):
    _, events, alerts = scenario
    mra = twins["mass-record-access"]
    query = mra.template.query.replace("let threshold = 50;", "let threshold = 250;")
    drifted = RuleFile(mra.path, mra.document, mra.template.model_copy(update={"query": query}))
    scheduled = scheduled_keys({"mass-record-access": drifted}, events)
    assert scheduled["mass-record-access"] == {}  # 220 patients no longer fire
    assert streaming_keys(events, alerts)["mass-record-access"]
