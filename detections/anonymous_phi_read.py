"""anonymous-phi-read: a PHI container answered an anonymous read.

Blob storage serves an anonymous request only when the container (and its account) allow
public access, so one successful anonymous read of a container holding PHI means its
documents are on the internet. Any such read (`logon_method` Anonymous, a Read that
succeeded, on a container whose `phi_category` is not none) raises an alert, one per
container: the key is `account/container`, and every later anonymous read of it within the
hour (from any address) enriches that alert. Failed anonymous probes (403, 404, 409) are what
a private container answers and never fire.

When no PHI containers are configured every container counts as PHI
(`PHIWATCH_STORAGE_PHI_CONTAINERS`), so a deployment with intentionally public containers
(a static website, web assets) names them in `public_containers` (`account`, for all its
containers, or `account/container`); by default none is.

Grouping `resource_category`: every read of one storage account's blob service in one log
category is on one partition, so two addresses reading one container cannot raise two alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.kinds import SingleEvent
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import storage


class Params(DetectionParams):
    public_containers: tuple[str, ...] = Field(
        default=(), description="`account` or `account/container` meant to be public"
    )


@snapshot_class
@dataclass(slots=True)
class AnonymousReadFacts:
    container: str  # account/container


def container_of(event: AccessEvent) -> str | None:
    parts = (event.object or "").split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) >= 2 and parts[1] else None


class AnonymousPhiRead(Detection[Params]):
    rule_id = "anonymous-phi-read"
    rule_name = "Anonymous read of a PHI container"
    severity = "High"
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1530",)
    group_by = "resource_category"
    planes = frozenset({"data"})
    products = frozenset({storage.PRODUCT})
    Params = Params
    Facts = AnonymousReadFacts

    def applies(self, event: AccessEvent) -> bool:
        container = container_of(event)
        if (
            event.event_product != storage.PRODUCT
            or event.logon_method != "Anonymous"
            or event.event_type != "Read"
            or event.event_result != "Success"
            or event.phi_category == "none"
            or container is None
        ):
            return False
        public = self.params.public_containers
        return container not in public and container.split("/", 1)[0] not in public

    def declare(self) -> SingleEvent:
        return SingleEvent(
            where=lambda event: True,
            alert_key=lambda event: f"ct:{container_of(event)}",
            facts=lambda event: AnonymousReadFacts(container_of(event) or ""),
        )

    def render(self, state: AlertState) -> Alert:
        facts: AnonymousReadFacts = state.facts
        addresses = len(state.src_ips)
        reasons = [
            f"Container {facts.container} answered {state.event_count} anonymous read(s) "
            f"between {hhmm(state.first_time)} and {hhmm(state.last_time)} from "
            f"{addresses} address(es); the first came from {state.top_ip or 'an unknown address'}.",
            "A private container refuses anonymous requests (403/404/409): this one is "
            "publicly readable, and it holds PHI.",
            "Check first when public access was turned on for the container or account "
            "(allowBlobPublicAccess, the container's publicAccess), turn it off, then list "
            "what was read.",
        ]
        return self.base_alert(
            state,
            title=f"Anonymous read of PHI container {facts.container}",
            description=(
                f"{facts.container} served {state.event_count} anonymous read(s). PHI in a "
                "publicly readable container is exposed to anyone on the internet "
                "(MITRE T1530); if the container is meant to be public, add it to "
                "public_containers."
            ),
            reasons=reasons,
        )


DETECTION = AnonymousPhiRead
