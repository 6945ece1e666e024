"""The routing contract across partitions (docs/routing.md): with test-only rules keyed by
patient, source address, credential, resource + category and subscription loaded next to the
shipped ones, normalize publishes each event once per grouping a rule needs, every key of
every grouping lives on one phi-events partition, and 1, 2, 4 and 32 partitions raise, in
stream, exactly the alerts of the single-process replay. Routing every copy by actor instead
(the previous contract) splits the patient-keyed rule's keys and loses its alerts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

import detections
from phiwatch.config import Settings
from phiwatch.detect.grouping import Grouping, actor_key
from phiwatch.hosts.replay import replay
from phiwatch.model import AccessEvent
from phiwatch.phievents.routing import Router
from phiwatch.samplegen import generate
from tests.conftest import TEST_KEY_HEX, TEST_SIGNING_SEED_HEX
from tests.distributed_sim import Faults, scenario_bodies
from tests.synthetic_rules import SYNTHETIC_IDS, registered, with_credentials
from tests.test_distributed_simulation import (
    FAULTS,
    RECORDS,
    SEED,
    Scenario,
    assert_same_alerts,
    comparable,
    delay_some,
    moves,
    run,
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("groupings")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PHIWATCH_PSEUDONYM_KEY", TEST_KEY_HEX)
        env.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
        env.setenv("PHIWATCH_HOME", str(root / "home"))
        # Every test of this module runs with the synthetic rules and credentials: the
        # replay here, and normalize and detect in the simulation.
        with registered(env), with_credentials(env):
            generate(root / "gen", seed=SEED, records=RECORDS)
            summary = replay([root / "gen" / "logs"], root / "replay", Settings())
            assert summary.problems == []
            lines = (root / "replay" / "events.jsonl").read_bytes().splitlines()
            yield Scenario(
                truth=json.loads((root / "gen" / "ground_truth.json").read_text()),
                privacy={},  # the synthetic rules' scenario: replayed without privacy inputs
                bodies=scenario_bodies([root / "gen" / "logs"]),
                alerts={a.alert_id: a for a in summary.alerts},
                records=summary.counts.records,
                event_uids={json.loads(line)["EventUid"] for line in lines},
                events=[AccessEvent.model_validate_json(line) for line in lines],
            )


def rules_raised(scenario: Scenario) -> Counter[str]:
    return Counter(a.rule_id for a in scenario.alerts.values())


def test_every_synthetic_rule_raises_in_the_replay(scenario: Scenario) -> None:
    # Otherwise the comparisons below would hold for nothing.
    raised = rules_raised(scenario)
    assert set(raised) >= SYNTHETIC_IDS, raised
    assert raised["test-patient-readers"] >= 5  # charts opened by two people, over the day
    shipped = {"mass-record-access", "keyvault-failed-operations", "diagnostics-disabled"}
    assert shipped <= set(raised)


@pytest.mark.parametrize("partitions", [1, 2, 4, 32])
def test_every_grouping_meets_on_one_partition_and_raises_the_replays_alerts(
    scenario: Scenario,
    settings: Settings,
    tmp_path: Path,
    blob_container: ContainerClient,
    partitions: int,
) -> None:
    faults = Faults(**FAULTS, moves=moves(scenario), delay=delay_some(0.1, 10, 50))
    result = run(scenario, settings, tmp_path, blob_container, partitions, faults)

    assert_same_alerts(result, scenario)
    # Each key of each grouping on exactly one partition: the rule sees all of it there.
    assert {len(p) for p in result.key_partitions.values()} == {1}
    assert {g for g, _ in result.key_partitions} == {
        "actor",
        "patient",
        "source_address",
        "credential",
        "resource_category",
        "subscription",
    }
    # What reached phi-events is what some rule needs, no more: the rest is not published.
    needed = scenario.needed_uids()
    scenario.assert_published(result.event_uids)
    router = Router(detections.load_detections())
    copies = sum(len(router.routes(e)) for e in scenario.events)
    print(
        f"P={partitions}: {len(scenario.event_uids)} events, {len(needed)} published, "
        f"{copies} copies ({copies / scenario.records:.3f} per record); "
        f"forwarded (with redeliveries) {dict(sorted(result.forwarded.items()))}"
    )


class ActorOnly(Router):
    """The previous contract: every copy keyed by its actor, whatever its grouping."""

    def routes(self, event: AccessEvent) -> list[tuple[Grouping, str]]:
        return [(grouping, actor_key(event) or key) for grouping, key in super().routes(event)]


def test_routing_by_actor_only_splits_the_patient_rule_and_loses_its_alerts(
    scenario: Scenario, settings: Settings, tmp_path: Path, blob_container: ContainerClient
) -> None:
    router = ActorOnly(detections.load_detections())
    result = run(scenario, settings, tmp_path, blob_container, 32, Faults(), router=router)

    expected = {k: a for k, a in scenario.alerts.items() if a.rule_id == "test-patient-readers"}
    got = {k: a for k, a in result.alerts.items() if a.rule_id == "test-patient-readers"}
    # A chart's readers are different actors, hashed to different partitions: no partition
    # sees two of them, so the alerts are lost (or shrunk, where two collide on one).
    print(f"patient-keyed alerts: replay {len(expected)}, routed by actor {len(got)}")
    assert len(got) < len(expected)
    assert all(a.event_count <= expected[k].event_count for k, a in got.items())
    # The actor-keyed rules are unaffected: routing by actor is their contract.
    for alert_id, alert in scenario.alerts.items():
        if alert.rule_id == "mass-record-access":
            assert comparable(result.alerts[alert_id]) == comparable(alert)
