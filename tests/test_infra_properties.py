"""The security properties of infra/ that matter, asserted on the Bicep text.

Bicep cannot be compiled here, so this reads the templates with a small string- and
comment-aware parser: it finds each `resource` block, its type, its condition and its body,
and checks the properties by value. Every check is a function that raises AssertionError with
the property and the reason it matters, so that `test_checks_catch_*` can prove, on edited
copies of the real files, that dropping a property fails the suite.

checkov (`make check-infra`) runs its generic rules on the same files; this file pins
phiwatch's own decisions: no anonymous or shared-key access, an immutable archive and a
mutable outbox and state, identity-only connections, the two stages' hubs and settings (every
`%SETTING%` a trigger binds to, each named after a `phiwatch.config.Settings` field), and each
role on the narrowest scope.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from phiwatch.config import Settings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
FUNCTION_APP = ROOT / "function_app.py"

Files = Mapping[str, str]  # path relative to infra/ -> text

# Built-in role definition ids.
EVENT_HUBS_DATA_RECEIVER = "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"
EVENT_HUBS_DATA_SENDER = "2b629674-e913-4c01-ae53-ef4638d8f975"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


# --- a light Bicep reader ------------------------------------------------------------------


def strip_comments(text: str) -> str:
    """The text without // and /* */ comments; string literals (with their escapes) kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _block_end(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at `start` (strings skipped)."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[text[start]]]
    i = start + 1
    while stack:
        c = text[i]
        if c == "'":
            i += 1
            while text[i] != "'":
                i += 2 if text[i] == "\\" else 1
        elif c in pairs:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
        i += 1
    return i


_RESOURCE = re.compile(
    r"^resource (\w+) '([^'@]+)@([^']+)'( existing)? = (?:if \((.*?)\) )?[{\[]", re.MULTILINE
)


@dataclass(frozen=True)
class Resource:
    file: str
    symbol: str
    type: str
    existing: bool
    condition: str | None
    body: str  # without comments

    def prop(self, key: str) -> str | None:
        """The value of the first `key: value` line in the body (any depth)."""
        m = re.search(rf"^\s*{re.escape(key)}: (.+?)\s*$", self.body, re.MULTILINE)
        return m.group(1) if m else None

    def block(self, key: str) -> str | None:
        """The `{...}` or `[...]` value of the first `key:` in the body."""
        m = re.search(rf"^\s*{re.escape(key)}: ([{{\[])", self.body, re.MULTILINE)
        if not m:
            return None
        return self.body[m.start(1) : _block_end(self.body, m.start(1))]


def resources(files: Files, type_: str | None = None, *, existing: bool = False) -> list[Resource]:
    found = []
    for name, text in files.items():
        if not name.endswith(".bicep"):
            continue
        code = strip_comments(text)
        for m in _RESOURCE.finditer(code):
            open_at = m.end() - 1
            found.append(
                Resource(
                    file=name,
                    symbol=m.group(1),
                    type=m.group(2),
                    existing=bool(m.group(4)),
                    condition=m.group(5),
                    body=code[open_at : _block_end(code, open_at)],
                )
            )
    return [r for r in found if (type_ is None or r.type == type_) and (existing or not r.existing)]


def one(found: list[Resource], what: str) -> Resource:
    assert len(found) == 1, f"expected exactly one {what}, found {len(found)}"
    return found[0]


def param_default(text: str, name: str) -> str | None:
    m = re.search(rf"^param {name} \w+ = (.+?)\s*$", strip_comments(text), re.MULTILINE)
    return m.group(1) if m else None


def param_description(text: str, name: str) -> str:
    """The @description text right above `param name` (decorators may be in any order)."""
    m = re.search(rf"((?:^@.*\n)+)param {name} ", text, re.MULTILINE)
    assert m, f"param {name} has no decorators (no @description)"
    desc = re.search(r"@description\('((?:[^'\\]|\\.)*)'\)", m.group(1))
    assert desc, f"param {name} has no @description"
    return desc.group(1)


def array_items(array: str) -> list[str]:
    """The top-level `{...}` items of a `[...]` block."""
    items, i = [], 1
    while (start := array.find("{", i)) >= 0:
        end = _block_end(array, start)
        items.append(array[start:end])
        i = end
    return items


def module_call(main: str, symbol: str) -> str:
    """The `{...}` body of `module <symbol> '...' = {` in a template (comments stripped)."""
    code = strip_comments(main)
    m = re.search(rf"^module {symbol} '[^']+' = \{{", code, re.M)
    assert m, f"main.bicep must deploy `module {symbol}`"
    return code[m.end() - 1 : _block_end(code, m.end() - 1)]


def has_line(block: str, line: str) -> bool:
    return re.search(rf"^\s*{re.escape(line)}$", block, re.M) is not None


def load_files(root: Path = INFRA) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in {".bicep", ".json", ".md"}
    }


# --- the checks ------------------------------------------------------------------------------


def check_storage_accounts(files: Files) -> None:
    accounts = resources(files, "Microsoft.Storage/storageAccounts")
    assert {a.file for a in accounts} >= {
        "modules/storage-archive.bicep",
        "modules/storage-host.bicep",
    }, "phiwatch's storage accounts (archive, host) must be defined in infra/modules"
    for a in accounts:
        where = f"{a.file} ({a.symbol})"
        assert a.prop("allowBlobPublicAccess") == "false", (
            f"{where}: allowBlobPublicAccess must be false: the archive holds raw PHI audit "
            "records, and no container may ever be readable anonymously"
        )
        assert a.prop("allowSharedKeyAccess") == "false", (
            f"{where}: allowSharedKeyAccess must be false: an account key bypasses RBAC and "
            "the audit trail of who wrote what; phiwatch reaches storage only by identity"
        )
        assert a.prop("minimumTlsVersion") == "'TLS1_2'", (
            f"{where}: minimumTlsVersion must be 'TLS1_2': older TLS is not acceptable for PHI"
        )
        assert a.prop("supportsHttpsTrafficOnly") == "true", (
            f"{where}: supportsHttpsTrafficOnly must be true: no plain-HTTP access to PHI"
        )
    for c in resources(files, "Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert c.prop("publicAccess") == "'None'", (
            f"{c.file} ({c.symbol}): container publicAccess must be 'None' (no anonymous reads)"
        )


