"""storage-mass-download: one identity downloads many blobs, or many bytes, of PHI containers.

Per actor (grouping `actor`: Entra object id, else app id, else the SAS/key credential
hash, else the address), over a sliding event-time window: content reads (GetBlob,
CopyBlobSource, QueryBlobContents, ReadFile) that succeeded on a container holding PHI
(`phi_category` not none: the containers `PHIWATCH_STORAGE_PHI_CONTAINERS` names, or every
container when none is configured). It fires at `distinct_blobs` distinct blobs (the object
`account/container/bh_<hash>` is one blob) or `bytes` bytes returned, whichever comes first.
The Functions runtime's own containers (`azure-webjobs-*`: host state, Event Hubs
checkpoints) never count; `allow_identities` (object ids, app ids or `cr_` credential ids)
names backup and replication. A burst raises one alert; later reads enrich it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import count_in, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, window_anchor
from phiwatch.detect.windows import Entry, KeyedWindows
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import storage

GIB = 1024**3
CONTENT_READS = frozenset({"GetBlob", "CopyBlobSource", "QueryBlobContents", "ReadFile"})
# Events keep the operation as the record spelled it, and spellings vary (SetContainerAcl).
_CONTENT_READS = frozenset(op.lower() for op in CONTENT_READS)
RUNTIME_PREFIXES = ("azure-webjobs-",)  # Functions host state and Event Hubs checkpoints


class Params(DetectionParams):
    distinct_blobs: int = Field(default=50, ge=2, le=1_000_000)
    bytes: int = Field(default=GIB, ge=1024**2)
    window_minutes: float = Field(default=15, gt=0, le=24 * 60)
    allow_identities: tuple[str, ...] = Field(
        default=(), description="object ids, app ids or credential ids (cr_...) never counted"
    )


@snapshot_class
@dataclass(slots=True)
class MassDownloadFacts:
    distinct_blobs: int  # thresholds in force when the alert opened
    bytes_threshold: int
    blobs: int = 0  # distinct blobs in the alert
    bytes: int = 0
    containers: int = 0
    logon_method: str | None = None


def container_of(event: AccessEvent) -> str:
    parts = (event.object or "").split("/")
    return parts[1] if len(parts) > 2 else ""


def is_download(event: AccessEvent) -> bool:
    return (
        event.event_product == storage.PRODUCT
        and event.event_result == "Success"
        and event.operation.lower() in _CONTENT_READS
        and event.phi_category != "none"
        and event.event_sub_type == "Blob"
        and not container_of(event).startswith(RUNTIME_PREFIXES)
    )


def totals(entries: list[Entry]) -> tuple[int, int, int]:
    """Distinct blobs, bytes and distinct containers of a window's entries."""
    blobs = {kept[0][0] for _, _, kept in entries}
    size = sum(kept[0][1] for _, _, kept in entries)
    containers = {b.split("/")[1] for b in blobs}
    return len(blobs), size, len(containers)


class StorageMassDownload(Detection[Params]):
    rule_id = "storage-mass-download"
    rule_name = "Mass download from PHI blob containers"
    severity = "High"
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1530", "T1567")
    group_by = "actor"
    planes = frozenset({"data"})
    products = frozenset({storage.PRODUCT})
    Params = Params
    Facts = MassDownloadFacts

    def applies(self, event: AccessEvent) -> bool:
        if not is_download(event):
            return False
        allow = self.params.allow_identities
        ids = (event.actor_user_id, event.acting_app_id, event.credential_id)
        return not any(i in allow for i in ids if i)

    def declare(self) -> StatefulRule:
        width = self.params.window_minutes * 60
        return StatefulRule(
            state=lambda: KeyedWindows(width),
            step=self.step,
            drop_before=lambda state, before: state.expire(before),
        )

    def step(
        self,
        rule: RuleInfo,
        state: KeyedWindows,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        key = key_of(rule.group_by, event)
        if key is None:
            return
        width = state.width
        value = (event.object or "", event.response_bytes or 0)
        window = count_in(state, key, event, time, value, ctx.watermark - rule.lateness)
        if window is None:
            return  # redelivered
        alert = ctx.book.open_for(rule.rule_id, key, time, width)
        if alert is not None:
            enrich(rule, ctx, key, event, time, width)
            span = window.span(alert.window_start - 1e-6, alert.window_end)
            facts: MassDownloadFacts = alert.facts
            # The window may have trimmed the alert's first reads: never count down.
            blobs, size, containers = totals(span)
            facts.blobs = max(facts.blobs, blobs)
            facts.bytes = max(facts.bytes, size)
            facts.containers = max(facts.containers, containers)
            return
        params = self.params
        for start, end in ((time - width, time), (time - 1e-6, time + width)):
            entries = window.span(start, end)
            blobs, size, containers = totals(entries)
            if blobs < params.distinct_blobs and size < params.bytes:
                continue
            open_alert(
                rule,
                ctx,
                key,
                event,
                time,
                anchor=window_anchor(time, width),
                facts=MassDownloadFacts(
                    params.distinct_blobs,
                    params.bytes,
                    blobs,
                    size,
                    containers,
                    event.logon_method,
                ),
                entries=entries,
                window=(entries[0][0], entries[-1][0]),
            )
            return

    def render(self, state: AlertState) -> Alert:
        facts: MassDownloadFacts = state.facts
        who = actor_label(state)
        account = (state.top_target or "").split("/storageaccounts/")[-1].split("/")[0]
        account = account or "a storage account"
        minutes = max(1, round((state.last_time - state.first_time) / 60))
        width = round(self.params.window_minutes)
        gib = facts.bytes / GIB
        how = f" with {facts.logon_method}" if facts.logon_method else ""
        reasons = [
            f"Downloaded {facts.blobs} distinct blobs ({gib:.2f} GiB) from "
            f"{facts.containers} PHI container(s) of {account}{how} between "
            f"{hhmm(state.first_time)} and {hhmm(state.last_time)}; the thresholds are "
            f"{facts.distinct_blobs} blobs or {facts.bytes_threshold / GIB:.2f} GiB within "
            f"{width} minutes.",
            "Only successful content reads of PHI containers count; the Functions runtime's "
            "own containers and allow-listed backup or replication identities do not.",
            "Check first whether this identity runs a sanctioned copy (backup, migration); "
            "otherwise revoke its token or SAS and find where the files went.",
        ]
        return self.base_alert(
            state,
            title=f"Mass download from {account} by {who}: {facts.blobs} blobs in {minutes} min",
            description=(
                f"{who} downloaded {facts.blobs} distinct blobs ({gib:.2f} GiB) of PHI "
                f"containers within {minutes} minutes. A bulk pull of documents is how "
                "stored records are exfiltrated (MITRE T1530); confirm a business reason."
            ),
            reasons=reasons,
        )


DETECTION = StorageMassDownload
