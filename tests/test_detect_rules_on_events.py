"""The three shipped detections on AccessEvents, through the rule harness (the same rules
run end to end from raw records in tests/test_detect_*.py)."""

from __future__ import annotations

from datetime import timedelta

from phiwatch.detect.alert_book import alert_id
from phiwatch.detect.grouping import actor_key
from phiwatch.detect.testing import RuleHarness, access, instant
from phiwatch.detect.times import window_anchor
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS

T0 = instant("2026-03-02 10:00:00+01:00")
VAULT = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.keyvault/vaults/kv-phi"
SETTING = f"{VAULT}/providers/microsoft.insights/diagnosticsettings/to-hub"


def seconds(n: float):
    return T0 + timedelta(seconds=n)


def test_mass_record_access_one_alert_above_the_threshold():
    reads = [access(seconds(10 * i), actor="bob", patient=f"p{i}") for i in range(5)]
    rule = RuleHarness("mass-record-access", {"threshold": 3})
    (alert,) = rule.feed(*reads).alerts
    crossing = seconds(30).timestamp()  # the 4th distinct patient
    assert alert.alert_id == alert_id(
        "mass-record-access", actor_key(reads[0]), window_anchor(crossing, 600)
    )
    assert alert.title == "Mass patient record access by bob: 5 patients in 1 min"
    assert alert.reasons[0].endswith("the threshold is 3 patients in any 10-minute window.")
    assert alert.distinct_patient_count == 5


def test_mass_record_access_failed_reads_do_not_count():
    reads = [access(seconds(i), patient=f"p{i}", result="Failure") for i in range(10)]
    assert RuleHarness("mass-record-access", {"threshold": 3}).feed(*reads).alerts == []


def kv(at: float, *, result: str = "Failure", status: str = "403", operation: str = "SecretGet"):
    return access(
        seconds(at),
        actor="carol",
        product="Key Vault",
        operation=operation,
        result=result,  # type: ignore[arg-type]
        details=status,
        target=VAULT,
    )


def test_keyvault_failures_then_a_secret_read_is_raised_to_high():
    rule = RuleHarness("keyvault-failed-operations")
    (alert,) = rule.feed(*[kv(10 * i) for i in range(5)]).alerts
    assert alert.severity == "Medium"
    (alert,) = rule.feed(kv(60, result="Success", status="200")).alerts
    assert alert.severity == "High"
    assert alert.title == (
        "Repeated failed Key Vault operations by carol on kv-phi, then a successful secret read"
    )
    assert alert.reasons[1] == (
        "Failed operations: SecretGet (403) x5. Authentication 401 token challenges are not "
        "counted."
    )


def test_keyvault_authentication_challenges_are_not_failures():
    challenges = [kv(i, operation="Authentication", status="401") for i in range(10)]
    assert RuleHarness("keyvault-failed-operations").feed(*challenges).alerts == []


def arm(at: float, target: str, *, event_type: str = "Delete", setting: bool = True):
    return access(
        seconds(at),
        actor="mallory",
        product="Azure Resource Manager",
        event_type=event_type,  # type: ignore[arg-type]
        sub_type=DIAGNOSTIC_SETTINGS if setting else None,
        operation="x",
        target=target,
    )


def test_diagnostics_delete_fires_after_the_grace_unless_the_vault_went_too():
    delete = arm(0, SETTING)
    rule = RuleHarness("diagnostics-disabled").feed(delete).advance_to(seconds(599))
    assert rule.alerts == []
    (alert,) = rule.advance_to(seconds(600)).alerts
    assert alert.alert_id == alert_id("diagnostics-disabled", SETTING, delete.event_uid)
    assert alert.title == "Diagnostic setting 'to-hub' was deleted from kv-phi by mallory"
    explained = RuleHarness("diagnostics-disabled").feed(delete, arm(30, VAULT, setting=False))
    assert explained.advance_to(seconds(3600)).alerts == []


def test_diagnostics_turned_off_fires_at_once():
    (alert,) = (
        RuleHarness("diagnostics-disabled").feed(arm(0, SETTING, event_type="Disable")).alerts
    )
    assert alert.reasons[1] == "A settings change is never a side effect of deleting the resource."
