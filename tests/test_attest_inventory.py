"""The PHI inventory: from a CSV or JSON file, and from Resource Graph (a local HTTPS
stand-in speaking its query contract, through the real SDK client), paged by skip token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport

from phiwatch.attest.inventory import (
    COLUMNS,
    QUERIES,
    InventoryError,
    PhiResource,
    inventory_from_graph,
    load_inventory,
    parse_inventory,
)
from tests.https_standin import StaticToken
from tests.resource_graph_standin import PATH, ResourceGraphStandIn

TOKEN = "graph-token"
SUB = "/subscriptions/sub-1/resourcegroups/rg-phi/providers"
FHIR = f"{SUB}/microsoft.healthcareapis/workspaces/ws/fhirservices/fhir-phi"
ARCHIVE = f"{SUB}/microsoft.storage/storageaccounts/stphiarchive"
VAULT = f"{SUB}/microsoft.keyvault/vaults/kv-phi"
SQL_DB = f"{SUB}/microsoft.sql/servers/sql-phi/databases/ehr"

HEADER = ",".join(COLUMNS)
CSV = f"""{HEADER}
{FHIR.upper()},fhir,restricted,,Disabled,true,true,,true
{ARCHIVE},storage,,true,Disabled,true,true,true,
{VAULT},keyvault,,,Enabled,,false,,false
"""


def test_a_csv_inventory_reads_every_column(tmp_path: Path) -> None:
    path = tmp_path / "inventory.csv"
    path.write_text(CSV, encoding="utf-8")
    inventory = load_inventory(path)
    assert inventory.source == "file:inventory.csv"
    fhir, archive, vault = inventory.resources
    assert fhir == PhiResource(
        FHIR.lower(),
        "fhir",
        tier="restricted",
        public_network_disabled=True,
        customer_managed_key=True,
        private_endpoint=True,
        diagnostics=True,
    )
    assert fhir.subscription == "sub-1" and fhir.name == "fhir-phi"
    assert archive.archive and archive.immutability_locked is True
    assert archive.tier == "standard" and archive.diagnostics is None  # empty: unknown
    assert vault.public_network_disabled is False and vault.customer_managed_key is None


def test_a_json_inventory_is_the_same_columns(tmp_path: Path) -> None:
    rows = [
        {"ResourceId": SQL_DB, "Kind": "sql", "PublicNetworkAccess": "Disabled"},
        {"ResourceId": VAULT, "Kind": "KeyVault", "PrivateEndpoint": True},
    ]
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    db, vault = load_inventory(path)
    assert db.kind == "sql" and db.public_network_disabled is True and db.private_endpoint is None
    assert vault.kind == "keyvault" and vault.private_endpoint is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ResourceId,Kind\nnot-an-id,fhir\n", "row 1: ResourceId"),
        (f"ResourceId,Kind\n{VAULT},cosmos\n", "row 1: Kind"),
        (f"ResourceId,Kind,Archive\n{VAULT},keyvault,maybe\n", "row 1: Archive"),
        (f"ResourceId,Kind,PublicNetworkAccess\n{VAULT},keyvault,open\n", "PublicNetworkAccess"),
        (f"ResourceId,Kind,Colour\n{VAULT},keyvault,red\n", "unknown columns"),
        (f"ResourceId,Kind\n{VAULT},keyvault\n{VAULT.upper()},keyvault\n", "listed twice"),
        ('[{"ResourceId": 1', "not valid JSON"),
    ],
)
def test_a_bad_inventory_is_refused_naming_the_row_not_the_value(text: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message) as error:
        parse_inventory(text)
    assert "red" not in str(error.value) and "maybe" not in str(error.value)


def _storage_row(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/sub-{i % 2}/resourcegroups/rg/providers"
        f"/microsoft.storage/storageaccounts/st{i:03}",
        "tier": "",
        "archive": False,
        "network": "Disabled",
        "defaultAction": "Deny",
        "cmk": False,
        "privateEndpoints": 1,
        "immutability": "",
        **extra,
    }


ROWS: dict[str, list[dict[str, Any]]] = {
    "microsoft.storage/storageaccounts": [
        _storage_row(1),
        _storage_row(2, network="Enabled"),
        *(_storage_row(i) for i in range(3, 7)),
        _storage_row(
            7,
            archive=True,
            tier="restricted",
            cmk=True,
            immutability="Locked",
            network="Enabled",
            defaultAction="Allow",
        ),
    ],
    "microsoft.sql/servers/databases": [
        {
            "id": SQL_DB,
            "tier": "restricted",
            "archive": False,
            "network": "Enabled",
            "defaultAction": "",
            "cmk": True,
            "privateEndpoints": None,
            "immutability": "",
        }
    ],
    "microsoft.keyvault/vaults": [
        {
            "id": VAULT,
            "tier": "",
            "archive": False,
            "network": "",
            "defaultAction": "Allow",
            "cmk": False,
            "privateEndpoints": 0,
            "immutability": "",
        }
    ],
    "microsoft.healthcareapis/workspaces/fhirservices": [],
}


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[ResourceGraphStandIn]:
    server = ResourceGraphStandIn(tmp_path, ROWS, token=TOKEN, max_page=3).start()
    yield server
    server.stop()


def _from_graph(graph: ResourceGraphStandIn, token: str = TOKEN, **kw: Any):
    return inventory_from_graph(
        StaticToken(token),
        base_url=graph.url,
        transport=RequestsTransport(connection_verify=graph.ca_file),
        **kw,
    )


def test_resource_graph_pages_every_kind_by_skip_token(graph: ResourceGraphStandIn) -> None:
    inventory = _from_graph(graph)
    assert inventory.source == "resource-graph"
    kinds = [r.kind for r in inventory]
    assert kinds == ["storage"] * 7 + ["sql", "keyvault"]
    # 7 storage rows at 3 a page: 3 requests, the 2nd and 3rd carrying the skip token.
    storage = [q for q in graph.requests if "storageaccounts'" in q.body["query"]]
    assert len(storage) == 3
    assert "$skipToken" not in storage[0].body["options"]
    assert storage[1].body["options"]["$skipToken"] and storage[2].body["options"]["$skipToken"]
    assert {q.body["options"]["resultFormat"] for q in graph.requests} == {"objectArray"}
    assert len(graph.requests) == 3 + 1 + 1 + 1  # one query per kind (fhir: an empty page)
    assert {q.api_version for q in graph.requests} == {"2021-03-01"}
    assert {q.authorization for q in graph.requests} == {f"Bearer {TOKEN}"}
    assert [q.body["query"] for q in graph.requests[-3:]] == [
        QUERIES["sql"],
        QUERIES["keyvault"],
        QUERIES["fhir"],
    ]
    by_id = inventory.by_id()
    archive = by_id[ROWS["microsoft.storage/storageaccounts"][-1]["id"]]
    assert archive.archive and archive.immutability_locked is True
    assert archive.tier == "restricted" and archive.customer_managed_key is True
    assert archive.public_network_disabled is False  # Enabled with an Allow default
    # Enabled with a Deny default is "selected networks": closed to the internet.
    assert by_id[ROWS["microsoft.storage/storageaccounts"][1]["id"]].public_network_disabled
    plain = by_id[ROWS["microsoft.storage/storageaccounts"][0]["id"]]
    assert plain.public_network_disabled is True and plain.private_endpoint is True
    assert plain.immutability_locked is None  # judged on the archive account only
    vault = by_id[VAULT.lower()]
    assert vault.public_network_disabled is False and vault.private_endpoint is False
    assert by_id[SQL_DB.lower()].private_endpoint is False  # no connections at all


def test_resource_graph_scoped_to_subscriptions(graph: ResourceGraphStandIn) -> None:
    inventory = _from_graph(graph, subscriptions=["sub-0"])
    assert {r.subscription for r in inventory} == {"sub-0"}
    assert len(inventory) == 3  # st002, st004, st006
    assert {tuple(q.body["subscriptions"]) for q in graph.requests} == {("sub-0",)}


def test_resource_graph_refuses_a_wrong_token(graph: ResourceGraphStandIn) -> None:
    with pytest.raises(ClientAuthenticationError):
        _from_graph(graph, token="wrong")
    assert graph.requests[0].status == 401


def test_the_standin_speaks_the_documented_path() -> None:
    assert PATH == "/providers/Microsoft.ResourceGraph/resources"
