"""keyvault-failed-operations: one caller fails at Key Vault again and again.

event_count per caller over a sliding window, then a temporal step: if the same caller
succeeds at reading a secret or key while the alert is open, the probing worked and the
alert is raised to High.
"""

from __future__ import annotations

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import (
    Detection,
    DetectionContext,
    DetectionParams,
    actor_key,
    actor_label,
    hhmm,
    window_anchor,
)
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent, Alert

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


def _is_failure(event: AccessEvent) -> bool:
    if event.event_result != "Failure":
        return False
    # 401 on Authentication is the normal token challenge before every first call.
    return not (event.operation == "Authentication" and event.event_result_details == "401")


class KeyVaultFailedOperations(Detection):
    rule_id = "keyvault-failed-operations"
    rule_name = "Repeated failed Key Vault operations"
    severity = "Medium"
    tactics = ("CredentialAccess", "Discovery")
    techniques = ("T1555", "T1580")
    group_by = "actor"
    planes = frozenset({"data"})
    state_attrs = ("failures",)
    Params = Params

    def __init__(self, params: Params, lateness: float) -> None:
        super().__init__(params, lateness)
        self.min_failures = params.min_failures
        self.width = params.window_minutes * 60
        self.failures = KeyedWindows(self.width)

    def applies(self, event: AccessEvent) -> bool:
        return event.event_product == "Key Vault" and (
            _is_failure(event)
            or (event.event_result == "Success" and event.operation in SECRET_READS)
        )

    def observe(self, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        key = actor_key(event)
        if key is None:
            return
        if event.event_result == "Success":
            self._success(key, event, time, ctx)
            return
        window = self.failures.window(key, time, ctx.watermark - self.lateness)
        kept = (
            event.operation,
            event.event_result_details,
            event.src_ip_addr,
            event.target_resource_id,
        )
        if not window.add(time, event.event_uid, kept):
            return
        open_alert = ctx.book.open_for(self.rule_id, key, time, self.width)
        if open_alert is not None:
            open_alert.add(time, event)
            _count_operation(open_alert, event.operation, event.event_result_details)
            open_alert.window_end = max(open_alert.window_end, time)
            ctx.book.changed(open_alert)
            return
        entries = window.span(time - self.width, time)
        if len(entries) < self.min_failures:
            return
        state = ctx.book.open(
            self.rule_id,
            key,
            anchor=window_anchor(time, self.width),
            severity=self.severity,
            detected_at=ctx.arrival,
            window=(entries[0][0], entries[-1][0]),
        )
        state.extra["min_failures"] = self.min_failures
        for entry_time, uid, (operation, status, ip, target) in entries:
            if uid != event.event_uid:
                state.add_entry(entry_time, uid, ip=ip, target=target)
                _count_operation(state, operation, status)
        state.add(time, event)
        _count_operation(state, event.operation, event.event_result_details)

    def _success(self, key: str, event: AccessEvent, time: float, ctx: DetectionContext) -> None:
        open_alert = ctx.book.open_for(self.rule_id, key, time, self.width)
        if open_alert is None or time < open_alert.first_time:
            return
        if "success_uid" not in open_alert.extra:
            open_alert.severity = "High"
            open_alert.extra["success_uid"] = event.event_uid
            open_alert.extra["success_operation"] = event.operation
            open_alert.extra["success_time"] = time
            open_alert.add_evidence(time, event.event_uid)
            ctx.book.changed(open_alert)

    def expire(self, before: float) -> None:
        self.failures.expire(before)

    def state_size(self) -> int:
        return len(self.failures)

    def render(self, state: AlertState) -> Alert:
        who = actor_label(state)
        failures = state.event_count
        minutes = max(1, round((state.last_time - state.first_time) / 60))
        ops = state.extra.get("operations", {})
        op_text = ", ".join(
            f"{op} x{n}" for op, n in sorted(ops.items(), key=lambda i: (-i[1], i[0]))
        )
        vault = (state.top_target or "").rsplit("/", 1)[-1] or "a key vault"
        reasons = [
            f"{failures} failed Key Vault operations between {hhmm(state.first_time)} and "
            f"{hhmm(state.last_time)}; the threshold is {state.extra['min_failures']} within "
            f"{round(self.width / 60)} minutes.",
            f"Failed operations: {op_text}. Authentication 401 token challenges are not counted.",
        ]
        title = f"Repeated failed Key Vault operations by {who} on {vault}"
        if "success_uid" in state.extra:
            reasons.append(
                f"Then succeeded at {state.extra['success_operation']} at "
                f"{hhmm(state.extra['success_time'])}: the probing may have reached secret "
                "material, so severity is High."
            )
            title += ", then a successful secret read"
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


def _count_operation(state: AlertState, operation: str, status: str | None) -> None:
    ops = state.extra.setdefault("operations", {})
    label = f"{operation} ({status})" if status else operation
    ops[label] = ops.get(label, 0) + 1


DETECTION = KeyVaultFailedOperations
