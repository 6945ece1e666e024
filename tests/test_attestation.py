"""The attestation: which checks apply to which resource, how unknown is judged, the
diagnostics check from the logs, and the coverage per HIPAA control with failing resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from phiwatch.archive.archive import encode_lines, object_name
from phiwatch.archive.store import LocalStore
from phiwatch.attest.attestation import (
    CONTROLS,
    ControlCoverage,
    applicable_checks,
    attest,
    coverage_by_control,
    initial_state,
    logging_from_archive,
    logging_resources,
    owner_of,
)
from phiwatch.attest.inventory import Inventory, PhiResource
from phiwatch.detect.testing import access
from phiwatch.sources import activity, fhir, storage

SUB = "/subscriptions/sub-1/resourcegroups/rg-phi/providers"
FHIR = f"{SUB}/microsoft.healthcareapis/workspaces/ws/fhirservices/fhir-phi"
ARCHIVE = f"{SUB}/microsoft.storage/storageaccounts/stphiarchive"
DATA = f"{SUB}/microsoft.storage/storageaccounts/stphidata"
VAULT = f"{SUB}/microsoft.keyvault/vaults/kv-phi"

GOOD = {
    "public_network_disabled": True,
    "customer_managed_key": True,
    "private_endpoint": True,
    "diagnostics": True,
}


def estate() -> Inventory:
    return Inventory(
        (
            PhiResource(FHIR, "fhir", tier="restricted", **GOOD),
            PhiResource(ARCHIVE, "storage", archive=True, immutability_locked=True, **GOOD),
            # Standard tier: no customer-managed key needed, none held, still compliant.
            PhiResource(DATA, "storage", **{**GOOD, "customer_managed_key": False}),
            PhiResource(VAULT, "keyvault", tier="restricted", **GOOD),
        ),
        "test",
    )


def by_id(coverage: list[ControlCoverage]) -> dict[str, ControlCoverage]:
    return {c.control_id: c for c in coverage}


def test_which_checks_apply() -> None:
    fhir_service, archive, data, vault = estate()
    assert applicable_checks(fhir_service) == (
        "diagnostics",
        "public-network-off",
        "customer-managed-key",
        "private-endpoint",
    )
    assert "immutability-locked" in applicable_checks(archive)
    assert "customer-managed-key" in applicable_checks(archive)  # the archive always needs one
    assert "customer-managed-key" not in applicable_checks(data)  # standard tier
    assert "customer-managed-key" not in applicable_checks(vault)  # a vault holds the keys


def test_a_compliant_estate_is_fully_covered() -> None:
    coverage = coverage_by_control(estate(), attest(estate()))
    assert [c.control_id for c in coverage] == [c.control_id for c in CONTROLS]
    assert all(c.percentage == 100.0 and c.failing == () for c in coverage)
    covered = by_id(coverage)
    assert covered["164.312(b)"].applicable == 4
    assert covered["164.312(c)(1)"].applicable == 2  # the restricted FHIR service, the archive
    assert covered["164.312(c)(2)"].applicable == 1  # the archive only
    assert covered["164.312(e)(1)"].applicable == 4


def test_unknown_fails_and_failing_resources_are_named() -> None:
    _, archive, data, _ = estate()
    inventory = Inventory(
        (
            PhiResource(FHIR, "fhir", tier="restricted", public_network_disabled=True),
            archive,
            data,
            PhiResource(VAULT, "keyvault", **{**GOOD, "public_network_disabled": False}),
        ),
        "test",
    )
    covered = by_id(coverage_by_control(inventory))
    transmission = covered["164.312(e)(1)"]
    assert transmission.percentage == 50.0  # FHIR: no private endpoint known; vault: public
    assert transmission.failing == tuple(sorted([FHIR, VAULT]))
    assert transmission.failing_checks[FHIR] == ("private-endpoint",)
    assert transmission.failing_checks[VAULT] == ("public-network-off",)
    assert covered["164.312(b)"].failing == (FHIR,)  # diagnostics unknown
    assert covered["164.312(c)(1)"].failing == (FHIR,)  # restricted, key unknown
    assert covered["164.312(c)(1)"].percentage == 50.0
    assert covered["164.312(c)(2)"].percentage == 100.0


def test_an_estate_of_nothing_applicable_is_not_a_failure() -> None:
    only_vault = Inventory((PhiResource(VAULT, "keyvault", **GOOD),), "test")
    integrity = by_id(coverage_by_control(only_vault))["164.312(c)(1)"]
    assert (integrity.applicable, integrity.percentage, integrity.ratio) == (0, 100.0, 1.0)


def test_diagnostics_judged_from_the_logs_when_given() -> None:
    inventory = estate()
    events = [
        access("2026-03-02 10:00:00+00:00", product=fhir.PRODUCT, target=FHIR.upper()),
        # A container's read belongs to its account.
        access(
            "2026-03-02 10:01:00+00:00",
            product=storage.PRODUCT,
            target=f"{DATA}/blobservices/default/containers/lab",
        ),
        # The control plane logs whatever the resource's diagnostics are: not evidence.
        access("2026-03-02 10:02:00+00:00", product=activity.PRODUCT, target=VAULT),
        access("2026-03-02 10:03:00+00:00", product=fhir.PRODUCT, target=f"{SUB}/other/x"),
    ]
    logging = logging_resources(events, inventory)
    assert logging == {FHIR, DATA}
    audit = by_id(coverage_by_control(inventory, attest(inventory, logging)))["164.312(b)"]
    assert audit.failing == tuple(sorted([ARCHIVE, VAULT]))
    assert audit.percentage == 50.0
    # Without logs, the inventory's Diagnostics column decides.
    assert initial_state(inventory.resources[1])["diagnostics"] is True


def test_owner_is_the_nearest_inventory_ancestor() -> None:
    ids = [DATA, f"{DATA}/blobservices/default"]
    assert owner_of(f"{DATA}/blobservices/default/containers/x", ids) == ids[1]
    assert owner_of(DATA.upper(), ids) == DATA
    assert owner_of(f"{DATA}2", ids) is None  # a name prefix is not a parent


def test_diagnostics_from_the_archived_events_of_the_period(tmp_path) -> None:
    inventory = estate()
    store = LocalStore(tmp_path / "archive")
    read = access("2026-03-02 10:00:00+00:00", product=fhir.PRODUCT, target=FHIR)
    control = access("2026-03-02 10:00:01+00:00", product=activity.PRODUCT, target=DATA)
    late = access("2026-03-02 12:00:00+00:00", product=storage.PRODUCT, target=VAULT)
    lines = [e.model_dump_json(by_alias=True).encode() for e in (read, control)]
    hour = datetime(2026, 3, 2, 10, tzinfo=UTC)
    store.put_if_absent(object_name("events", hour, "b1"), encode_lines(lines))
    later = [late.model_dump_json(by_alias=True).encode()]
    store.put_if_absent(object_name("events", hour.replace(hour=12), "b2"), encode_lines(later))
    until = hour + timedelta(hours=2)  # 10:00 to 12:00: the 12:00 object is outside
    assert logging_from_archive(store, inventory, hour, until) == {FHIR}
    assert logging_from_archive(store, inventory, hour, until + timedelta(hours=1)) == {FHIR, VAULT}