def check_archive_immutability(files: Files) -> None:
    module = files["modules/storage-archive.bicep"]
    archive_only = {"modules/storage-archive.bicep": module}
    service = one(
        resources(archive_only, "Microsoft.Storage/storageAccounts/blobServices"),
        "blob service in storage-archive.bicep",
    )
    assert service.prop("isVersioningEnabled") == "true", (
        "archive account: blob versioning must be on: version-level immutability (WORM) "
        "requires it, and without it the archive container cannot be made immutable"
    )
    containers = {
        c.symbol: c
        for c in resources(
            archive_only, "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
    }
    archive = containers.get("archiveContainer")
    assert archive, "storage-archive.bicep must define the archive container (archiveContainer)"
    assert param_default(module, "archiveContainerName") == "'phiwatch-archive'", (
        "the archive container is named phiwatch-archive (PHIWATCH_ARCHIVE_URL)"
    )
    worm = archive.block("immutableStorageWithVersioning") or ""
    assert re.search(r"\benabled: true\b", worm), (
        "phiwatch-archive: immutableStorageWithVersioning.enabled must be true: version-level "
        "WORM is what stops the app's own role (Storage Blob Data Contributor) from "
        "overwriting or deleting archived records; RBAC alone cannot"
    )
    policy = one(
        resources(
            archive_only,
            "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies",
        ),
        "immutability policy in storage-archive.bicep",
    )
    assert policy.prop("parent") == "archiveContainer", (
        "the time-based retention policy must be the archive container's own (container-level "
        "default policy): the app refuses a container without one"
    )
    assert policy.prop("immutabilityPeriodSinceCreationInDays") == "immutabilityPeriodInDays", (
        "the retention period must come from the immutabilityPeriodInDays parameter"
    )
    assert param_default(module, "immutabilityPeriodInDays") == "2190", (
        "immutabilityPeriodInDays must default to 2190 days (6 years of audit records)"
    )
    assert policy.condition == "!immutabilityPolicyLocked", (
        "the retention policy may be left out only once it has been locked "
        "(immutabilityPolicyLocked=true); any other condition could deploy an archive without "
        "retention"
    )
    for key in ("allowProtectedAppendWrites", "allowProtectedAppendWritesAll"):
        assert policy.prop(key) == "false", (
            f"{key} must be false: the archive writes whole blobs once; appends to protected "
            "blobs would let the content of an archived record change"
        )
    main = files["main.bicep"]
    assert param_default(main, "archiveImmutabilityDays") == "2190", (
        "main.bicep: archiveImmutabilityDays must default to 2190"
    )
    assert re.search(r"^\s*immutabilityPeriodInDays: archiveImmutabilityDays$", main, re.M), (
        "main.bicep must pass archiveImmutabilityDays to the archive module"
    )
    assert param_default(main, "archiveImmutabilityLocked") == "false", (
        "main.bicep: archiveImmutabilityLocked must default to false (trial): locking is "
        "irreversible and must be a deliberate, documented step"
    )
    assert re.search(r"^\s*immutabilityPolicyLocked: archiveImmutabilityLocked$", main, re.M), (
        "main.bicep must pass archiveImmutabilityLocked to the archive module"
    )
    lock_doc = param_description(main, "archiveImmutabilityLocked")
    assert "README" in lock_doc and "cannot be undone" in lock_doc, (
        "the lock parameter's description must say it cannot be undone and point to the README"
    )
    readme = files["README.md"]
    section = re.search(r"^## Immutability: unlocked or locked\n(.*?)(?=^## )", readme, re.M | re.S)
    assert section, "infra/README.md must have the section 'Immutability: unlocked or locked'"
    for needle in ("immutability-policy lock", "archiveImmutabilityLocked=true", "cannot"):
        assert needle in section.group(1), (
            f"the README lock section must explain the lock ({needle!r}): unlocked for a trial, "
            "locked for production, and that locking cannot be undone"
        )


def lifecycle_rule(files: Files, container_param: str) -> str | None:
    """The archive account's lifecycle rule whose prefix is the container `container_param`."""
    archive_only = {"modules/storage-archive.bicep": files["modules/storage-archive.bicep"]}
    lifecycle = one(
        resources(archive_only, "Microsoft.Storage/storageAccounts/managementPolicies"),
        "lifecycle policy in storage-archive.bicep",
    )
    assert "archiveContainerName" not in lifecycle.body, (
        "the lifecycle policy must not touch the archive container"
    )
    for rule in array_items(lifecycle.block("rules") or "[]"):
        if f"'${{{container_param}}}/'" in rule:
            return rule
    return None


def check_mutable_container(
    files: Files, symbol: str, name_param: str, name: str, setting: str, why: str
) -> None:
    """A container the app rewrites: in the archive account, no WORM, old versions expire."""
    module = files["modules/storage-archive.bicep"]
    archive_only = {"modules/storage-archive.bicep": module}
    assert param_default(module, name_param) == f"'{name}'", (
        f"the container is named {name} ({setting})"
    )
    containers = {
        c.symbol: c
        for c in resources(
            archive_only, "Microsoft.Storage/storageAccounts/blobServices/containers"
        )
    }
    container = containers.get(symbol)
    assert container, f"storage-archive.bicep must define the {name} container ({symbol})"
    assert container.prop("name") == name_param
    assert container.prop("parent") == "archiveBlobService"
    assert "immutableStorageWithVersioning" not in container.body, (
        f"{name} must NOT be immutable: {why}"
    )
    for policy in resources(
        files, "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
    ):
        assert policy.prop("parent") != symbol, (
            f"no immutability policy may target the {name} container"
        )
    rule = lifecycle_rule(files, name_param) or ""
    assert re.search(r"\bversion: \{\s*delete: \{", rule), (
        f"versioning is on for the whole account, so a lifecycle rule must delete {name}'s "
        "previous versions (otherwise every rewrite is kept and billed forever)"
    )


def check_outbox_mutable(files: Files) -> None:
    check_mutable_container(
        files,
        "outboxContainer",
        "outboxContainerName",
        "phiwatch-outbox",
        "PHIWATCH_OUTBOX_URL",
        "the app rewrites and deletes outbox entries as Sentinel accepts them; WORM there "
        "would stall delivery",
    )


def check_state_mutable(files: Files) -> None:
    check_mutable_container(
        files,
        "stateContainer",
        "stateContainerName",
        "phiwatch-state",
        "PHIWATCH_STATE_URL",
        "detect replaces each partition's snapshot with an etag condition after every batch; "
        "WORM there would refuse every save and stall detection",
    )
    module = strip_comments(files["modules/storage-archive.bicep"])
    assert (
        "output stateUrl string = "
        "'${archiveAccount.properties.primaryEndpoints.blob}${stateContainer.name}'"
    ) in module, (
        "PHIWATCH_STATE_URL (output stateUrl) must be the state container's URL: pointed at the "
        "archive, every snapshot replacement would be refused by the immutability policy"
    )
    assert has_line(
        module_call(files["main.bicep"], "archive"), "stateContainerName: stateContainerName"
    )
    assert re.search(r"^var stateContainerName = 'phiwatch-state'$", files["main.bicep"], re.M)


def check_privacy_inputs(files: Files) -> None:
    """The roster and patient index: a private, versioned container the app only reads, its
    blobs named by PHIWATCH_ROSTER_URL / PHIWATCH_PATIENTS_URL, reached by identity."""
    check_mutable_container(
        files,
        "privacyContainer",
        "privacyContainerName",
        "phiwatch-privacy",
        "PHIWATCH_ROSTER_URL",
        "an upload of a new roster is a new version of the same blob",
    )
    archive_only = {"modules/storage-archive.bicep": files["modules/storage-archive.bicep"]}
    containers = resources(
        archive_only, "Microsoft.Storage/storageAccounts/blobServices/containers"
    )
    container = next(c for c in containers if c.symbol == "privacyContainer")
    assert container.prop("publicAccess") == "'None'", (
        "the raw roster and patient index must never be readable anonymously"
    )
    service = one(
        resources(archive_only, "Microsoft.Storage/storageAccounts/blobServices"), "blob service"
    )
    assert service.prop("isVersioningEnabled") == "true", (
        "the blob source reloads on a new version id / ETag: versioning must be on"
    )
    on_privacy = [
        r
        for r in resources(files, "Microsoft.Authorization/roleAssignments")
        if r.prop("scope") == "privacyContainer"
    ]
    assert [r.prop("roleDefinitionId") for r in on_privacy] == [
        "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        "roles.storageBlobDataReader)"
    ], "the app's only role on the privacy container is Storage Blob Data Reader"
    assert f"storageBlobDataReader: '{STORAGE_BLOB_DATA_READER}'" in files["modules/roles.bicep"]
    settings = app_settings(files)
    assert settings.get("PHIWATCH_ROSTER_URL") == "rosterUrl"
    assert settings.get("PHIWATCH_PATIENTS_URL") == "patientsUrl"
    assert {"roster_url", "patients_url"} <= set(Settings.model_fields)
    module = files["modules/functionapp.bicep"]
    assert param_default(module, "rosterUrl") == "''"
    assert param_default(module, "patientsUrl") == "''"
    call = module_call(files["main.bicep"], "functionApp")
    for name, blob in (("rosterUrl", "rosterBlobName"), ("patientsUrl", "patientsBlobName")):
        wiring = (
            f"{name}: empty({blob}) ? '' : '${{archive.outputs.privacyContainerUrl}}/${{{blob}}}'"
        )
        assert has_line(call, wiring), (
            f"main.bicep must point {name} into the privacy container (`{wiring}`): the "
            "app's reader role covers that container only"
        )
        assert param_default(files["main.bicep"], blob) == "''"
    assert has_line(
        module_call(files["main.bicep"], "archive"), "privacyContainerName: privacyContainerName"
    )
    assert re.search(r"^var privacyContainerName = 'phiwatch-privacy'$", files["main.bicep"], re.M)


def check_watchlists(files: Files) -> None:
    """The pseudonymised watchlists: the aliases and search keys the exporter writes, the
    content from secure parameters only, an optional module of the Sentinel template."""
    from phiwatch.privacy import watchlists as exported

    lists = {
        r.symbol: r
        for r in resources(
            {"sentinel/watchlists.bicep": files["sentinel/watchlists.bicep"]},
            "Microsoft.SecurityInsights/watchlists",
        )
    }
    assert set(lists) == {"workforce", "patients"}
    code = files["sentinel/watchlists.bicep"]
    for symbol, alias, key, columns, content in (
        (
            "workforce",
            exported.WORKFORCE,
            exported.WORKFORCE_SEARCH_KEY,
            exported.WORKFORCE_COLUMNS,
            "workforceContent",
        ),
        (
            "patients",
            exported.PATIENTS,
            exported.PATIENTS_SEARCH_KEY,
            exported.PATIENTS_COLUMNS,
            "patientsContent",
        ),
    ):
        wl = lists[symbol]
        assert wl.prop("name") == f"'{alias}'" and wl.prop("watchlistAlias") == f"'{alias}'"
        assert key in columns
        assert wl.prop("itemsSearchKey") == f"'{key}'", (
            f"{alias}: itemsSearchKey must be {key}, the column `phiwatch roster watchlists` "
            "writes for it"
        )
        assert wl.prop("contentType") == "'text/csv'"
        assert wl.prop("rawContent") == content
        assert wl.prop("scope") == "workspace"
        assert wl.condition == f"!empty({content})"
        assert re.search(rf"^@secure\(\)\nparam {content} string = ''$", code, re.M), (
            f"{content} must be @secure(): deployment history must not keep the list"
        )
    main = strip_comments(files["sentinel/main.bicep"])
    wired = r"^module watchlists 'watchlists.bicep' = if \(deployWatchlists\) \{"
    assert re.search(wired, main, re.M), "sentinel/main.bicep: watchlists is an optional module"
    assert param_default(files["sentinel/main.bicep"], "deployWatchlists") == "false"
    readme = files["sentinel/README.md"]
    for text in ("phiwatch roster watchlists", "3.8 MB", "SAS", "500 MB"):
        assert text in readme, f"infra/sentinel/README.md must say {text!r} (Watchlists)"


def check_network_documented(files: Files) -> None:
    readme = files["README.md"]
    section = re.search(r"^## Network exposure\n(.*?)(?=^## )", readme, re.M | re.S)
    assert section, (
        "infra/README.md must have a 'Network exposure' section: public endpoints are a "
        "decision that has to be written down with its reason and the hardening path"
    )
    for name in ("Event Hubs", "storage", "Key Vault", "Function App", "Application Insights"):
        assert name in section.group(1), f"'Network exposure' must cover {name}"
    for name, text in files.items():
        if name.endswith(".bicep") and "publicNetworkAccess: 'Enabled'" in strip_comments(text):
            assert "Network exposure" in text, (
                f"{name} enables public network access: it must point to the README's "
                "'Network exposure' decision"
            )


