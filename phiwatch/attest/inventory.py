"""The inventory of PHI resources phiwatch attests: from a file or from Azure Resource Graph.

A resource is one FHIR service, SQL database, storage account or Key Vault, with the
properties the attestation judges (docs/attestation.md). Unknown is None, never "fine":
a property the source did not state fails its check, because an attestation needs evidence.

File (CSV with a header row, or JSON: a list of objects with the same keys):

| column | values | meaning |
|---|---|---|
| `ResourceId` | ARM id | the resource (any case; kept lower case) |
| `Kind` | `fhir`, `sql`, `storage`, `keyvault` | what it is |
| `Tier` | `restricted`, `standard` (empty: standard) | restricted requires a customer key |
| `Archive` | `true`/`false` | the phiwatch audit archive account (immutability is judged on it) |
| `PublicNetworkAccess` | `Enabled`/`Disabled` | the resource's public network switch |
| `CustomerManagedKey` | `true`/`false` | encryption at rest with a key the customer holds |
| `PrivateEndpoint` | `true`/`false` | at least one approved private endpoint connection |
| `ImmutabilityLocked` | `true`/`false` | a locked time-based immutability policy (archive only) |
| `Diagnostics` | `true`/`false` (empty: unknown) | a diagnostic setting sends to phiwatch |
| `Name` | text (empty: the id's last segment) | a display name for reports |

Column names are matched in any case. A `ResourceId,Kind[,Name]` file (the HIPAA report's
first format) is an inventory too: `Kind` also takes the ARM-flavoured names in `KIND_ALIASES`
(`FhirService`, `SqlDatabase`, `StorageAccount`, `KeyVault`), and its unstated properties are
unknown, so they fail their checks.

Resource Graph: one KQL `Resources` query per kind (`QUERIES`), paged with skip tokens, read
with `DefaultAzureCredential` (the managed identity in Azure); the tier is the resource's
`phiwatch-tier` tag and the archive account the one tagged `phiwatch-archive: true`.
Diagnostics are not in Resource Graph: they come from the logs (attestation.logging_resources).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

Kind = Literal["fhir", "sql", "storage", "keyvault"]
KINDS: tuple[Kind, ...] = get_args(Kind)
COLUMNS = (
    "ResourceId",
    "Kind",
    "Tier",
    "Archive",
    "PublicNetworkAccess",
    "CustomerManagedKey",
    "PrivateEndpoint",
    "ImmutabilityLocked",
    "Diagnostics",
)
# Read when present, judged by no check: the name a report shows.
OPTIONAL_COLUMNS = ("Name",)
_CANONICAL = {column.lower(): column for column in (*COLUMNS, *OPTIONAL_COLUMNS)}
# The kind words of the report's first inventory format (ARM types in short), lower case.
KIND_ALIASES: dict[str, Kind] = {
    "fhirservice": "fhir",
    "fhirservices": "fhir",
    "sqldatabase": "sql",
    "storageaccount": "storage",
    "vault": "keyvault",
}
# An inventory larger than this is refused: the detection holds per-resource state for it.
MAX_RESOURCES = 20_000
PAGE_SIZE = 1000  # Resource Graph's largest $top


class InventoryError(ValueError):
    """An inventory that cannot be read; the message names the row, never a value of it."""


@dataclass(frozen=True, slots=True)
class PhiResource:
    resource_id: str  # lower case
    kind: Kind
    tier: str = "standard"
    archive: bool = False
    public_network_disabled: bool | None = None
    customer_managed_key: bool | None = None
    private_endpoint: bool | None = None
    immutability_locked: bool | None = None
    diagnostics: bool | None = None
    display_name: str = ""  # the file's `Name`; empty: the id's last segment

    @property
    def subscription(self) -> str:
        parts = self.resource_id.split("/")
        return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else ""

    @property
    def name(self) -> str:
        return self.display_name or self.resource_id.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Inventory:
    resources: tuple[PhiResource, ...]
    source: str  # "file:<name>" or "resource-graph"

    def __post_init__(self) -> None:
        ids = [r.resource_id for r in self.resources]
        if len(set(ids)) != len(ids):
            raise InventoryError("a resource is listed twice")
        if len(ids) > MAX_RESOURCES:
            raise InventoryError(f"more than {MAX_RESOURCES} resources")

    def __iter__(self) -> Iterator[PhiResource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def by_id(self) -> dict[str, PhiResource]:
        return {r.resource_id: r for r in self.resources}


# ------------------------------------------------------------------ file


def _flag(value: Any, column: str, row: int) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in {"true", "yes", "1"}:
        return True
    if text in {"false", "no", "0"}:
        return False
    raise InventoryError(f"row {row}: {column} is not true or false")


def _network(value: Any, row: int) -> bool | None:
    text = str(value or "").strip().lower()
    if text == "":
        return None
    if text in {"enabled", "disabled"}:
        return text == "disabled"
    raise InventoryError(f"row {row}: PublicNetworkAccess is not Enabled or Disabled")


def resource_of(fields: Mapping[str, Any], row: int) -> PhiResource:
    """One inventory row (file columns) as a resource."""
    unknown = set(fields) - set(COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise InventoryError(f"row {row}: unknown columns {sorted(unknown)}")
    rid = str(fields.get("ResourceId") or "").strip().lower()
    if not rid.startswith("/subscriptions/"):
        raise InventoryError(f"row {row}: ResourceId is not an ARM resource id")
    kind = str(fields.get("Kind") or "").strip().lower()
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise InventoryError(f"row {row}: Kind is not one of {', '.join(KINDS)}")
    tier = str(fields.get("Tier") or "").strip().lower() or "standard"
    if tier not in {"restricted", "standard"}:
        raise InventoryError(f"row {row}: Tier is not restricted or standard")
    return PhiResource(
        resource_id=rid,
        kind=kind,  # checked against KINDS above
        tier=tier,
        archive=bool(_flag(fields.get("Archive"), "Archive", row)),
        public_network_disabled=_network(fields.get("PublicNetworkAccess"), row),
        customer_managed_key=_flag(fields.get("CustomerManagedKey"), "CustomerManagedKey", row),
        private_endpoint=_flag(fields.get("PrivateEndpoint"), "PrivateEndpoint", row),
        immutability_locked=_flag(fields.get("ImmutabilityLocked"), "ImmutabilityLocked", row),
        diagnostics=_flag(fields.get("Diagnostics"), "Diagnostics", row),
        display_name=str(fields.get("Name") or "").strip(),
    )


def _canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with its column names spelt as COLUMNS spells them (files come from
    spreadsheets and scripts that do not keep the case)."""
    return {_CANONICAL.get(str(k).strip().lower(), k): v for k, v in row.items()}


