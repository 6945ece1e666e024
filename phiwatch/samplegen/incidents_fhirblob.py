"""FHIR bulk-export and integrity incidents, a blob mass download, their look-alikes and the
demo's export allow-list.

Drawn from generators of their own (seeded from the seed and each rule id), never from the
scenario's: the original records and incidents stay byte-for-byte what they were. The
scenario's routine exporter (`app-fhir-bulk-export`, the principal the hospital runs its
research feed with) is the deployment's allow-listed exporter: the ground truth carries it in
`detection_params`, as an operator would set `PHIWATCH_DETECTION_PARAMS`.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Any

from .catalog import AZURE_CLI_APP_ID
from .emitted import Emitted
from .ground_truth import Incident, Lookalike, span
from .ids import new_uuid, public_ip
from .plan import ScenarioPlan
from .population import Actor, Population
from .records_fhir import fhir_operation
from .traffic_storage import _AGENTS, Caller, blob_record

# Minutes after the window start, at least 30 minutes from every other scenario.
OFFSETS_MIN = {
    "fhir-bulk-export": 880,
    "fhir-integrity-operation": 940,
    "everything-four-patients": 1000,
    "export-denied": 1090,
    "purge-denied": 1130,
    "storage-mass-download": 1170,
    "runtime-container-reads": 1210,
    "blob-reads-below-threshold": 1250,
    "anonymous-phi-read": 1300,
    "anonymous-public-assets": 1345,
}
DOWNLOADED_BLOBS = 80
POLLS = 4


def rule_rng(seed: int, name: str) -> random.Random:
    return random.Random(f"phiwatch-samplegen/{seed}/incident/{name}")  # noqa: S311


def _bystanders(pop: Population, plan: ScenarioPlan) -> list[Actor]:
    taken = {plan.mass_reader.oid, plan.threshold_reader.oid, plan.failed_reader.oid}
    return [c for c in pop.clinicians if not c.is_admin and c.oid not in taken]


def fhirblob_scenario(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    incidents: list[Incident],
    lookalikes: list[Lookalike],
    params: dict[str, dict[str, Any]],
) -> list[Emitted]:
    """The records; the incidents, look-alikes and detection parameters go into the lists
    and the dict given (the generator's ground truth)."""
    exporter = pop.principal("app-fhir-bulk-export")
    params.setdefault("fhir-bulk-export", {})["export_allow"] = [exporter.oid, exporter.app_id]
    svc = pop.fhir[0]
    others = _bystanders(pop, plan)
    out: list[Emitted] = []

    def at(name: str, rng: random.Random) -> Any:
        return plan.start + timedelta(minutes=OFFSETS_MIN[name], seconds=rng.uniform(3, 50))

    # A clinician's token used from home with the Azure CLI: a system-level export of the
    # whole store, then the status polls up to its manifest.
    rng = rule_rng(seed, "fhir-bulk-export")
    thief = dataclasses.replace(others[-1], app_id=AZURE_CLI_APP_ID)
    ip = public_ip(rng)
    t = at("fhir-bulk-export", rng)
    recs = fhir_operation(
        svc,
        thief,
        t,
        "/$export?_type=Patient,Observation,Condition,MedicationRequest",
        interaction="export",
        resource_type="",
        status=202,
        rng=rng,
        ip=ip,
        scenario=True,
    )
    job = f"/_operations/export/{rng.randint(100, 99_999)}"
    for i in range(POLLS):
        t += timedelta(seconds=45 + rng.uniform(0, 30))
        status = 200 if i == POLLS - 1 else 202
        recs += fhir_operation(
            svc, thief, t, job, interaction="export", resource_type="", status=status,
            rng=rng, ip=ip, scenario=True,
        )  # fmt: skip
    first, last = span(recs)
    out += recs
    incidents.append(
        Incident(
            rule_id="fhir-bulk-export",
            description=f"{thief.upn} started a system-level FHIR $export from an unfamiliar "
            f"address with an Azure CLI token and polled it {POLLS} times to its manifest.",
            actor_user_id=thief.oid,
            actor_app_id=thief.app_id,
            src_ip=ip,
            target_resource_id=svc.resource_id.lower(),
            start=first,
            end=last,
        )
    )

    # An administrator bulk-deletes Observations and purges a chart's history at night.
    rng = rule_rng(seed, "fhir-integrity-operation")
    admin = pop.admins[-1]
    t = at("fhir-integrity-operation", rng)
    recs = fhir_operation(
        svc, admin, t, "/Observation/$bulk-delete?_lastUpdated=lt2026-01-01",
        interaction="bulk-delete", resource_type="Observation", status=202, rng=rng,
        scenario=True,
    )  # fmt: skip
    recs += fhir_operation(
        svc, admin, t + timedelta(seconds=50), f"/_operations/bulk-delete/{rng.randint(1, 999)}",
        interaction="export", resource_type="", status=200, rng=rng, scenario=True,
    )  # fmt: skip
    recs += fhir_operation(
        svc, admin, t + timedelta(minutes=3), f"/Patient/{rng.choice(pop.patients)}/$purge-history",
        interaction="purge-history", resource_type="Patient", status=200, rng=rng,
        scenario=True,
    )  # fmt: skip
    first, last = span(recs)
    out += recs
    incidents.append(
        Incident(
            rule_id="fhir-integrity-operation",
            description=f"{admin.upn} ran $bulk-delete on Observations and $purge-history on "
            "a patient's record late in the evening.",
            actor_user_id=admin.oid,
            actor_app_id=admin.app_id,
            src_ip=admin.ip,
            target_resource_id=svc.resource_id.lower(),
            start=first,
            end=last,
        )
    )

    # Look-alike: the EHR backend assembles referral packets, $everything for four distinct
    # patients (one of them twice) within the hour: one short of the threshold.
    rng = rule_rng(seed, "everything-four-patients")
    ehr = pop.principal("app-ehr-portal-backend")
    t = at("everything-four-patients", rng)
    chosen = rng.sample(pop.patients, 4)
    recs = []
    for i, pid in enumerate([*chosen, chosen[0]]):
        recs += fhir_operation(
            svc, ehr, t + timedelta(minutes=11 * i), f"/Patient/{pid}/$everything",
            interaction="everything", resource_type="Patient", status=200, rng=rng,
            scenario=True,
        )  # fmt: skip
    out += recs
    lookalikes.append(_look("everything-four-patients", "fhir-bulk-export", ehr, recs, svc,
        "The EHR backend ran $everything for 4 distinct patients within the hour (threshold "
        "5)."))  # fmt: skip

    # Look-alike: a clinician's system export is refused (403): nothing left the store.
    rng = rule_rng(seed, "export-denied")
    who = others[-2]
    recs = fhir_operation(
        svc, who, at("export-denied", rng), "/$export", interaction="export",
        resource_type="", status=403, rng=rng, scenario=True,
    )  # fmt: skip
    out += recs
    lookalikes.append(_look("export-denied", "fhir-bulk-export", who, recs, svc,
        "A clinician's $export was refused with 403."))  # fmt: skip

    # Look-alike: a purge-history refused (403) and a bulk-delete job's status read.
    rng = rule_rng(seed, "purge-denied")
    who = others[-3]
    t = at("purge-denied", rng)
    recs = fhir_operation(
        svc, who, t, f"/Patient/{rng.choice(pop.patients)}/$purge-history",
        interaction="purge-history", resource_type="Patient", status=403, rng=rng,
        scenario=True,
    )  # fmt: skip
    recs += fhir_operation(
        svc, who, t + timedelta(seconds=20), f"/_operations/bulk-delete/{new_uuid(rng)[:6]}",
        interaction="export", resource_type="", status=200, rng=rng, scenario=True,
    )  # fmt: skip
    out += recs
    lookalikes.append(_look("purge-denied", "fhir-integrity-operation", who, recs, svc,
        "A clinician's $purge-history was refused (403); a bulk-delete status read is no "
        "job."))  # fmt: skip
    out += _storage(pop, plan, seed, others, incidents, lookalikes)
    # The tenant's web assets container is public on purpose (the scenario's own traffic
    # reads it anonymously all day): the deployment says so.
    params.setdefault("anonymous-phi-read", {})["public_containers"] = ["stphi01/public-assets"]
    out += _anonymous(pop, plan, seed, incidents, lookalikes)
    return out


def _storage(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    others: list[Actor],
    incidents: list[Incident],
    lookalikes: list[Lookalike],
) -> list[Emitted]:
    phi = pop.resource("storage", "stphi01")
    mrns = [f"MRN{int(p):08d}" for p in pop.patients if p.isdigit()]
    out: list[Emitted] = []

    def at(name: str, rng: random.Random) -> Any:
        return plan.start + timedelta(minutes=OFFSETS_MIN[name], seconds=rng.uniform(3, 50))

    def pull(
        caller: Caller, t: Any, paths: list[str], step: float, rng: random.Random
    ) -> list[Emitted]:
        recs = []
        for i, path in enumerate(paths):
            recs.append(
                blob_record(
                    pop, phi, t + timedelta(seconds=i * step + rng.uniform(0, step / 3)),
                    caller, "GetBlob", path, rng, size=rng.randint(60_000, 2_000_000),
                )
            )  # fmt: skip
        return recs

    # A clinician's token from an unfamiliar address pulls 80 discharge summaries with AzCopy.
    rng = rule_rng(seed, "storage-mass-download")
    who = others[-4]
    caller = Caller("OAuth", public_ip(rng), _AGENTS["lab"], who)
    paths = [f"discharge/{m}/summary-1.pdf" for m in rng.sample(mrns, DOWNLOADED_BLOBS)]
    recs = pull(caller, at("storage-mass-download", rng), paths, 6.0, rng)
    first, last = span(recs)
    out += recs
    incidents.append(
        Incident(
            rule_id="storage-mass-download",
            description=f"{who.upn} downloaded {DOWNLOADED_BLOBS} discharge summaries from "
            "stphi01 in about 8 minutes with AzCopy from an unfamiliar address.",
            actor_user_id=who.oid,
            actor_app_id=who.app_id,
            src_ip=caller.ip,
            target_resource_id=_target(phi),
            start=first,
            end=last,
        )
    )

    # Look-alike: the Functions runtime reads its own host state (azure-webjobs-hosts).
    rng = rule_rng(seed, "runtime-container-reads")
    func = pop.principal("mi-func-phiwatch")
    caller = Caller("OAuth", func.ip, _AGENTS["python"], func)
    paths = [f"azure-webjobs-hosts/locks/phiwatch/{new_uuid(rng)}" for _ in range(80)]
    recs = pull(caller, at("runtime-container-reads", rng), paths, 5.0, rng)
    out += recs
    text = "The Functions runtime read 80 blobs of its azure-webjobs-hosts container."
    lookalikes.append(_look("runtime-container-reads", "storage-mass-download", func, recs,
        _target(phi, "azure-webjobs-hosts"), text))  # fmt: skip

    # Look-alike: an analyst opens 40 distinct documents in 14 minutes (threshold 50).
    rng = rule_rng(seed, "blob-reads-below-threshold")
    who = others[-5]
    caller = Caller("OAuth", who.ip, _AGENTS["explorer"], who)
    paths = [f"referrals/{m}/letter-2.pdf" for m in rng.sample(mrns, 40)]
    recs = pull(caller, at("blob-reads-below-threshold", rng), paths, 21.0, rng)
    out += recs
    lookalikes.append(_look("blob-reads-below-threshold", "storage-mass-download", who, recs,
        _target(phi, "referrals"), "A clinician opened 40 distinct documents in 14 minutes "
        "(threshold 50)."))  # fmt: skip
    return out


def _look(
    kind: str, rule: str, actor: Actor, recs: list[Emitted], target: Any, text: str
) -> Lookalike:
    first, last = span(recs)
    return Lookalike(
        kind=kind,
        resembles_rule_id=rule,
        description=text,
        actor_user_id=actor.oid,
        actor_app_id=actor.app_id,
        src_ip=actor.ip,
        target_resource_id=_target(target),
        start=first,
        end=last,
    )


def _anonymous(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    incidents: list[Incident],
    lookalikes: list[Lookalike],
) -> list[Emitted]:
    phi = pop.resource("storage", "stphi01")
    mrns = [f"MRN{int(p):08d}" for p in pop.patients if p.isdigit()]

    def at(name: str, rng: random.Random) -> Any:
        return plan.start + timedelta(minutes=OFFSETS_MIN[name], seconds=rng.uniform(3, 50))

    # The imaging container was left public: a scanner finds it and fetches three reports.
    rng = rule_rng(seed, "anonymous-phi-read")
    caller = Caller("Anonymous", public_ip(rng), _AGENTS["browser"])
    t = at("anonymous-phi-read", rng)
    recs = [blob_record(pop, phi, t, caller, "ListBlobs", "imaging-reports", rng, size=9_000)]
    for i, mrn in enumerate(rng.sample(mrns, 3)):
        recs.append(
            blob_record(
                pop, phi, t + timedelta(seconds=20 * (i + 1)), caller, "GetBlob",
                f"imaging-reports/{mrn}/report-1.pdf", rng, size=rng.randint(90_000, 900_000),
            )
        )  # fmt: skip
    first, last = span(recs)
    incidents.append(
        Incident(
            rule_id="anonymous-phi-read",
            description="An anonymous caller listed the imaging-reports container of stphi01 "
            "and downloaded three reports: the container is publicly readable.",
            actor_user_id=None,
            actor_app_id=None,
            src_ip=caller.ip,
            target_resource_id=_target(phi),
            start=first,
            end=last,
        )
    )
    out = recs
    # Look-alike: the public web assets (configured public) and a refused probe (409).
    rng = rule_rng(seed, "anonymous-public-assets")
    caller = Caller("Anonymous", public_ip(rng), _AGENTS["browser"])
    t = at("anonymous-public-assets", rng)
    recs = [
        blob_record(pop, phi, t, caller, "GetBlob", "public-assets/logo.svg", rng, size=4_000),
        blob_record(pop, phi, t + timedelta(seconds=9), caller, "ListBlobs", "discharge", rng,
            status=409),
    ]  # fmt: skip
    out += recs
    first, last = span(recs)
    lookalikes.append(
        Lookalike(
            kind="anonymous-public-assets",
            resembles_rule_id="anonymous-phi-read",
            description="Anonymous reads of the configured public-assets container and a "
            "refused (409) anonymous listing of a private one.",
            actor_user_id=None,
            actor_app_id=None,
            src_ip=caller.ip,
            target_resource_id=_target(phi, "public-assets"),
            start=first,
            end=last,
        )
    )
    return out


def _target(resource: Any, container: str | None = None) -> str:
    """A FHIR service's resource id, or a storage account's blob service (as its logs say),
    or one of its containers (a look-alike's target: the container, not the account)."""
    if isinstance(resource, str):
        return resource
    if hasattr(resource, "resource_id"):
        return str(resource.resource_id).lower()
    blobs = f"{resource.camel_id}/blobServices/default".lower()
    return f"{blobs}/containers/{container}" if container else blobs