def check_event_hubs(files: Files) -> None:
    spaces = {n.symbol: n for n in resources(files, "Microsoft.EventHub/namespaces")}
    assert sorted(spaces) == ["namespace", "phiEventsNamespace"], (
        "two Event Hubs namespaces: `namespace` (diagnostics, SAS for Azure Monitor) and "
        "`phiEventsNamespace` (phi-events, identity only)"
    )
    for symbol, units in (("namespace", "throughputUnits"), ("phiEventsNamespace", None)):
        ns = spaces[symbol]
        assert ns.prop("minimumTlsVersion") == "'1.2'", (
            f"Event Hubs namespace {symbol}: minimumTlsVersion must be '1.2' (PHI audit logs)"
        )
        sku = ns.block("sku") or ""
        assert "name: 'Standard'" in sku and (units is None or f"capacity: {units}" in sku), (
            "Event Hubs namespace: Standard tier with the throughput units from a parameter"
        )
    ns = spaces["namespace"]
    assert ns.prop("disableLocalAuth") == "disableLocalAuth", (
        "Event Hubs namespace: disableLocalAuth must be set explicitly from its parameter: Azure "
        "Monitor diagnostic settings can only deliver with SAS, so this is a documented "
        "decision, never an omitted default"
    )
    readme = files["README.md"]
    assert "## Event Hubs local authentication" in readme, (
        "infra/README.md must explain the Event Hubs local authentication decision"
    )
    hubs = {h.symbol: h for h in resources(files, "Microsoft.EventHub/namespaces/eventhubs")}
    assert sorted(hubs) == ["hub", "phiEventsHub"], (
        "the namespace has exactly two hubs: `diagnostics` (hub) and `phi-events` (phiEventsHub)"
    )
    hub = hubs["hub"]
    assert hub.prop("name") == "eventHubName" and hub.prop("parent") == "namespace"
    assert hub.prop("partitionCount") == "partitionCount"
    module = files["modules/eventhubs.bicep"]
    assert param_default(module, "eventHubName") == "'diagnostics'", (
        "the hub is named diagnostics (PHIWATCH_EVENTHUB_NAME)"
    )
    assert param_default(module, "consumerGroupName") == "'phiwatch'", (
        "the consumer group is phiwatch (PHIWATCH_EVENTHUB_CONSUMER_GROUP)"
    )
    groups = resources(files, "Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    assert sorted(g.prop("parent") or "" for g in groups) == ["hub", "phiEventsHub"], (
        "one phiwatch consumer group per hub: normalize reads `diagnostics`, detect `phi-events`"
    )
    group = next(g for g in groups if g.prop("parent") == "hub")
    assert group.prop("name") == "consumerGroupName"
    rules = resources(files, "Microsoft.EventHub/namespaces/authorizationRules")
    rules += resources(files, "Microsoft.EventHub/namespaces/eventhubs/authorizationRules")
    rule = one(rules, "Event Hubs authorization rule")
    assert rule.prop("parent") == "namespace", (
        "the SAS rule for diagnostic settings belongs to the diagnostics namespace only: on "
        "the phi-events namespace it could forge detection input"
    )
    rights = re.findall(r"'(\w+)'", rule.block("rights") or "")
    assert rights == ["Send"], (
        "the only SAS rule (for Azure Monitor diagnostic settings) must have Send rights only: "
        "Listen would let its key read PHI logs, Manage would let it reconfigure the namespace"
    )


def check_phi_events_hub(files: Files) -> None:
    module = files["modules/eventhubs.bicep"]
    hubs = {h.symbol: h for h in resources(files, "Microsoft.EventHub/namespaces/eventhubs")}
    phi = hubs.get("phiEventsHub")
    assert phi, "modules/eventhubs.bicep must define the phi-events hub (phiEventsHub)"
    assert phi.prop("parent") == "phiEventsNamespace", (
        "phi-events must be in its own namespace: the diagnostics namespace keeps a "
        "namespace-level SAS Send rule for Azure Monitor, which could write to any of its hubs "
        "and forge detection input"
    )
    spaces = {n.symbol: n for n in resources(files, "Microsoft.EventHub/namespaces")}
    own = spaces.get("phiEventsNamespace")
    assert own and own.prop("disableLocalAuth") == "true", (
        "the phi-events namespace must have disableLocalAuth: true (a literal, not a "
        "parameter): only the app's identity, by role, may send detection's input"
    )
    assert own.prop("name") == "phiEventsNamespaceName"
    for rule in resources(files, "Microsoft.EventHub/namespaces/authorizationRules"):
        assert rule.prop("parent") != "phiEventsNamespace", "no SAS rule on phi-events"
    assert phi.prop("name") == "phiEventsHubName"
    assert param_default(module, "phiEventsHubName") == "'phi-events'", (
        "the hub is named phi-events (PHIWATCH_PHI_EVENTS_HUB)"
    )
    assert phi.prop("partitionCount") == "phiEventsPartitionCount", (
        "phi-events takes its own partition count: it is detect's parallelism"
    )
    assert phi.prop("messageRetentionInDays") == "phiEventsMessageRetentionInDays"
    for template in ("modules/eventhubs.bicep", "main.bicep"):
        param = "phiEventsPartitionCount"
        default = param_default(files[template], param) or ""
        assert default.isdigit() and 1 <= int(default) <= 32, (
            f"{template}: {param} must default to a partition count (Standard: 1-32)"
        )
        doc = param_description(files[template], param)
        assert "detect" in doc and "lowered" in doc, (
            f"{template}: {param} must say it is detect's parallelism and can never be lowered"
        )
    groups = [
        g
        for g in resources(files, "Microsoft.EventHub/namespaces/eventhubs/consumergroups")
        if g.prop("parent") == "phiEventsHub"
    ]
    group = one(groups, "consumer group on phi-events")
    assert group.prop("name") == "phiEventsConsumerGroupName"
    assert param_default(module, "phiEventsConsumerGroupName") == "'phiwatch'", (
        "detect reads phi-events with consumer group phiwatch (PHIWATCH_PHI_EVENTS_CONSUMER_GROUP)"
    )
    code = strip_comments(module)
    for output in (
        "output phiEventsHubName string = phiEventsHub.name",
        "output phiEventsConsumerGroupName string = phiEventsConsumerGroup.name",
    ):
        assert has_line(code, output), f"modules/eventhubs.bicep must have `{output}`"
    main = files["main.bicep"]
    assert re.search(r"^var phiEventsHubName = 'phi-events'$", main, re.M)
    call = module_call(main, "eventHubs")
    for wiring in (
        "phiEventsHubName: phiEventsHubName",
        "phiEventsPartitionCount: phiEventsPartitionCount",
        "phiEventsMessageRetentionInDays: phiEventsMessageRetentionInDays",
        "phiEventsConsumerGroupName: phiEventsConsumerGroupName",
        "phiEventsNamespaceName: names.phiEventsNamespace",
    ):
        assert has_line(call, wiring), f"main.bicep must pass `{wiring}` to the eventHubs module"
    names = re.search(r"^var names = \{(.*?)^\}", strip_comments(main), re.M | re.S)
    assert names and re.search(r"^\s*phiEventsNamespace: '[^']+'$", names.group(1), re.M)
    assert "eventHubNamespace: 'evhns-${base}-${suffix}'" in names.group(1)
    for name in ("diagnostics.bicep", "diagnostics-entra.bicep"):
        assert param_default(files[name], "eventHubName") == "'diagnostics'", (
            f"{name}: diagnostic settings stream to `diagnostics`, never to phi-events "
            "(normalised events only, written by phiwatch)"
        )
    example = json.loads(files["diagnostics.parameters.example.json"])["parameters"]
    assert example.get("eventHubName", {"value": "diagnostics"})["value"] == "diagnostics"


def check_key_vault(files: Files) -> None:
    vault = one(resources(files, "Microsoft.KeyVault/vaults"), "Key Vault")
    assert vault.prop("enableRbacAuthorization") == "true", (
        "Key Vault: enableRbacAuthorization must be true: access policies cannot be scoped or "
        "audited like Azure RBAC role assignments"
    )
    assert vault.prop("enablePurgeProtection") == "true", (
        "Key Vault: enablePurgeProtection must be true: a purged signing or pseudonym key "
        "makes the archive unverifiable and the pseudonyms unlinkable"
    )
    assert vault.prop("enableSoftDelete") == "true", "Key Vault: soft delete must be on"
    retention = vault.prop("softDeleteRetentionInDays")
    assert retention and retention.isdigit() and int(retention) >= 7, (
        "Key Vault: softDeleteRetentionInDays must be set (7-90)"
    )
    key = one(resources(files, "Microsoft.KeyVault/vaults/keys"), "Key Vault key")
    assert key.prop("name") == "signingKeyName"
    assert param_default(files["modules/keyvault.bicep"], "signingKeyName") == (
        "'phiwatch-archive-signing'"
    )
    assert key.prop("kty") in {"'EC'", "'EC-HSM'"} and key.prop("curveName") == "'P-256'", (
        "the archive signing key must be EC P-256: the app signs ES256 (Key Vault has no Ed25519)"
    )
    assert "'sign'" in (key.block("keyOps") or ""), "the signing key must allow 'sign'"
    assert key.prop("exportable") == "false", "the signing key must not be exportable"
    kv = files["modules/keyvault.bicep"]
    written = resources(files, "Microsoft.KeyVault/vaults/secrets")
    assert not written, (
        "no template may write a Key Vault secret: a deployment that writes the pseudonym key "
        "adds a new version each time and (with a versionless reference) silently changes "
        "every PatientRef; the key is set once by hand (infra/README.md, Keys)"
    )
    for template in ("main.bicep", "modules/keyvault.bicep"):
        assert "param pseudonymKey " not in strip_comments(files[template]), (
            f"{template}: no pseudonymKey parameter (the template never writes the secret)"
        )
        assert param_default(files[template], "pseudonymKeyVersion") == "''", (
            f"{template}: pseudonymKeyVersion (the pinned secret version) defaults to empty"
        )
    reference = re.search(r"^output pseudonymKeyReference string = (.+)$", strip_comments(kv), re.M)
    assert reference, "modules/keyvault.bicep must output pseudonymKeyReference"
    assert (
        "'@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/"
        "${pseudonymSecretName}/${pseudonymKeyVersion})'"
    ) in reference.group(1), (
        "PHIWATCH_PSEUDONYM_KEY must reference one secret version (SecretUri=.../<version>): a "
        "versionless reference follows every new version and changes every PatientRef"
    )
    assert reference.group(1).startswith("empty(pseudonymKeyVersion) ? '' : "), (
        "without a version there is no reference at all (never a versionless one)"
    )
    assert has_line(
        module_call(files["main.bicep"], "keyVault"), "pseudonymKeyVersion: pseudonymKeyVersion"
    )
    readme = files["README.md"]
    rotation = re.search(
        r"^### Rotating the pseudonymisation key\n(.*?)(?=^##)", readme, re.M | re.S
    )
    assert rotation, "infra/README.md must document rotation ('Rotating the pseudonymisation key')"
    for needle in ("pseudonymKeyVersion", "PatientRef", "key id"):
        assert needle in rotation.group(1), f"the rotation section must cover {needle!r}"


