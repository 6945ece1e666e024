"""A synthetic hospital tenant: clinicians, service principals, patients and Azure resources."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from . import catalog
from .catalog import AZURE_CLI_APP_ID, AZURE_PORTAL_APP_ID, BROWSER_AGENT, CLI_AGENT, DOMAIN
from .ids import new_hex, new_uuid, private_ip, public_ip

ActorKind = Literal["user", "sp", "mi"]
ClaimStyle = Literal["long", "short"]


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    kind: ActorKind
    oid: str
    app_id: str  # client app id on its FHIR tokens (for staff: the EHR they sign in through)
    ip: str
    user_agent: str
    upn: str | None = None
    claim_style: ClaimStyle = "short"  # Key Vault spells claims by token version, per caller
    weight: float = 1.0
    fhir_home: int = 0
    is_admin: bool = False
    panel: tuple[str, ...] = ()
    duties: tuple[str, ...] = ()
    tool_app_id: str = ""  # app id on Key Vault/ARM tokens: staff use the CLI or the portal

    @property
    def admin_app_id(self) -> str:
        return self.tool_app_id or self.app_id


@dataclass(frozen=True, slots=True)
class FhirService:
    name: str
    resource_id: str
    op_prefix: str
    base_url: str
    iso_time: bool  # workspace service: ISO 8601 time and string status; classic: neither
    location: str
    issuer: str

    @property
    def stream(self) -> str:
        return self.resource_id.lower()


@dataclass(slots=True)
class Vault:
    name: str
    resource_id: str  # as the vault itself emits it
    camel_id: str  # as ARM spells it; Activity Log upper-cases it
    secrets: tuple[str, ...]
    keys: tuple[str, ...]
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.name}.vault.azure.net"

    @property
    def stream(self) -> str:
        return self.resource_id.lower()


@dataclass(frozen=True, slots=True)
class ArmResource:
    kind: str
    camel_id: str
    sub: str
    log_categories: tuple[str, ...]

    @property
    def arm_id(self) -> str:
        return self.camel_id.upper()


@dataclass(frozen=True, slots=True)
class Grant:
    """One thing a caller normally does in Key Vault."""

    vault: Vault
    op: str
    obj: str


@dataclass(slots=True)
class Population:
    tenant_id: str
    subscriptions: tuple[str, str]
    mgmt_group: str
    clinicians: list[Actor]
    principals: list[Actor]
    patients: list[str]
    fhir: list[FhirService]
    vaults: list[Vault]
    arm: list[ArmResource]
    kv_grants: dict[str, list[Grant]]

    def principal(self, name: str) -> Actor:
        return next(p for p in self.principals if p.name == name)

    def vault(self, name: str) -> Vault:
        return next(v for v in self.vaults if v.name == name)

    def resource(self, kind: str, name: str) -> ArmResource:
        suffix = "/" + name.lower()
        return next(r for r in self.arm if r.kind == kind and r.camel_id.lower().endswith(suffix))

    @property
    def admins(self) -> list[Actor]:
        return [c for c in self.clinicians if c.is_admin]

    def hierarchy(self, sub: str) -> str:
        return f"{self.tenant_id}/{self.mgmt_group}/{sub}"


def _rg(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def _patients(rng: random.Random, count: int) -> list[str]:
    # Migrated records keep their legacy numeric MRN-style ids; new ones get server uuids.
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        pid = str(rng.randint(10_000, 9_999_999)) if rng.random() < 0.4 else new_uuid(rng)
        if pid not in seen:
            seen.add(pid)
            ids.append(pid)
    return ids


def _clinicians(rng: random.Random, patients: list[str], apps: tuple[str, str]) -> list[Actor]:
    names = [(f, n) for f in catalog.FIRST_NAMES for n in catalog.LAST_NAMES]
    rng.shuffle(names)
    out: list[Actor] = []
    for i, (first, last) in enumerate(names[:60]):
        remote = rng.random() < 0.15
        is_admin = i < 6  # informatics/IT staff with Contributor rights
        ehr = apps[0] if rng.random() < 0.8 else apps[1]
        portal = is_admin and rng.random() < 0.5
        out.append(
            Actor(
                name=f"{first.title()} {last.title()}",
                kind="user",
                oid=new_uuid(rng),
                app_id=ehr,
                ip=public_ip(rng) if remote else private_ip(rng, "10.40"),
                user_agent=BROWSER_AGENT if portal else CLI_AGENT,
                upn=f"{first}.{last}@{DOMAIN}",
                claim_style="long" if rng.random() < 0.5 else "short",
                weight=rng.uniform(0.5, 1.8),
                fhir_home=0 if rng.random() < 0.6 else 1,
                is_admin=is_admin,
                panel=tuple(rng.sample(patients, rng.randint(40, 80))),
                tool_app_id=AZURE_PORTAL_APP_ID if portal else AZURE_CLI_APP_ID,
            )
        )
    return out


def _principals(rng: random.Random) -> list[Actor]:
    out = []
    for name, kind, agent, duties, weight in catalog.PRINCIPALS:
        out.append(
            Actor(
                name=name,
                kind=_kind(kind),
                oid=new_uuid(rng),
                app_id=new_uuid(rng),
                ip=private_ip(rng, "10.20"),
                user_agent=agent,
                claim_style="long" if kind == "mi" or rng.random() < 0.3 else "short",
                weight=weight,
                duties=duties,
            )
        )
    return out


def _vaults(rng: random.Random, subs: tuple[str, str]) -> list[Vault]:
    out = []
    for name, sub, rg, upper, secrets, keys in catalog.VAULTS:
        camel = f"{_rg(subs[sub], rg)}/providers/Microsoft.KeyVault/vaults/{name}"
        vault = Vault(name, camel.upper() if upper else camel, camel, secrets, keys)
        for obj in secrets + keys:
            vault.versions[obj] = new_hex(rng)
        out.append(vault)
    return out


def _fhir(tenant_id: str, sub: str) -> list[FhirService]:
    rg = f"/SUBSCRIPTIONS/{sub.upper()}/RESOURCEGROUPS/RG-CLINICAL-PROD/PROVIDERS"
    issuer = f"https://sts.windows.net/{tenant_id}/"
    return [
        FhirService(
            name="fhir-prod",
            resource_id=f"{rg}/MICROSOFT.HEALTHCAREAPIS/SERVICES/FHIR-PROD",
            op_prefix="Microsoft.HealthcareApis/services/fhir-R4/",
            base_url="https://fhir-prod.azurehealthcareapis.com",
            iso_time=False,
            location="East US",
            issuer=issuer,
        ),
        FhirService(
            name="fhir-prod2",
            resource_id=f"{rg}/MICROSOFT.HEALTHCAREAPIS/WORKSPACES/AHDS-PROD/FHIRSERVICES/FHIR-PROD2",
            op_prefix="Microsoft.HealthcareApis/workspaces/fhirservices/",
            base_url="https://ahds-prod-fhir-prod2.fhir.azurehealthcareapis.com",
            iso_time=True,
            location="eastus",
            issuer=issuer,
        ),
    ]


def _arm(subs: tuple[str, str], vaults: list[Vault]) -> list[ArmResource]:
    out = [
        ArmResource(kind, f"{_rg(subs[sub], rg)}/providers/{path}", subs[sub], logs)
        for kind, sub, rg, path, logs in catalog.ARM_RESOURCES
    ]
    for v in vaults:
        out.append(ArmResource("vault", v.camel_id, v.camel_id.split("/")[2], catalog.VAULT_LOGS))
    return out


def _grants(pop: Population) -> dict[str, list[Grant]]:
    def grants(key: str) -> list[Grant]:
        return [Grant(pop.vault(v), op, obj) for v, op, obj in catalog.KV_GRANTS[key]]

    out = {p.oid: grants(p.name) for p in pop.principals}
    for admin in pop.admins:
        out[admin.oid] = grants("@admin")
    # A few informatics clinicians pull a FHIR client secret from notebooks.
    for analyst in pop.clinicians[6:10]:
        out[analyst.oid] = grants("@analyst")
    return out


def build_population(rng: random.Random) -> Population:
    tenant_id = new_uuid(rng)
    subs = (new_uuid(rng), new_uuid(rng))
    patients = _patients(rng, 3000)
    ehr_apps = (new_uuid(rng), new_uuid(rng))
    vaults = _vaults(rng, subs)
    pop = Population(
        tenant_id=tenant_id,
        subscriptions=subs,
        mgmt_group="mg-contoso-health",
        clinicians=_clinicians(rng, patients, ehr_apps),
        principals=_principals(rng),
        patients=patients,
        fhir=_fhir(tenant_id, subs[0]),
        vaults=vaults,
        arm=_arm(subs, vaults),
        kv_grants={},
    )
    pop.kv_grants = _grants(pop)
    return pop


_KINDS: dict[str, ActorKind] = {"user": "user", "sp": "sp", "mi": "mi"}


def _kind(text: str) -> ActorKind:
    if text in _KINDS:
        return _KINDS[text]
    raise ValueError(f"catalog principal of unknown kind {text!r}")
