"""Routing keys (which events meet on one `phi-events` partition) and the registry's check
that every detection's grouping is served by them."""

from __future__ import annotations

import pytest

import detections
from detections.diagnostics_disabled import DiagnosticsDisabled
from phiwatch.routing import RoutingError, plane_of, routing_key, subscription_of
from tests.harness import batches_of, make_pipeline
from tests.records import KV_ID, SUB, activity, fhir, keyvault


def events_of(records, tmp_path):
    pipeline, _ = make_pipeline(tmp_path)
    return [e for b in batches_of(records) for e in pipeline.process(b).events]


def test_data_plane_events_are_keyed_by_actor_object_id_then_app_then_address(tmp_path):
    oid = "33333333-aaaa-4bbb-8ccc-000000000003"
    user_read, kv_read = events_of([fhir(0), keyvault(1, status=403)], tmp_path)
    assert plane_of(user_read) == plane_of(kv_read) == "data"
    assert routing_key(user_read) == f"oid:{oid}"
    anonymous = user_read.model_copy(update={"actor_user_id": None, "acting_app_id": "app-1"})
    assert routing_key(anonymous) == "app:app-1"
    by_address = anonymous.model_copy(update={"acting_app_id": None})
    assert routing_key(by_address) == "ip:10.20.30.40"
    nobody = by_address.model_copy(update={"src_ip_addr": None})
    assert routing_key(nobody) == f"res:{user_read.target_resource_id}"


def test_control_plane_events_of_one_subscription_share_a_key(tmp_path):
    resource_group = KV_ID.split("/providers/")[0].split("/PROVIDERS/")[0]
    setting_delete, group_delete, vault_delete = events_of(
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
    assert {plane_of(e) for e in (setting_delete, group_delete, vault_delete)} == {"control"}
    # A settings delete and the deletes of its parents must meet: one key per subscription.
    keys = {routing_key(e) for e in (setting_delete, group_delete, vault_delete)}
    assert keys == {f"sub:{SUB.lower()}"}


def test_subscription_of_reads_arm_ids_in_any_case():
    assert subscription_of(f"/SUBSCRIPTIONS/{SUB.upper()}/resourceGroups/rg") == SUB.lower()
    assert subscription_of("/providers/Microsoft.Management/managementGroups/mg") == ""
    assert subscription_of(None) == ""


def test_an_event_from_an_unknown_product_has_no_plane(tmp_path):
    (event,) = events_of([fhir(0)], tmp_path)
    with pytest.raises(RoutingError, match="no source declares product 'Teams'"):
        plane_of(event.model_copy(update={"event_product": "Teams"}))


def test_registry_refuses_actor_grouping_over_control_plane_events(monkeypatch):
    # Control-plane events are routed by subscription: one actor's changes spread over
    # partitions, so a per-actor count of them would be split and never fire.
    monkeypatch.setattr(DiagnosticsDisabled, "group_by", "actor")
    with pytest.raises(detections.RegistryError) as caught:
        detections.load_detections()
    assert str(caught.value) == (
        "diagnostics-disabled: group_by 'actor' cannot be served by a routing key: "
        "control-plane events are routed by subscription, which serves "
        "['resource', 'subscription']"
    )


def test_registry_refuses_a_detection_that_declares_no_planes(monkeypatch):
    monkeypatch.setattr(DiagnosticsDisabled, "planes", frozenset())
    with pytest.raises(detections.RegistryError, match="declares no planes"):
        detections.load_detections()


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