EXPECTED_APP_SETTINGS = {
    "AzureWebJobsStorage__accountName": "hostStorageAccountName",
    "EVENTHUB__fullyQualifiedNamespace": "eventHubFullyQualifiedNamespace",
    "PHIEVENTS__fullyQualifiedNamespace": "phiEventsFullyQualifiedNamespace",
    "PHIWATCH_EVENTHUB_NAME": "eventHubName",
    "PHIWATCH_EVENTHUB_CONSUMER_GROUP": "consumerGroupName",
    "PHIWATCH_PHI_EVENTS_HUB": "phiEventsHubName",
    "PHIWATCH_PHI_EVENTS_NAMESPACE": "phiEventsFullyQualifiedNamespace",
    "PHIWATCH_PHI_EVENTS_CONSUMER_GROUP": "phiEventsConsumerGroupName",
    "PHIWATCH_STATE_URL": "stateUrl",
    "PHIWATCH_ARCHIVE_URL": "archiveUrl",
    "PHIWATCH_ARCHIVE_REQUIRE_IMMUTABILITY": "'true'",
    "PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED": "archiveImmutabilityLocked ? 'true' : 'false'",
    "PHIWATCH_OUTBOX_URL": "outboxUrl",
    "PHIWATCH_PSEUDONYM_KEY": "pseudonymKeyReference",
    "PHIWATCH_ARCHIVE_SIGNING_KEY_URL": "signingKeyUrl",
    "PHIWATCH_DCR_ENDPOINT": "dcrEndpoint",
    "PHIWATCH_DCR_IMMUTABLE_ID": "dcrImmutableId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "'Authorization=AAD'",
}


def app_settings(files: Files) -> dict[str, str]:
    """The Function App's app settings: {name: value expression}."""
    site = one(resources(files, "Microsoft.Web/sites"), "Function App")
    block = site.block("appSettings")
    assert block, "the Function App must set siteConfig.appSettings"
    pairs = re.findall(r"\{\s*name: '(\w+)'\s*value: (.+?)\s*$", block, re.M)
    assert len(pairs) == block.count("name:"), "each app setting must be {name: '...', value: ...}"
    return dict(pairs)


def check_function_app(files: Files) -> None:
    plan = one(resources(files, "Microsoft.Web/serverfarms"), "App Service plan")
    sku = plan.block("sku") or ""
    assert "name: 'FC1'" in sku and "tier: 'FlexConsumption'" in sku, (
        "the plan must be Flex Consumption (FC1 / FlexConsumption)"
    )
    site = one(resources(files, "Microsoft.Web/sites"), "Function App")
    assert "type: 'SystemAssigned'" in (site.block("identity") or ""), (
        "the Function App must have a system-assigned managed identity: every connection "
        "(Event Hubs, storage, Key Vault, DCR) authenticates with it instead of a key"
    )
    assert site.prop("httpsOnly") == "true", "the Function App must be httpsOnly"
    assert site.prop("minTlsVersion") == "'1.2'", "the Function App must require TLS 1.2"
    runtime = site.block("runtime") or ""
    assert "name: 'python'" in runtime and "version: '3.11'" in runtime, (
        "functionAppConfig.runtime must be python 3.11 (the app's Python; on Flex Consumption "
        "this replaces FUNCTIONS_WORKER_RUNTIME=python)"
    )
    storage = site.block("deployment") or ""
    assert "type: 'SystemAssignedIdentity'" in storage, (
        "the Flex deployment package container must be reached by identity, not a key"
    )
    settings = app_settings(files)
    for name, value in EXPECTED_APP_SETTINGS.items():
        assert settings.get(name) == value, (
            f"app setting {name} must be {value} (phiwatch reads it; identity-based, no secret "
            f"in the value); found {settings.get(name)}"
        )
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings, (
        "FUNCTIONS_WORKER_RUNTIME must not be an app setting: Flex Consumption rejects the "
        "deployment with it; the runtime is functionAppConfig.runtime"
    )
    assert "AzureWebJobsStorage" not in settings, (
        "AzureWebJobsStorage (a connection string) must not be set: host storage is by identity"
    )
    kv = files["modules/keyvault.bicep"]
    assert param_default(kv, "pseudonymSecretName") == "'phiwatch-pseudonym-key'"
    insights = one(resources(files, "Microsoft.Insights/components"), "Application Insights")
    assert insights.prop("DisableLocalAuth") == "true", (
        "Application Insights must have local auth disabled, so its connection string (an "
        "identifier) cannot be used to send telemetry without an Entra ID token"
    )
    diagnostics = [
        r
        for r in resources(files, "Microsoft.Insights/diagnosticSettings")
        if r.prop("scope") == "site"
    ]
    assert diagnostics and "'FunctionAppLogs'" in diagnostics[0].body, (
        "the Function App's own logs (FunctionAppLogs) must go to Log Analytics"
    )


# The two-stage settings (phiwatch.config.Settings fields) infra must set.
TWO_STAGE_FIELDS = (
    "phi_events_hub",
    "phi_events_namespace",
    "phi_events_consumer_group",
    "state_url",
)


def check_app_settings_match_app(files: Files) -> None:
    """Every setting a trigger binds to is set; every PHIWATCH_ setting is one phiwatch reads."""
    settings = app_settings(files)
    source = FUNCTION_APP.read_text(encoding="utf-8")
    bound = set(re.findall(r"%([A-Za-z0-9_]+)%", source))
    assert bound, "function_app.py binds no %SETTING%: the reader no longer finds the bindings"
    missing = sorted(bound - set(settings))
    assert not missing, (
        f"function_app.py binds {missing} but the Function App's app settings do not set them: "
        "the host cannot start that trigger (an unresolved %SETTING% fails the function)"
    )
    connections = set(re.findall(r"\bconnection=\"([A-Za-z0-9_]+)\"", source))
    assert connections, "function_app.py has no trigger connection: the reader is broken"
    for connection in connections:
        assert f"{connection}__fullyQualifiedNamespace" in settings, (
            f"trigger connection {connection} needs {connection}__fullyQualifiedNamespace "
            "(identity-based connection)"
        )
        assert settings.get(f"{connection}__credential") == "'managedidentity'"
    assert Settings.model_config["env_prefix"] == "PHIWATCH_"
    read = bound | set(re.findall(r"os\.(?:environ\.get|getenv)\(\s*\"(\w+)\"", source))
    read |= {f"PHIWATCH_{field.upper()}" for field in Settings.model_fields}
    unknown = sorted(name for name in settings if name.startswith("PHIWATCH_") and name not in read)
    assert not unknown, (
        f"app settings {unknown} match no phiwatch.config.Settings field and nothing "
        "function_app.py reads: phiwatch would ignore them (a typo here silently falls back to "
        "the default)"
    )
    for field in TWO_STAGE_FIELDS:
        assert field in Settings.model_fields, f"phiwatch.config.Settings has no field {field}"
        assert f"PHIWATCH_{field.upper()}" in settings, (
            f"the two stages need PHIWATCH_{field.upper()} in the app settings"
        )
    detect = re.search(
        r'connection="(\w+)",\s*cardinality="many",\s*consumer_group="%PHIWATCH_PHI_EVENTS_', source
    )
    assert detect and detect.group(1) != "EVENTHUB", (
        "detect's trigger needs its own connection: phi-events is in its own namespace"
    )
    namespace = settings.get(f"{detect.group(1)}__fullyQualifiedNamespace")
    assert settings.get("PHIWATCH_PHI_EVENTS_NAMESPACE") == namespace, (
        "normalize publishes to PHIWATCH_PHI_EVENTS_NAMESPACE and detect reads phi-events "
        f"through the {detect.group(1)} connection: both must be the phi-events namespace"
    )
    assert namespace != settings.get("EVENTHUB__fullyQualifiedNamespace"), (
        "phi-events must not be reached through the diagnostics namespace"
    )
    module = files["modules/functionapp.bicep"]
    assert param_default(module, "phiEventsHubName") == "'phi-events'"
    assert param_default(module, "phiEventsConsumerGroupName") == "'phiwatch'"
    call = module_call(files["main.bicep"], "functionApp")
    for wiring in (
        "eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace",
        "phiEventsFullyQualifiedNamespace: eventHubs.outputs.phiEventsFullyQualifiedNamespace",
        "pseudonymKeyReference: keyVault.outputs.pseudonymKeyReference",
        "archiveImmutabilityLocked: archiveImmutabilityLocked",
        "phiEventsHubName: eventHubs.outputs.phiEventsHubName",
        "phiEventsConsumerGroupName: eventHubs.outputs.phiEventsConsumerGroupName",
        "stateUrl: archive.outputs.stateUrl",
    ):
        assert has_line(call, wiring), f"main.bicep must pass `{wiring}` to the functionApp module"