def _blank(row: Mapping[str, Any]) -> bool:
    return all(v is None or str(v).strip() == "" for v in row.values())


def parse_inventory(text: str, *, name: str = "inventory") -> Inventory:
    """A CSV or JSON inventory's text (JSON when it starts with `[`)."""
    stripped = text.lstrip("\ufeff").lstrip()
    rows: list[Mapping[str, Any]]
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise InventoryError(f"not valid JSON (line {error.lineno})") from None
        if not all(isinstance(item, dict) for item in loaded):
            raise InventoryError("a JSON inventory is a list of objects")
        rows = [_canonical(item) for item in loaded]
    else:
        # An unknown column left empty is no claim (a spreadsheet's trailing comma); a line
        # of empty cells is no resource.
        rows = [
            {k: v for k, v in row.items() if k is not None and (k in _CANONICAL.values() or v)}
            for row in map(_canonical, csv.DictReader(io.StringIO(stripped)))
        ]
    resources = tuple(resource_of(row, i) for i, row in enumerate(rows, start=1) if not _blank(row))
    return Inventory(resources, f"file:{name}")


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    return parse_inventory(path.read_text(encoding="utf-8"), name=path.name)


# ------------------------------------------------------------------ Resource Graph

# Every query projects the same columns, so one mapping reads every kind's rows.
_TAGS = (
    "tier = tolower(tostring(tags['phiwatch-tier'])), "
    "archive = tolower(tostring(tags['phiwatch-archive'])) == 'true'"
)
QUERIES: dict[Kind, str] = {
    "storage": (
        "Resources | where type =~ 'microsoft.storage/storageaccounts' "
        f"| project id = tolower(id), {_TAGS}, "
        "network = tostring(properties.publicNetworkAccess), "
        "defaultAction = tostring(properties.networkAcls.defaultAction), "
        "cmk = tostring(properties.encryption.keySource) =~ 'Microsoft.Keyvault', "
        "privateEndpoints = array_length(properties.privateEndpointConnections), "
        "immutability = tostring("
        "properties.immutableStorageWithVersioning.immutabilityPolicy.state) "
        "| order by id asc"
    ),
    # A database's network and key live on its server: joined on the server's id.
    "sql": (
        "Resources | where type =~ 'microsoft.sql/servers/databases' and name != 'master' "
        "| extend server = tolower(substring(id, 0, indexof(tolower(id), '/databases/'))) "
        "| join kind=leftouter (Resources | where type =~ 'microsoft.sql/servers' "
        "| project server = tolower(id), network = tostring(properties.publicNetworkAccess), "
        "privateEndpoints = array_length(properties.privateEndpointConnections), "
        "cmk = isnotempty(tostring(properties.keyId))) on server "
        f"| project id = tolower(id), {_TAGS}, network, defaultAction = '', cmk, "
        "privateEndpoints, immutability = '' | order by id asc"
    ),
    "keyvault": (
        "Resources | where type =~ 'microsoft.keyvault/vaults' "
        f"| project id = tolower(id), {_TAGS}, "
        "network = tostring(properties.publicNetworkAccess), "
        "defaultAction = tostring(properties.networkAcls.defaultAction), cmk = false, "
        "privateEndpoints = array_length(properties.privateEndpointConnections), "
        "immutability = '' | order by id asc"
    ),
    "fhir": (
        "Resources | where type =~ 'microsoft.healthcareapis/workspaces/fhirservices' "
        f"| project id = tolower(id), {_TAGS}, "
        "network = tostring(properties.publicNetworkAccess), defaultAction = '', "
        "cmk = isnotempty(tostring("
        "properties.encryption.customerManagedKeyEncryption.keyEncryptionKeyUrl)), "
        "privateEndpoints = array_length(properties.privateEndpointConnections), "
        "immutability = '' | order by id asc"
    ),
}


