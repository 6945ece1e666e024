"""keyvault-failed-operations: one caller fails at Key Vault again and again.

event_count per caller over a sliding window, then a sequence step: if the same caller
succeeds at reading a secret or key while the alert is open, the probing worked and the
alert is raised to High.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.kinds import EventCount, Then
from phiwatch.detect.snapshot import snapshot_class, upgrades
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import keyvault

# Reads that hand the caller secret material (values, key use, backups).
SECRET_READS = frozenset(
    {
        "SecretGet",
        "SecretBackup",
        "KeyGet",
        "KeyBackup",
        "KeyDecrypt",
        "KeyUnwrap",
        "KeyRelease",
        "CertificateGet",
    }
)


class Params(DetectionParams):
    min_failures: int = Field(default=5, ge=1)
    window_minutes: float = Field(default=5, gt=0)


@snapshot_class
@dataclass(slots=True)
class KeyVaultFacts:
    min_failures: int  # in force when the alert opened
    operations: dict[str, int] = field(default_factory=dict)  # "SecretGet (403)" → count
    success_uid: str | None = None  # the secret read that followed, if any
    success_operation: str | None = None
    success_time: float | None = None
    # What was tried and through which application: "secret db-password" → count, app → count
    # (at most MAX_NAMED of each; the rest counted in `others`), and what the success read.
    objects: dict[str, int] = field(default_factory=dict)
    apps: dict[str, int] = field(default_factory=dict)
    others: int = 0
    success_object: str | None = None
    success_app: str | None = None


# Names kept per alert: enough for an analyst, bounded for the detect state.
MAX_NAMED = 20
_KINDS = {"secrets": "secret", "keys": "key", "certificates": "certificate"}


@upgrades(KeyVaultFacts)
def _facts_before_names(fields: dict[str, object]) -> dict[str, object]:
    """Facts snapshotted before alerts named the objects and the app have none of them."""
    for name, default in (("objects", {}), ("apps", {}), ("others", 0)):
        fields.setdefault(name, default)
    fields.setdefault("success_object", None)
    fields.setdefault("success_app", None)
    return fields


def object_label(event: AccessEvent) -> str | None:
    """`secret db-password` from the object's URI (…/secrets/db-password/<version>)."""
    text = event.object
    if not text:
        return None
    parts = text.split("?", 1)[0].rstrip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part in _KINDS:
            return f"{_KINDS[part]} {parts[i + 1]}"
    return text


def app_label(event: AccessEvent) -> str | None:
    if event.acting_app_name and event.acting_app_id:
        return f"{event.acting_app_name} ({event.acting_app_id})"
    return event.acting_app_name or event.acting_app_id


def _bump(counts: dict[str, int], name: str | None, facts: KeyVaultFacts) -> None:
    if name is None:
        return
    if name in counts or len(counts) < MAX_NAMED:
        counts[name] = counts.get(name, 0) + 1
    else:
        facts.others += 1


def is_failure(event: AccessEvent) -> bool:
    if event.event_result != "Failure":
        return False
    # 401 on Authentication is the normal token challenge before every first call.
    return not (event.operation == "Authentication" and event.event_result_details == "401")


def is_secret_read(event: AccessEvent) -> bool:
    return event.event_result == "Success" and event.operation in SECRET_READS


def operation_label(event: AccessEvent) -> str:
    status = event.event_result_details
    return f"{event.operation} ({status})" if status else event.operation


def failure_note(event: AccessEvent) -> tuple[str, str | None, str | None]:
    return (operation_label(event), object_label(event), app_label(event))


def count_operation(facts: KeyVaultFacts, note: str | tuple[str, str | None, str | None]) -> None:
    # A plain label is a note kept in a window before notes named the object and the app.
    label, obj, app = (note, None, None) if isinstance(note, str) else note
    facts.operations[label] = facts.operations.get(label, 0) + 1
    _bump(facts.objects, obj, facts)
    _bump(facts.apps, app, facts)


def record_success(facts: KeyVaultFacts, event: AccessEvent, time: float) -> bool:
    if facts.success_uid is not None:
        return False
    facts.success_uid, facts.success_operation, facts.success_time = (
        event.event_uid,
        event.operation,
        time,
    )
    facts.success_object, facts.success_app = object_label(event), app_label(event)
    return True


class KeyVaultFailedOperations(Detection[Params]):
    rule_id = "keyvault-failed-operations"
    rule_name = "Repeated failed Key Vault operations"
    severity = "Medium"
    tactics = ("CredentialAccess", "Discovery")
    techniques = ("T1555", "T1580")
    group_by = "actor"
    planes = frozenset({"data"})
    products = frozenset({keyvault.PRODUCT})
    Params = Params
    Facts = KeyVaultFacts

    def applies(self, event: AccessEvent) -> bool:
        return event.event_product == keyvault.PRODUCT and (
            is_failure(event) or is_secret_read(event)
        )

    def declare(self) -> EventCount:
        params = self.params
        return EventCount(
            window=params.window_minutes * 60,
            at_least=params.min_failures,
            where=is_failure,
            note=failure_note,
            fold=count_operation,
            facts=lambda event: KeyVaultFacts(min_failures=params.min_failures),
            then=Then(where=is_secret_read, record=record_success, severity="High"),
        )

    def render(self, state: AlertState) -> Alert:
        facts: KeyVaultFacts = state.facts
        who = actor_label(state)
        failures = state.event_count
        minutes = max(1, round((state.last_time - state.first_time) / 60))
        ops = facts.operations
        op_text = ", ".join(
            f"{op} x{n}" for op, n in sorted(ops.items(), key=lambda i: (-i[1], i[0]))
        )
        vault = (state.top_target or "").rsplit("/", 1)[-1] or "a key vault"
        width = round(self.params.window_minutes * 60 / 60)
        reasons = [
            f"{failures} failed Key Vault operations between {hhmm(state.first_time)} and "
            f"{hhmm(state.last_time)}; the threshold is {facts.min_failures} within "
            f"{width} minutes.",
            f"Failed operations: {op_text}. Authentication 401 token challenges are not counted.",
        ]
        title = f"Repeated failed Key Vault operations by {who} on {vault}"
        if facts.success_uid is not None and facts.success_time is not None:
            reasons.append(
                f"Then succeeded at {facts.success_operation} at "
                f"{hhmm(facts.success_time)}: the probing may have reached secret "
                "material, so severity is High."
            )
            title += ", then a successful secret read"
        reasons.extend(_named(facts))
        return self.base_alert(
            state,
            title=title,
            description=(
                f"{who} failed {failures} Key Vault operations on {vault} within {minutes} "
                "minutes. Repeated denials from one caller suggest enumeration or use of "
                "stolen credentials; check the caller's role assignments and recent sign-ins."
            ),
            reasons=reasons,
        )


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} x{c}" for n, c in sorted(counts.items(), key=lambda i: (-i[1], i[0])))


def _named(facts: KeyVaultFacts) -> list[str]:
    """What was tried, through which application, and what the success read: an analyst
    rotates that secret first."""
    lines = []
    if facts.objects:
        more = f" and {facts.others} more" if facts.others else ""
        lines.append(f"Secrets and keys tried: {_listed(facts.objects)}{more}.")
    if facts.apps:
        lines.append(f"Through application: {_listed(facts.apps)}.")
    if facts.success_uid is not None and (facts.success_object or facts.success_app):
        what = facts.success_object or "an object"
        how = f" through {facts.success_app}" if facts.success_app else ""
        lines.append(f"The successful read was of {what}{how}.")
    return lines


DETECTION = KeyVaultFailedOperations