_FORBIDDEN = re.compile(
    r"accountkey|sharedaccesskey|sharedaccesssignature|listkeys\(|listaccountsas|"
    r"connectionstring|connection_string|sig=",
    re.IGNORECASE,
)
# The one allowed: Application Insights' connection string, which identifies the component and
# carries no secret once local auth is disabled (checked in check_function_app).
_ALLOWED = (
    "'APPLICATIONINSIGHTS_CONNECTION_STRING'",
    "value: appInsights.properties.ConnectionString",
)


def check_no_keys(files: Files) -> None:
    for name, text in files.items():
        if name.endswith(".md"):
            continue  # prose may say "no connection string"
        code = strip_comments(text) if name.endswith(".bicep") else text
        for line in code.splitlines():
            if _FORBIDDEN.search(line) and not any(a in line for a in _ALLOWED):
                raise AssertionError(
                    f"{name}: {line.strip()!r}: no account keys, SAS or connection strings in "
                    "infra/: phiwatch connects by managed identity only, and a key in a "
                    "template or parameter file ends up in deployment history"
                )


EXPECTED_ROLES = [
    # (role id, resource type of the scope, name parameter of the scope, why)
    (
        EVENT_HUBS_DATA_RECEIVER,
        "Microsoft.EventHub/namespaces/eventhubs",
        "eventHubName",
        "read the diagnostics hub; the hub, not the namespace",
    ),
    (
        EVENT_HUBS_DATA_SENDER,
        "Microsoft.EventHub/namespaces/eventhubs",
        "phiEventsHubName",
        "normalize publishes to phi-events; that hub, not the namespace (which would let the "
        "app write into `diagnostics` too)",
    ),
    (
        EVENT_HUBS_DATA_RECEIVER,
        "Microsoft.EventHub/namespaces/eventhubs",
        "phiEventsHubName",
        "detect reads phi-events; the hub, not the namespace",
    ),
    (
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "archiveContainerName",
        "create archive blobs; the archive container, not the account",
    ),
    (
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "outboxContainerName",
        "keep outbox entries; the outbox container, not the account",
    ),
    (
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "stateContainerName",
        "detect's state snapshots; the state container, not the account",
    ),
    (
        STORAGE_BLOB_DATA_READER,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "privacyContainerName",
        "read the roster and patient index; that container, and read only: the app never "
        "writes its own privacy inputs",
    ),
    (
        STORAGE_BLOB_DATA_OWNER,
        "Microsoft.Storage/storageAccounts",
        "hostStorageAccountName",
        "Functions host storage and deployment package; the host-only account",
    ),
    (
        MONITORING_METRICS_PUBLISHER,
        "Microsoft.Insights/dataCollectionRules",
        "dcrName",
        "upload to Sentinel; the DCR only",
    ),
    (
        MONITORING_METRICS_PUBLISHER,
        "Microsoft.Insights/components",
        "appInsightsName",
        "Entra ID telemetry; the Application Insights component only",
    ),
    (
        KEY_VAULT_CRYPTO_USER,
        "Microsoft.KeyVault/vaults/keys",
        "signingKeyName",
        "sign with the archive key; that key, not the vault",
    ),
    (
        KEY_VAULT_SECRETS_USER,
        "Microsoft.KeyVault/vaults/secrets",
        "pseudonymSecretName",
        "resolve the pseudonym key reference; that secret, not the vault",
    ),
]


def role_assignments(files: Files) -> list[tuple[str, str, str]]:
    """(role id, scope resource type, scope name expression) of each roles.bicep assignment."""
    roles_file = {"modules/roles.bicep": files["modules/roles.bicep"]}
    code = strip_comments(files["modules/roles.bicep"])
    role_ids = dict(re.findall(r"^\s*(\w+): '([0-9a-f-]{36})'$", code, re.M))
    scopes = {r.symbol: r for r in resources(roles_file, existing=True) if r.existing}
    found = []
    for ra in resources(roles_file, "Microsoft.Authorization/roleAssignments"):
        definition = ra.prop("roleDefinitionId") or ""
        m = re.search(r"roles\.(\w+)\)$", definition)
        assert m, f"roles.bicep {ra.symbol}: roleDefinitionId must use the `roles` table"
        scope = scopes.get(ra.prop("scope") or "")
        assert scope, f"roles.bicep {ra.symbol}: its scope must be an `existing` resource"
        assert ra.prop("principalId") == "principalId", (
            f"roles.bicep {ra.symbol}: must be granted to the Function App identity only"
        )
        assert ra.prop("principalType") == "'ServicePrincipal'"
        found.append((role_ids[m.group(1)], scope.type, scope.prop("name") or ""))
    return found


def check_roles(files: Files) -> None:
    found = role_assignments(files)
    expected = [(role, type_, name) for role, type_, name, _ in EXPECTED_ROLES]
    for (role, type_, name), (*_, why) in zip(expected, EXPECTED_ROLES, strict=True):
        assert (role, type_, name) in found, (
            f"missing role {role} on {type_} `{name}` ({why}): each role must be scoped to the "
            "narrowest resource Azure RBAC allows"
        )
    extra = [f for f in found if f not in expected]
    assert not extra, f"unexpected role assignments (wider access than listed): {extra}"
    roles_file = {"modules/roles.bicep": files["modules/roles.bicep"]}
    scopes = {r.symbol: r for r in resources(roles_file, existing=True) if r.existing}
    for symbol, parent in (
        ("hub", "namespace"),
        ("phiEventsHub", "phiEventsNamespace"),
        ("signingKey", "vault"),
        ("pseudonymSecret", "vault"),
        ("archiveBlobService", "archiveAccount"),
        ("archiveContainer", "archiveBlobService"),
        ("outboxContainer", "archiveBlobService"),
        ("stateContainer", "archiveBlobService"),
        ("privacyContainer", "archiveBlobService"),
    ):
        scope = scopes.get(symbol)
        assert scope and scope.prop("parent") == parent, (
            f"roles.bicep: the scope {symbol} must be the child of {parent} (phiwatch's "
            "namespace / archive account)"
        )
    main = strip_comments(files["main.bicep"])
    m = re.search(r"^module roles 'modules/roles.bicep' = \{", main, re.M)
    assert m, "main.bicep must deploy modules/roles.bicep as `module roles`"
    roles_call = main[m.end() - 1 : _block_end(main, m.end() - 1)]
    for wiring in (
        "eventHubNamespaceName: eventHubs.outputs.namespaceName",
        "eventHubName: eventHubs.outputs.eventHubName",
        "phiEventsNamespaceName: eventHubs.outputs.phiEventsNamespaceName",
        "phiEventsHubName: eventHubs.outputs.phiEventsHubName",
        "archiveStorageAccountName: archive.outputs.accountName",
        "archiveContainerName: archive.outputs.archiveContainerName",
        "outboxContainerName: archive.outputs.outboxContainerName",
        "stateContainerName: archive.outputs.stateContainerName",
        "privacyContainerName: archive.outputs.privacyContainerName",
        "hostStorageAccountName: hostStorage.outputs.accountName",
        "principalId: functionApp.outputs.principalId",
        "dcrName: dcrName",
        "signingKeyName: keyVault.outputs.signingKeyName",
        "pseudonymSecretName: keyVault.outputs.pseudonymSecretName",
        "pseudonymSecretPinned: !empty(pseudonymKeyVersion)",
    ):
        assert re.search(rf"^\s*{re.escape(wiring)}$", roles_call, re.M), (
            f"main.bicep must wire the roles module with `{wiring}`: a wrong account here "
            "would grant the host's broad role on the archive"
        )
    secret_role = [
        r
        for r in resources(roles_file, "Microsoft.Authorization/roleAssignments")
        if r.prop("scope") == "pseudonymSecret"
    ]
    assert [r.condition for r in secret_role] == ["pseudonymSecretPinned"], (
        "the secret-scoped role can only exist once the secret does (pseudonymKeyVersion set)"
    )
    others = [
        r.file
        for r in resources(files, "Microsoft.Authorization/roleAssignments")
        if r.file not in {"modules/roles.bicep", "sentinel/dcr.bicep"}
    ]
    assert not others, f"role assignments belong in modules/roles.bicep, found in {others}"
    assert re.search(r"^\s*functionAppPrincipalId: ''$", main, re.M), (
        "main.bicep assigns the DCR role in roles.bicep, so the Sentinel module gets no principal"
    )


# The two role tables (roles.bicep's header, infra/README.md "Roles") name each scope this way.
ROLE_NAMES = {
    EVENT_HUBS_DATA_RECEIVER: "Azure Event Hubs Data Receiver",
    EVENT_HUBS_DATA_SENDER: "Azure Event Hubs Data Sender",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    STORAGE_BLOB_DATA_OWNER: "Storage Blob Data Owner",
    STORAGE_BLOB_DATA_READER: "Storage Blob Data Reader",
    MONITORING_METRICS_PUBLISHER: "Monitoring Metrics Publisher",
    KEY_VAULT_CRYPTO_USER: "Key Vault Crypto User",
    KEY_VAULT_SECRETS_USER: "Key Vault Secrets User",
}
SCOPE_NAMES = {
    "eventHubName": "diagnostics",
    "phiEventsHubName": "phi-events",
    "archiveContainerName": "phiwatch-archive",
    "outboxContainerName": "phiwatch-outbox",
    "stateContainerName": "phiwatch-state",
    "privacyContainerName": "phiwatch-privacy",
    "hostStorageAccountName": "host storage",
    "dcrName": "DCR",
    "appInsightsName": "Application Insights",
    "keyVaultName": "vault",
    "signingKeyName": "signing key",
    "pseudonymSecretName": "pseudonym secret",
}