def resource_of_graph_row(kind: Kind, row: Mapping[str, Any]) -> PhiResource:
    """One Resource Graph row (the columns every query in QUERIES projects)."""
    network = str(row.get("network") or "").lower()
    default = str(row.get("defaultAction") or "").lower()
    # Enabled with a Deny default is "selected networks": not open to the internet.
    if network == "disabled" or (network in {"", "enabled"} and default == "deny"):
        closed: bool | None = True
    elif network == "enabled" or default == "allow":
        closed = False
    else:
        closed = None
    endpoints = row.get("privateEndpoints")
    state = str(row.get("immutability") or "").lower()
    archive = bool(row.get("archive"))
    tier = str(row.get("tier") or "").lower()
    return PhiResource(
        resource_id=str(row["id"]).lower(),
        kind=kind,
        tier="restricted" if tier == "restricted" else "standard",
        archive=archive,
        public_network_disabled=closed,
        customer_managed_key=bool(row["cmk"]) if row.get("cmk") is not None else None,
        private_endpoint=(endpoints or 0) > 0 if isinstance(endpoints, int | None) else None,
        immutability_locked=(state == "locked") if archive else None,
    )


def query_pages(client: Any, query: str, *, page_size: int = PAGE_SIZE) -> Iterable[dict[str, Any]]:
    """Every row of one Resource Graph query, following `$skipToken` page by page."""
    from azure.mgmt.resourcegraph.models import (  # noqa: PLC0415 - only a Graph inventory needs the SDK
        QueryRequest,
        QueryRequestOptions,
    )

    token: str | None = None
    while True:
        options = QueryRequestOptions(top=page_size, skip_token=token, result_format="objectArray")
        response = client.resources(QueryRequest(query=query, options=options))
        yield from response.data or []
        token = response.skip_token
        if not token:
            return


def inventory_from_graph(
    credential: TokenCredential | None = None,
    *,
    subscriptions: Iterable[str] = (),
    base_url: str | None = None,
    **client_kwargs: Any,
) -> Inventory:
    """The inventory from Azure Resource Graph: one query per kind over `subscriptions`
    (empty: every subscription the identity can read). `base_url` and `client_kwargs`
    (a transport) point the client elsewhere: the tests' stand-in."""
    from azure.mgmt.resourcegraph import ResourceGraphClient  # noqa: PLC0415 - as above

    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - Azure only

        credential = DefaultAzureCredential()
    client = ResourceGraphClient(credential, base_url=base_url, **client_kwargs)
    scope = list(subscriptions)
    found: list[PhiResource] = []
    for kind, query in QUERIES.items():
        scoped = _Scoped(client, scope)
        found.extend(resource_of_graph_row(kind, row) for row in query_pages(scoped, query))
    return Inventory(tuple(found), "resource-graph")


class _Scoped:
    """The client with the subscriptions set on every request (the SDK takes them per
    request, not per client)."""

    def __init__(self, client: Any, subscriptions: list[str]) -> None:
        self.client, self.subscriptions = client, subscriptions

    def resources(self, request: Any) -> Any:
        if self.subscriptions:
            request.subscriptions = self.subscriptions
        return self.client.resources(request)
