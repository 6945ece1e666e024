"""Routing (phiwatch/phievents/routing.py): which copies of an event normalize publishes to
`phi-events`, one per grouping a loaded rule needs, keyed by the event's key in it; and the
registry's load-time check of what routing and dispatch rely on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detections
from detections.diagnostics_disabled import DiagnosticsDisabled
from phiwatch.detect.grouping import GROUPINGS, Grouping, key_of
from phiwatch.model import AccessEvent, Plane
from phiwatch.phievents.routing import (
    Router,
    RoutingError,
    check_grouping,
    legacy_grouping,
    plane_of,
)
from tests.harness import batches_of, make_pipeline
from tests.records import FHIR_ID, KV_ID, SUB, activity, fhir, keyvault

OID = "33333333-aaaa-4bbb-8ccc-000000000003"


def events_of(records, tmp_path):
    pipeline, _ = make_pipeline(tmp_path)
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


@dataclass(frozen=True)
class Rule:
    """A stand-in with what routing reads of a rule."""

    rule_id: str
    group_by: Grouping
    planes: frozenset[Plane] = frozenset({"data", "control"})
    wants: Callable[[AccessEvent], bool] = lambda _event: True

    def applies(self, event: AccessEvent) -> bool:
        return self.wants(event)


def routes(grouping: Grouping, event: AccessEvent) -> list[tuple[Grouping, str]]:
    return Router([Rule(f"by-{grouping}", grouping)]).routes(event)


@pytest.fixture
def read(tmp_path) -> AccessEvent:
    (event,) = events_of([fhir(0)], tmp_path)
    return event


def test_actor_key_is_the_object_id_then_the_app_then_the_address(read):
    assert plane_of(read) == "data"
    assert routes("actor", read) == [("actor", f"oid:{OID}")]
    anonymous = read.model_copy(update={"actor_user_id": None, "acting_app_id": "app-1"})
    assert routes("actor", anonymous) == [("actor", "app:app-1")]
    by_address = anonymous.model_copy(update={"acting_app_id": None})
    assert routes("actor", by_address) == [("actor", "ip:10.20.30.40")]
    # No actor at all: no actor-grouped rule can count it, so no copy for that grouping.
    assert routes("actor", by_address.model_copy(update={"src_ip_addr": None})) == []


def test_patient_key_is_the_pseudonym(read):
    assert read.patient_ref and read.patient_ref.startswith("pr_")
    assert routes("patient", read) == [("patient", f"pat:{read.patient_ref}")]
    assert routes("patient", read.model_copy(update={"patient_ref": None})) == []


def test_source_address_key_is_the_address_whoever_the_actor(read):
    assert routes("source_address", read) == [("source_address", "ip:10.20.30.40")]
    other_user = read.model_copy(update={"actor_user_id": "someone-else"})
    assert routes("source_address", other_user) == routes("source_address", read)
    assert routes("source_address", read.model_copy(update={"src_ip_addr": None})) == []


def test_credential_key_is_the_credential_hash(read):
    # No source fills CredentialId yet: without it there is nothing to key by.
    assert read.credential_id is None and routes("credential", read) == []
    sas = read.model_copy(update={"credential_id": "ck_5f0e"})
    assert routes("credential", sas) == [("credential", "cred:ck_5f0e")]


def test_resource_category_key_is_the_resource_in_any_case_and_its_category(read):
    assert routes("resource_category", read) == [
        ("resource_category", f"rc:{FHIR_ID.lower()}|AuditLogs")
    ]
    upper = read.model_copy(update={"target_resource_id": FHIR_ID.upper()})
    assert routes("resource_category", upper) == routes("resource_category", read)
    other = read.model_copy(update={"source_category": "AuditEvent"})
    assert routes("resource_category", other) != routes("resource_category", read)


def test_control_plane_events_of_one_subscription_share_a_key(tmp_path):
    resource_group = KV_ID.split("/PROVIDERS/")[0]
    events = events_of(
        [
            activity(0),
            activity(
                5,
                operation="MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE",
                resource_id=resource_group,
            ),
            activity(9, operation="MICROSOFT.KEYVAULT/VAULTS/DELETE", resource_id=KV_ID),
        ],
        tmp_path,
    )
    assert {plane_of(e) for e in events} == {"control"}
    # A settings delete and the deletes of its parents must meet: one key per subscription.
    assert {key for e in events for _, key in routes("subscription", e)} == {f"sub:{SUB.lower()}"}


def test_an_event_goes_once_to_every_grouping_a_rule_needs_it_in(read):
    router = Router(
        [
            Rule("a", "actor"),
            Rule("b", "actor"),  # two rules of one grouping: still one copy
            Rule("c", "patient"),
            Rule("d", "source_address", wants=lambda e: e.event_result == "Failure"),
            Rule("e", "subscription", planes=frozenset({"control"})),
        ]
    )
    assert router.routes(read) == [
        ("actor", f"oid:{OID}"),
        ("patient", f"pat:{read.patient_ref}"),
    ]
    failed = read.model_copy(update={"event_result": "Failure"})
    assert [g for g, _ in router.routes(failed)] == ["actor", "patient", "source_address"]


def test_a_rule_of_another_plane_is_not_asked(read):
    asked: list[str] = []

    def wants(event: AccessEvent) -> bool:
        asked.append(event.event_uid)
        return True

    router = Router([Rule("control-only", "subscription", frozenset({"control"}), wants)])
    assert router.routes(read) == [] and asked == []


def test_the_shipped_rules_route_what_they_need_and_drop_the_rest(tmp_path):
    router = Router(detections.load_detections())
    # anonymous-phi-read keys a container by its resource and category; password-spray an
    # address; curious-access a patient.
    assert router.groupings == {
        "actor",
        "patient",
        "subscription",
        "resource_category",
        "source_address",
    }
    patient_read, failed_read, kv_denied, kv_listed, setting_delete = events_of(
        [
            fhir(0, path="Patient/p1"),
            fhir(1, path="Patient/p2", result="Failed", status=403),
            keyvault(2, status=403),
            keyvault(3, operation="SecretList"),
            activity(4),
        ],
        tmp_path,
    )
    subscription = ("subscription", f"sub:{SUB.lower()}")
    # mass-record-access by actor; curious-access by patient (no patient index: no
    # explanation known, so the reader counts as a viewer); log-source-silent hears of the
    # service's minute.
    assert router.routes(patient_read) == [
        ("actor", f"oid:{OID}"),
        ("patient", f"pat:{patient_read.patient_ref}"),
        subscription,
    ]
    assert router.presence(patient_read, "actor") is None
    assert router.presence(patient_read, "patient") is None
    assert router.presence(patient_read, "subscription") is not None
    # keyvault-failed-operations, and the vault's minute.
    assert [g for g, _ in router.routes(kv_denied)] == ["actor", "subscription"]
    # diagnostics-disabled needs the delete itself, and so does log-source-silent.
    assert router.routes(setting_delete) == [subscription]
    assert router.presence(setting_delete, "subscription") is None
    # A refused FHIR read is a viewer for curious-access, and its source's minute.
    assert router.routes(failed_read) == [
        ("patient", f"pat:{failed_read.patient_ref}"),
        subscription,
    ]
    assert router.presence(failed_read, "subscription") is not None
    # No rule needs a successful listing but as its source's minute.
    assert router.routes(kv_listed) == [subscription]
    assert router.presence(kv_listed, "subscription") is not None


def test_untagged_messages_are_read_with_the_previous_routing(read, tmp_path):
    (setting_delete,) = events_of([activity(0)], tmp_path)
    assert legacy_grouping(read) == "actor"
    assert legacy_grouping(setting_delete) == "subscription"


def test_an_event_from_an_unknown_product_has_no_plane(read):
    with pytest.raises(RoutingError, match="no source declares product 'Teams'"):
        plane_of(read.model_copy(update={"event_product": "Teams"}))


def test_an_archived_event_from_before_credential_id_still_validates(read):
    doc = orjson.loads(read.to_json())
    del doc["CredentialId"]
    old = AccessEvent.model_validate(doc)
    assert old == read and old.credential_id is None


# ----------------------------------------------------------------------------- property


addresses = st.sampled_from([None, "10.0.0.1", "10.0.0.2"])
events: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    actor_user_id=st.sampled_from([None, "oid-1", "oid-2"]),
    acting_app_id=st.sampled_from([None, "app-1"]),
    src_ip_addr=addresses,
    patient_ref=st.sampled_from([None, "pr_1", "pr_2"]),
    credential_id=st.sampled_from([None, "ck_1"]),
    event_result=st.sampled_from(["Success", "Failure"]),
)
rule_sets = st.lists(
    st.tuples(
        st.sampled_from(GROUPINGS),
        st.sets(st.sampled_from(["data", "control"]), min_size=1),
        st.sampled_from(["Success", "Failure", None]),  # what the rule applies to
    ),
    max_size=8,
)


# `read` is only copied from, never changed: sharing it across examples is safe.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=events, specs=rule_sets)
def test_every_rule_that_applies_gets_its_key_and_nothing_else_is_sent(read, fields, specs):
    event = read.model_copy(update=fields)
    rules = [
        Rule(
            f"r{i}",
            grouping,
            frozenset(planes),  # type: ignore[arg-type]
            lambda e, want=want: want is None or e.event_result == want,
        )
        for i, (grouping, planes, want) in enumerate(specs)
    ]
    sent = Router(rules).routes(event)
    groupings = [g for g, _ in sent]
    assert len(groupings) == len(set(groupings))  # one copy per grouping
    for grouping, key in sent:
        assert key == key_of(grouping, event)  # the one key definition
    for rule in rules:
        needs = "data" in rule.planes and rule.applies(event)
        key = key_of(rule.group_by, event)
        # The contract: a rule that needs the event gets it on its key's partition ...
        if needs and key is not None:
            assert (rule.group_by, key) in sent
    # ... and no copy goes where no rule needs it.
    for grouping, _ in sent:
        assert any(
            r.group_by == grouping and "data" in r.planes and r.applies(event) for r in rules
        )


# ----------------------------------------------------------------------------- registry


def test_registry_refuses_a_grouping_no_route_serves(monkeypatch):
    # "resource" was the previous version's name; a per-resource rule keys by
    # resource_category (or subscription, when it relates a resource to its parents).
    monkeypatch.setattr(DiagnosticsDisabled, "group_by", "resource")
    with pytest.raises(detections.RegistryError) as caught:
        detections.load_detections()
    assert str(caught.value) == (
        "diagnostics-disabled: group_by 'resource' is not a grouping phi-events routes by "
        "(choose from ['actor', 'patient', 'source_address', 'credential', "
        "'resource_category', 'subscription'])"
    )


def test_registry_refuses_a_rule_without_a_grouping(monkeypatch):
    monkeypatch.delattr(DiagnosticsDisabled, "group_by")
    with pytest.raises(detections.RegistryError, match="group_by None is not a grouping"):
        detections.load_detections()


def test_registry_refuses_a_detection_that_declares_no_planes(monkeypatch):
    monkeypatch.setattr(DiagnosticsDisabled, "planes", frozenset())
    with pytest.raises(detections.RegistryError, match="declares no planes"):
        detections.load_detections()


def test_registry_refuses_an_unknown_plane(monkeypatch):
    monkeypatch.setattr(DiagnosticsDisabled, "planes", frozenset({"control", "identity"}))
    with pytest.raises(detections.RegistryError) as caught:
        detections.load_detections()
    assert str(caught.value) == (
        "diagnostics-disabled: unknown plane(s) ['identity'] (choose from ['data', 'control'])"
    )


def test_a_plane_given_as_a_string_is_one_plane():
    check_grouping("r", "data", "actor")
    with pytest.raises(RoutingError, match="unknown plane"):
        check_grouping("r", "dat", "actor")


def test_every_shipped_detection_reads_only_events_of_its_planes(tmp_path):
    # The engine offers an event only to detections of its plane; a detection whose
    # `applies` wanted other events would silently see nothing.
    events = events_of(
        [fhir(0), keyvault(1, status=403), keyvault(2, secret="db"), activity(3)], tmp_path
    )
    for detection in detections.load_detections():
        for event in events:
            if detection.applies(event):
                assert plane_of(event) in detection.planes, (detection.rule_id, event.operation)