def _documented_roles(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(role name, scope name param) per table row; the scope is the name it mentions first."""
    documented = []
    for role, scope in rows:
        hits = [(scope.find(text), param) for param, text in SCOPE_NAMES.items() if text in scope]
        documented.append((role.strip(), min(hits)[1] if hits else scope.strip()))
    return sorted(documented)


def check_role_tables_documented(files: Files) -> None:
    expected = sorted((ROLE_NAMES[role], name) for role, _, name, _ in EXPECTED_ROLES)
    header = re.findall(
        r"^// \| ([A-Za-z ]+?) \([0-9a-f]{8}-\.\.\.-[0-9a-f]{12}\)\s*\| ([^|]+)\|",
        files["modules/roles.bicep"],
        re.M,
    )
    assert _documented_roles(header) == expected, (
        "the role table in modules/roles.bicep's header must list exactly the roles it assigns, "
        "one row per (role, scope)"
    )
    for role, _, _, _ in EXPECTED_ROLES:
        short = f"({role[:8]}-...-{role[-12:]})"
        assert f"{ROLE_NAMES[role]} {short}" in files["modules/roles.bicep"], (
            f"roles.bicep's table must give {ROLE_NAMES[role]}'s id as {short}"
        )
    section = re.search(r"^## Roles\n(.*?)(?=^## )", files["README.md"], re.M | re.S)
    assert section, "infra/README.md must have a 'Roles' section"
    rows = re.findall(r"^\| ([^|]+)\| ([^|]+)\|$", section.group(1), re.M)
    rows = [(role, scope) for role, scope in rows if role.strip() not in {"Role", "---"}]
    assert _documented_roles(rows) == expected, (
        "the Roles table in infra/README.md must list exactly the roles roles.bicep assigns, "
        "one row per (role, scope)"
    )


def check_diagnostics(files: Files) -> None:
    expected = {
        "modules/diagnostics/keyvault.bicep": ["'AuditEvent'"],
        "modules/diagnostics/fhir.bicep": ["'AuditLogs'"],
        "modules/diagnostics/apiforfhir.bicep": ["'AuditLogs'"],
        "modules/diagnostics/sql.bicep": ["'SQLSecurityAuditEvents'"],
        "modules/diagnostics/storage.bicep": ["'StorageRead'", "'StorageWrite'", "'StorageDelete'"],
        "diagnostics.bicep": ["'Administrative'"],
        "diagnostics-entra.bicep": ["'SignInLogs'"],
    }
    for name, categories in expected.items():
        code = strip_comments(files[name])
        for category in categories:
            assert category in code, f"{name} must route {category} to the hub"
        assert "eventHubName: eventHubName" in code and (
            "eventHubAuthorizationRuleId: eventHubAuthorizationRuleId" in code
        ), f"{name} must send to the phiwatch hub"
    assert "targetScope = 'subscription'" in files["diagnostics.bicep"]
    assert "targetScope = 'tenant'" in files["diagnostics-entra.bicep"]
    sql = strip_comments(files["modules/diagnostics/sql.bicep"])
    assert "isAzureMonitorTargetEnabled: true" in sql, (
        "SQL audit events only reach a diagnostic setting with the Azure Monitor target enabled"
    )


# The categories phiwatch normalises, per diagnostic setting: the infra enables these and
# nothing else (anything else is archived and dead-lettered as unknown-category).
NORMALISED_ENTRA = [
    "SignInLogs",
    "NonInteractiveUserSignInLogs",
    "ServicePrincipalSignInLogs",
    "ManagedIdentitySignInLogs",
    "AuditLogs",
]


def _array_default(code: str, param: str) -> list[str]:
    m = re.search(rf"^param {param} array = \[\n(.*?)^\]", code, re.M | re.S)
    assert m, f"param {param} must default to an array"
    return re.findall(r"^\s*'([^']+)'$", m.group(1), re.M)


def check_enabled_categories(files: Files) -> None:
    """The diagnostic settings and the example parameters enable exactly what is normalised,
    and say plainly that configureSqlAuditing replaces a server's audit settings."""
    entra = strip_comments(files["diagnostics-entra.bicep"])
    diag = strip_comments(files["diagnostics.bicep"])
    assert _array_default(entra, "categories") == NORMALISED_ENTRA
    assert _array_default(diag, "entraLogCategories") == NORMALISED_ENTRA
    assert _array_default(diag, "activityLogCategories") == ["Administrative"]
    storage = strip_comments(files["modules/diagnostics/storage.bicep"])
    assert _array_default(storage, "categories") == ["StorageRead", "StorageWrite", "StorageDelete"]
    example = json.loads(files["diagnostics.parameters.example.json"])["parameters"]
    assert example["entraLogCategories"]["value"] == NORMALISED_ENTRA
    assert example["activityLogCategories"]["value"] == ["Administrative"]
    for name in ("diagnostics.bicep", "modules/diagnostics/sql.bicep", "README.md"):
        text = files[name]
        assert re.search(r"configureSqlAuditing|configureAuditing", text), name
        assert re.search(r"\breplaces\b", text, re.I), (
            f"{name} must say the audit policy is replaced"
        )


def check_parameter_examples(files: Files) -> None:
    for template, example in (
        ("main.bicep", "main.parameters.example.json"),
        ("diagnostics.bicep", "diagnostics.parameters.example.json"),
    ):
        code = strip_comments(files[template])
        params = dict(re.findall(r"^param (\w+) \w+( = .*)?$", code, re.M))
        given = set(json.loads(files[example])["parameters"])
        assert given <= set(params), f"{example} sets unknown parameters {given - set(params)}"
        required = {name for name, default in params.items() if not default}
        assert required <= given, f"{example} misses required parameters {required - given}"
        secure = set(re.findall(r"^@secure\(\)\nparam (\w+)", code, re.M))
        assert not secure & given, f"{example} must not carry a value for {secure & given}"


_MODULE = re.compile(r"^module (\w+) '([^']+)' = (?:if \(.*?\) )?([{\[])", re.M)


def _top_level_keys(block: str) -> set[str]:
    """The keys of a `{...}` block's own level (the least indented `key:` lines)."""
    keys = re.findall(r"^( *)(\w+):", block[1:-1], re.M)
    indent = min((len(spaces) for spaces, _ in keys), default=0)
    return {key for spaces, key in keys if len(spaces) == indent}


def check_module_wiring(files: Files) -> None:
    """What `az bicep build` would refuse, checked without it: each module call passes only
    parameters the module declares, every required one, and reads only outputs it has."""
    for name, text in files.items():
        if not name.endswith(".bicep"):
            continue
        code = strip_comments(text)
        targets = {}
        for m in _MODULE.finditer(code):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.group(2)))
            assert target in files, f"{name}: module {m.group(1)} points to missing {target}"
            module = strip_comments(files[target])
            targets[m.group(1)] = module
            body = code[m.start(3) : _block_end(code, m.start(3))]
            at = re.search(r"^\s*params: \{", body, re.M)
            passed = (
                _top_level_keys(body[at.end() - 1 : _block_end(body, at.end() - 1)])
                if at
                else set()
            )
            declared = dict(re.findall(r"^param (\w+) \S+?( = .*)?$", module, re.M))
            unknown = sorted(passed - set(declared))
            assert not unknown, f"{name}: module {m.group(1)} passes undeclared {unknown}"
            missing = sorted(
                p for p, default in declared.items() if not default and p not in passed
            )
            assert not missing, f"{name}: module {m.group(1)} lacks required {missing}"
        for symbol, output in re.findall(r"\b(\w+)(?:\[[^\]]*\])?\.outputs\.(\w+)", code):
            if symbol in targets:
                assert re.search(rf"^output {output} ", targets[symbol], re.M), (
                    f"{name}: {symbol}.outputs.{output} is not an output of that module"
                )


def check_alerts(files: Files) -> None:
    """Azure Monitor alerts on phiwatch itself: failures, lag, outbox backlog, stalled hubs."""
    alerts = {"modules/alerts.bicep": files.get("modules/alerts.bicep", "")}
    queries = {r.symbol: r for r in resources(alerts, "Microsoft.Insights/scheduledQueryRules")}
    expected = {
        "functionFailures": ("requests | where success == false", "exceptions"),
        "consumerLag": ("lag_seconds", "eventhub batch processed", "detect invocation processed"),
        "outboxBacklog": ("outbox delivery", "remaining"),
    }
    for symbol, needles in expected.items():
        rule = queries.get(symbol)
        assert rule, f"modules/alerts.bicep must define the {symbol} log alert"
        query = rule.prop("query") or ""
        for needle in needles:
            assert needle in query, f"{symbol}: its query must use {needle!r}"
        assert rule.prop("actions") == "logActions", f"{symbol} must notify the action group"
        assert "appInsights.id" in (rule.block("scopes") or "")
    code = strip_comments(alerts["modules/alerts.bicep"])
    assert "actionGroups: empty(actionGroupId) ? [] : [\n    actionGroupId" in code
    assert "actionGroupId: actionGroupId" in code
    for name, (query, threshold) in {
        "consumerLag": ("lag_seconds", "lagSeconds"),
        "outboxBacklog": ("remaining", "outboxEntries"),
    }.items():
        assert queries[name].prop("threshold") == threshold, (
            f"{name}: the threshold comes from its parameter ({threshold})"
        )
        assert queries[name].prop("metricMeasureColumn") == f"'{query}'"
    stalled = {r.symbol: r for r in resources(alerts, "Microsoft.Insights/metricAlerts")}
    for symbol, scope in (
        ("diagnosticsStalled", "eventHubNamespace.id"),
        ("phiEventsStalled", "phiEventsNamespace.id"),
    ):
        alert = stalled.get(symbol)
        assert alert and scope in (alert.block("scopes") or ""), (
            f"{symbol}: a metric alert on {scope} (events in, none out)"
        )
        assert "'IncomingMessages'" in alert.body and "'OutgoingMessages'" in alert.body
        assert alert.prop("actions") == "metricActions"
    call = module_call(files["main.bicep"], "alerts")
    for wiring in (
        "actionGroupId: alertActionGroupId",
        "appInsightsName: functionApp.outputs.appInsightsName",
        "eventHubNamespaceName: eventHubs.outputs.namespaceName",
        "phiEventsNamespaceName: eventHubs.outputs.phiEventsNamespaceName",
        "lagSeconds: alertLagSeconds",
        "outboxEntries: alertOutboxEntries",
    ):
        assert has_line(call, wiring), f"main.bicep must pass `{wiring}` to the alerts module"
    assert param_default(files["main.bicep"], "alertActionGroupId") == "''"


TROUBLESHOOTING = (
    "stalled partition",
    "lag",
    "outbox backlog",
    "immutability: unlocked",
    "key reference",
    "503",
    "canary",
)


def check_troubleshooting_documented(files: Files) -> None:
    readme = files["README.md"]
    section = re.search(r"^## Troubleshooting\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert section, "infra/README.md must have a 'Troubleshooting' section"
    text = section.group(1).lower()
    for topic in TROUBLESHOOTING:
        assert topic in text, f"Troubleshooting must cover {topic!r} (symptom, check, fix)"


def check_parseable_by_checkov(files: Files) -> None:
    for name, text in files.items():
        if name.endswith(".bicep"):
            assert "=>" not in strip_comments(text), (
                f"{name}: no lambdas: checkov's Bicep parser (pycep) cannot parse them, and a file "
                "it cannot parse is not checked at all (use a `for` loop)"
            )


CHECKS: list[Callable[[Files], None]] = [
    check_storage_accounts,
    check_archive_immutability,
    check_outbox_mutable,
    check_state_mutable,
    check_privacy_inputs,
    check_watchlists,
    check_network_documented,
    check_event_hubs,
    check_phi_events_hub,
    check_key_vault,
    check_function_app,
    check_app_settings_match_app,
    check_no_keys,
    check_roles,
    check_role_tables_documented,
    check_diagnostics,
    check_enabled_categories,
    check_parameter_examples,
    check_module_wiring,
    check_alerts,
    check_troubleshooting_documented,
    check_parseable_by_checkov,
]


# --- the tests on the real files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return load_files()


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_infra_property(check: Callable[[Files], None], files: dict[str, str]) -> None:
    check(files)


def test_reader_finds_every_resource(files: dict[str, str]) -> None:
    # Guards the parser itself: if it stopped matching, the checks above would see nothing.
    declared = sum(
        len(re.findall(r"^resource \w+ '", strip_comments(t), re.M))
        for n, t in files.items()
        if n.endswith(".bicep")
    )
    assert declared == len(resources(files, existing=True)) > 30


def test_dcr_stream_declarations_need_no_json_escaping() -> None:
    # infra/sentinel/dcr.bicep builds streamDeclarations as JSON text (`'"${t.stream}":...'`)
    # because checkov cannot parse the toObject lambda; that is only equivalent while stream
    # names have no character JSON must escape.
    schema = json.loads((INFRA / "generated" / "log-analytics-schema.json").read_text("utf-8"))
    for table in schema["tables"]:
        assert re.fullmatch(r"Custom-[A-Za-z0-9_]+", table["stream"]), table["stream"]
    dcr = strip_comments((INFRA / "sentinel" / "dcr.bicep").read_text(encoding="utf-8"))
    assert "streamDeclarations: streamDeclarations" in dcr
    assert "json('{${join(streamDeclarationEntries, ',')}}')" in dcr


def test_checkov_runs_in_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test: .*\bcheck-infra\b", makefile, re.M), (
        "`make test` must run check-infra, so CI runs checkov on infra/"
    )
    recipe = re.search(r"^check-infra:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "Makefile must have a check-infra target"
    assert "--skip-download" in recipe.group(1) and "CHECKOV_GATE" in recipe.group(1), (
        "check-infra must run offline (--skip-download) and fail on parsing errors (the gate)"
    )
    assert ".venv-checkov/" in (ROOT / ".gitignore").read_text(encoding="utf-8")


def test_every_checkov_skip_has_a_reason(files: dict[str, str]) -> None:
    for name, text in files.items():
        for m in re.finditer(r"checkov:skip=(\S+?)(?::(.*))?$", text, re.M):
            reason = (m.group(2) or "").strip()
            assert len(reason) >= 40, f"{name}: skip {m.group(1)} needs a real reason"


# --- the checks catch what they are for: each edit below must make its check fail --------------

MUTATIONS = [
    (check_storage_accounts, "modules/storage-archive.bicep", "allowBlobPublicAccess: false", ""),
    (
        check_storage_accounts,
        "modules/storage-host.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
    ),
    (
        check_storage_accounts,
        "modules/storage-archive.bicep",
        "minimumTlsVersion: 'TLS1_2'",
        "minimumTlsVersion: 'TLS1_0'",
    ),
    (
        check_archive_immutability,
        "modules/storage-archive.bicep",
        "isVersioningEnabled: true",
        "isVersioningEnabled: false",
    ),
    (
        check_archive_immutability,
        "modules/storage-archive.bicep",
        "immutableStorageWithVersioning: {\n      enabled: true",
        "immutableStorageWithVersioning: {\n      enabled: false",
    ),
    (
        check_archive_immutability,
        "modules/storage-archive.bicep",
        "param immutabilityPeriodInDays int = 2190",
        "param immutabilityPeriodInDays int = 1",
    ),
    (
        check_archive_immutability,
        "modules/storage-archive.bicep",
        "= if (!immutabilityPolicyLocked) {",
        "= if (false) {",
    ),
    (
        check_archive_immutability,
        "main.bicep",
        "param archiveImmutabilityLocked bool = false",
        "param archiveImmutabilityLocked bool = true",
    ),
    (
        check_outbox_mutable,
        "modules/storage-archive.bicep",
        "  name: outboxContainerName\n  properties: {\n",
        "  name: outboxContainerName\n  properties: {\n"
        "    immutableStorageWithVersioning: {\n      enabled: true\n    }\n",
    ),
    (
        check_state_mutable,
        "modules/storage-archive.bicep",
        "  name: stateContainerName\n  properties: {\n",
        "  name: stateContainerName\n  properties: {\n"
        "    immutableStorageWithVersioning: {\n      enabled: true\n    }\n",
    ),
    (
        check_state_mutable,
        "modules/storage-archive.bicep",
        "'${stateContainerName}/'",
        "'${outboxContainerName}/'",
    ),
    (
        check_state_mutable,
        "modules/storage-archive.bicep",
        "blob}${stateContainer.name}'",
        "blob}${archiveContainer.name}'",
    ),
    (
        check_state_mutable,
        "modules/storage-archive.bicep",
        "param stateContainerName string = 'phiwatch-state'",
        "param stateContainerName string = 'phiwatch-archive'",
    ),
    (check_network_documented, "README.md", "## Network exposure", "## Networking"),
    (check_event_hubs, "modules/eventhubs.bicep", "minimumTlsVersion: '1.2'", ""),
    (check_event_hubs, "modules/eventhubs.bicep", "disableLocalAuth: disableLocalAuth\n", ""),
    (check_event_hubs, "modules/eventhubs.bicep", "      'Send'\n", "      'Listen'\n"),
    (
        check_phi_events_hub,
        "modules/eventhubs.bicep",
        "param phiEventsHubName string = 'phi-events'",
        "param phiEventsHubName string = 'phievents'",
    ),
    (
        check_phi_events_hub,
        "modules/eventhubs.bicep",
        "partitionCount: phiEventsPartitionCount",
        "partitionCount: partitionCount",
    ),
    (
        check_phi_events_hub,
        "modules/eventhubs.bicep",
        "  parent: phiEventsHub\n  name: phiEventsConsumerGroupName",
        "  parent: hub\n  name: phiEventsConsumerGroupName",
    ),
    (
        check_phi_events_hub,
        "main.bicep",
        "    phiEventsPartitionCount: phiEventsPartitionCount\n",
        "",
    ),
    (
        check_phi_events_hub,
        "diagnostics.bicep",
        "param eventHubName string = 'diagnostics'",
        "param eventHubName string = 'phi-events'",
    ),
    (
        check_key_vault,
        "modules/keyvault.bicep",
        "enableRbacAuthorization: true",
        "enableRbacAuthorization: false",
    ),
    (check_key_vault, "modules/keyvault.bicep", "enablePurgeProtection: true", ""),
    (
        check_key_vault,
        "modules/keyvault.bicep",
        "secrets/${pseudonymSecretName}/${pseudonymKeyVersion})'",
        "secrets/${pseudonymSecretName})'",
    ),
    (
        check_key_vault,
        "modules/keyvault.bicep",
        "// Every access to these keys",
        "resource pseudonymSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {\n"
        "  parent: vault\n  name: pseudonymSecretName\n  properties: {\n"
        "    value: 'x'\n  }\n}\n\n// Every access to these keys",
    ),
    (
        check_key_vault,
        "README.md",
        "### Rotating the pseudonymisation key",
        "### Changing the key",
    ),
    (
        check_event_hubs,
        "modules/eventhubs.bicep",
        "resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01'"
        " = {\n  parent: namespace",
        "resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01'"
        " = {\n  parent: phiEventsNamespace",
    ),
    (
        check_phi_events_hub,
        "modules/eventhubs.bicep",
        "    disableLocalAuth: true\n",
        "    disableLocalAuth: disableLocalAuth\n",
    ),
    (
        check_phi_events_hub,
        "modules/eventhubs.bicep",
        "  parent: phiEventsNamespace\n  name: phiEventsHubName",
        "  parent: namespace\n  name: phiEventsHubName",
    ),
    (
        check_roles,
        "modules/roles.bicep",
        "scope: signingKey\n",
        "scope: vault\n",
    ),
    (
        check_roles,
        "modules/roles.bicep",
        "= if (pseudonymSecretPinned) {",
        "= {",
    ),
    (
        check_roles,
        "modules/roles.bicep",
        "  parent: phiEventsNamespace\n  name: phiEventsHubName",
        "  parent: namespace\n  name: phiEventsHubName",
    ),
    (
        check_function_app,
        "modules/functionapp.bicep",
        "value: pseudonymKeyReference",
        "value: '@Microsoft.KeyVault(VaultName=kv;SecretName=phiwatch-pseudonym-key)'",
    ),
    (check_alerts, "modules/alerts.bicep", "| where success == false", "| where true"),
    (check_alerts, "modules/alerts.bicep", "threshold: lagSeconds", "threshold: 100000"),
    (check_alerts, "modules/alerts.bicep", "    actions: logActions\n", "    actions: {}\n"),
    (check_alerts, "modules/alerts.bicep", "phiEventsNamespace.id\n", "eventHubNamespace.id\n"),
    (check_alerts, "main.bicep", "    actionGroupId: alertActionGroupId\n", ""),
    (check_troubleshooting_documented, "README.md", "## Troubleshooting", "## Problems"),
    (check_function_app, "modules/functionapp.bicep", "type: 'SystemAssigned'\n", "type: 'None'\n"),
    (check_function_app, "modules/functionapp.bicep", "httpsOnly: true", "httpsOnly: false"),
    (check_function_app, "modules/functionapp.bicep", "version: '3.11'", "version: '3.12'"),
    (
        check_function_app,
        "modules/functionapp.bicep",
        "name: 'PHIWATCH_OUTBOX_URL'\n          value: outboxUrl",
        "name: 'PHIWATCH_OUTBOX'\n          value: outboxUrl",
    ),
    (
        check_function_app,
        "modules/functionapp.bicep",
        "value: logLevel\n        }",
        "value: logLevel\n        }\n        {\n          name: 'FUNCTIONS_WORKER_RUNTIME'\n"
        "          value: 'python'\n        }",
    ),
    (
        check_app_settings_match_app,
        "modules/functionapp.bicep",
        "name: 'PHIWATCH_PHI_EVENTS_CONSUMER_GROUP'",
        "name: 'PHIWATCH_PHI_EVENTS_GROUP'",
    ),
    (
        check_app_settings_match_app,
        "modules/functionapp.bicep",
        "name: 'PHIWATCH_PHI_EVENTS_NAMESPACE'\n          value: phiEventsFullyQualifiedNamespace",
        "name: 'PHIWATCH_PHI_EVENTS_NAMESPACE'\n          value: eventHubFullyQualifiedNamespace",
    ),
    (
        check_app_settings_match_app,
        "modules/functionapp.bicep",
        "'PHIEVENTS__fullyQualifiedNamespace'\n          value: phiEventsFullyQualifiedNamespace",
        "'PHIEVENTS__fullyQualifiedNamespace'\n          value: eventHubFullyQualifiedNamespace",
    ),
    (
        check_app_settings_match_app,
        "modules/functionapp.bicep",
        "name: 'PHIWATCH_STATE_URL'",
        "name: 'PHIWATCH_STATE_CONTAINER'",
    ),
    (
        check_app_settings_match_app,
        "main.bicep",
        "    stateUrl: archive.outputs.stateUrl\n",
        "    stateUrl: archive.outputs.outboxUrl\n",
    ),
    (
        check_no_keys,
        "modules/functionapp.bicep",
        "value: logLevel\n",
        "value: logLevel\n        }\n        {\n          name: 'EVENTHUB'\n          value: "
        "'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b'\n",
    ),
    (
        check_no_keys,
        "main.parameters.example.json",
        '"logLevel"',
        '"x": {"value": "DefaultEndpointsProtocol=https;AccountKey=abc"}, "logLevel"',
    ),
    (check_roles, "modules/roles.bicep", "scope: archiveContainer", "scope: archiveAccount"),
    (check_roles, "modules/roles.bicep", "scope: outboxContainer", "scope: archiveAccount"),
    (check_roles, "modules/roles.bicep", "scope: hub\n", "scope: namespace\n"),
    (check_roles, "modules/roles.bicep", "scope: dcr\n", "scope: vault\n"),
    (
        check_roles,
        "modules/roles.bicep",
        "  scope: phiEventsHub\n  properties: {\n    roleDefinitionId: subscriptionResourceId("
        "'Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)",
        "  scope: namespace\n  properties: {\n    roleDefinitionId: subscriptionResourceId("
        "'Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)",
    ),
    (
        check_roles,
        "modules/roles.bicep",
        "  scope: phiEventsHub\n  properties: {\n    roleDefinitionId: subscriptionResourceId("
        "'Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)",
        "  scope: hub\n  properties: {\n    roleDefinitionId: subscriptionResourceId("
        "'Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)",
    ),
    (check_roles, "modules/roles.bicep", "scope: stateContainer", "scope: archiveAccount"),
    (
        check_roles,
        "modules/roles.bicep",
        "  parent: phiEventsNamespace\n  name: phiEventsHubName",
        "  parent: phiEventsNamespace\n  name: eventHubName",
    ),
    (
        check_roles,
        "main.bicep",
        "    stateContainerName: archive.outputs.stateContainerName\n",
        "    stateContainerName: archive.outputs.archiveContainerName\n",
    ),
    (
        check_role_tables_documented,
        "README.md",
        "| Azure Event Hubs Data Sender | the `phi-events` hub only",
        "| Azure Event Hubs Data Sender | the namespace",
    ),
    (
        check_role_tables_documented,
        "modules/roles.bicep",
        "| container phiwatch-state  |",
        "| the archive account       |",
    ),
    (
        check_roles,
        "modules/roles.bicep",
        "'Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)",
        "'Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoUser)",
    ),
    (
        check_roles,
        "main.bicep",
        "    hostStorageAccountName: hostStorage.outputs.accountName\n"
        "    keyVaultName: keyVault.outputs.name\n    pseudonymSecretName",
        "    hostStorageAccountName: archive.outputs.accountName\n"
        "    keyVaultName: keyVault.outputs.name\n    pseudonymSecretName",
    ),
    (check_diagnostics, "modules/diagnostics/sql.bicep", "'SQLSecurityAuditEvents'", "'Errors'"),
    (check_diagnostics, "diagnostics-entra.bicep", "'SignInLogs'", "'AuditLogs'"),
    (
        check_enabled_categories,
        "diagnostics-entra.bicep",
        "  'AuditLogs'\n",
        "  'ProvisioningLogs'\n",
    ),
    (
        check_enabled_categories,
        "diagnostics.parameters.example.json",
        '"Administrative"',
        '"Security"',
    ),
    (
        check_module_wiring,
        "main.bicep",
        "outboxUrl: archive.outputs.outboxUrl",
        "outboxUrl: archive.outputs.outbox",
    ),
    (
        check_module_wiring,
        "modules/functionapp.bicep",
        "param outboxUrl string\n",
        "param outboxUrls string\n",
    ),
    (
        check_module_wiring,
        "main.bicep",
        "    hostStorageAccountName: hostStorage.outputs.accountName\n    keyVaultName",
        "    keyVaultName",
    ),
    (
        check_privacy_inputs,
        "modules/storage-archive.bicep",
        "  name: privacyContainerName\n  properties: {\n    publicAccess: 'None'",
        "  name: privacyContainerName\n  properties: {\n    publicAccess: 'Blob'",
    ),
    (
        check_privacy_inputs,
        "modules/roles.bicep",
        "roles.storageBlobDataReader)\n    principalId",
        "roles.storageBlobDataContributor)\n    principalId",
    ),
    (
        check_privacy_inputs,
        "modules/functionapp.bicep",
        "'PHIWATCH_ROSTER_URL'",
        "'PHIWATCH_ROSTER_URI'",
    ),
    (
        check_watchlists,
        "sentinel/watchlists.bicep",
        "itemsSearchKey: 'PatientRef'",
        "itemsSearchKey: 'PatientId'",
    ),
    (
        check_watchlists,
        "sentinel/watchlists.bicep",
        "@secure()\nparam patientsContent",
        "param patientsContent",
    ),
    (
        check_parseable_by_checkov,
        "sentinel/dcr.bicep",
        "streamDeclarations: streamDeclarations",
        "streamDeclarations: toObject(schema.tables, t => t.stream, t => t.streamColumns)",
    ),
]


@pytest.mark.parametrize(
    ("check", "name", "old", "new"),
    MUTATIONS,
    ids=[f"{m[0].__name__}-{i}" for i, m in enumerate(MUTATIONS)],
)
def test_checks_catch_dropped_properties(
    check: Callable[[Files], None], name: str, old: str, new: str, files: dict[str, str]
) -> None:
    assert old in files[name], f"mutation anchor {old!r} is no longer in {name}"
    edited = dict(files)
    edited[name] = files[name].replace(old, new, 1)
    with pytest.raises(AssertionError):
        check(edited)
