"""The compact rows the Sentinel sink sends, and the DCR transform that rebuilds every table
column from them.

Log Analytics keeps the table the analyst sees (`tables.table_columns`: same columns, same
values); what changes is the JSON posted to the Logs Ingestion API. A compact row carries:

* short keys (`KEYS`) instead of the PascalCase column names (about a third of a full row was
  its keys);
* the values of closed vocabularies (EventType, SourceCategory, Operation, ...) as one or two
  characters each, packed into one string (`PACKED`, key `k`);
* derived forms: TargetResourceId without the subscription DvcScopeId already carries and
  without the `/resourcegroups/` and `/providers/` literals, RawRecordRef as its archive
  hour, batch name parts and index, a FHIR Object path around the PatientRef it contains,
  GUIDs without dashes.

Each table column is one KQL expression over the input stream (`column_expression`): the full
column when the row has it, else what its compact forms rebuild. So the DCR stream declares
both the full columns (rows written by the previous version, still in the outbox, or sent by an
instance not yet upgraded) and the compact ones, and one transform serves both.

`Expr` renders to the KQL the DCR runs and evaluates in Python with Kusto's semantics (strings
are never null: a missing string is ""). A value no compact form takes (an Operation outside
the vocabulary, a batch name of another shape, an ActorUserId that is no GUID) goes in full
under its column name: unusual values cost bytes, never correctness. Short keys, codes and
GUIDs without dashes rebuild their value by construction; the forms built from parts and
other columns (resource ids, the archive reference, the patient object path) are checked on
every row by their plain-Python rebuild (`Form.decode`), and the tests hold both that and
`encode(check_all=True)`, which evaluates the whole transform, to the same answer.
tests/test_sentinel_wire.py also runs the rendered transform text through Kusto.Language (it
compiles, and yields the table's columns and types) and through the DuckDB KQL engine on a
generated corpus.

Keys, packed positions and codes are a wire contract (rows wait in the outbox across
upgrades): never change or reuse one; add new ones at the end.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# ---------------------------------------------------------------------------- expressions


class Unencodable(ValueError):
    """An argument outside the domain where the Python evaluation is known to match Kusto
    (a negative or out-of-range substring, a lookup not found): the encoder then sends the
    column in full instead of guessing."""


class Expr:
    def render(self) -> str:
        raise NotImplementedError

    def eval(self, row: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Col(Expr):
    name: str
    kind: str  # Log Analytics type of the stream column

    def render(self) -> str:
        return self.name

    def eval(self, row: Mapping[str, Any]) -> Any:
        value = row.get(self.name)
        if self.kind == "string":
            return "" if value is None else value
        return value  # a datetime stays as sent: `_normal` and todatetime parse it


@dataclass(frozen=True)
class Lit(Expr):
    value: str | int

    def render(self) -> str:
        if isinstance(self.value, int):
            return str(self.value)
        return "'" + self.value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def eval(self, row: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]

    def render(self) -> str:
        return f"{self.fn}({', '.join(a.render() for a in self.args)})"

    def eval(self, row: Mapping[str, Any]) -> Any:
        if self.fn == "iif":  # lazy, as a branch not taken must not fail the encoder
            cond, then, other = self.args
            return then.eval(row) if cond.eval(row) else other.eval(row)
        if self.fn == "case":
            *pairs, default = self.args
            for i in range(0, len(pairs), 2):
                if pairs[i].eval(row):
                    return pairs[i + 1].eval(row)
            return default.eval(row)
        return _FUNCTIONS[self.fn](*(a.eval(row) for a in self.args))


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # "==" or "+"
    left: Expr
    right: Expr

    def render(self) -> str:
        return f"{self.left.render()} {self.op} {self.right.render()}"

    def eval(self, row: Mapping[str, Any]) -> Any:
        a, b = self.left.eval(row), self.right.eval(row)
        if self.op == "==":
            return a == b
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int):
            raise Unencodable("+ on non-integers")
        return a + b


@dataclass(frozen=True)
class Part(Expr):
    """`tostring(split(s, sep)[i])`: the i-th part, "" past the end."""

    value: Expr
    sep: str
    index: int

    def render(self) -> str:
        return f"tostring(split({self.value.render()}, {Lit(self.sep).render()})[{self.index}])"

    def eval(self, row: Mapping[str, Any]) -> Any:
        parts = str(self.value.eval(row)).split(self.sep)
        return parts[self.index] if self.index < len(parts) else ""


@dataclass(frozen=True)
class Ref(Expr):
    """A named sub-expression: computed once per row by an `extend` before the final
    `project` (a transform reads better, and runs cheaper, than one with the same
    substring repeated in every branch)."""

    name: str
    expr: Expr

    def render(self) -> str:
        return self.name

    def eval(self, row: Mapping[str, Any]) -> Any:
        return self.expr.eval(row)


def children(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, Binary):
        return (expr.left, expr.right)
    if isinstance(expr, Part):
        return (expr.value,)
    if isinstance(expr, Ref):
        return (expr.expr,)
    return ()


def refs_of(expr: Expr, found: dict[str, tuple[int, Ref]]) -> int:
    """Collect the Refs in `expr` with their depth (1 + the deepest Ref they use); returns
    the depth of `expr` itself."""
    depth = max((refs_of(child, found) for child in children(expr)), default=0)
    if isinstance(expr, Ref):
        known = found.get(expr.name)
        if known is not None and known[1] != expr:
            raise ValueError(f"two expressions named {expr.name}")
        found[expr.name] = (depth + 1, expr)
        return depth + 1
    return depth


def _substring(source: str, start: int, length: int | None = None) -> str:
    end = len(source) if length is None else start + length
    if start < 0 or (length is not None and length < 0) or end > len(source):
        raise Unencodable("substring out of range")
    return source[start:end]


def _indexof(source: str, lookup: str) -> int:
    found = source.find(lookup)
    if found < 0:
        raise Unencodable("indexof without a match")
    return found


def _strlen(source: str) -> int:
    if not source.isascii():  # Kusto counts characters its own way: stay where it is plain
        raise Unencodable("strlen of non-ASCII")
    return len(source)


def _todatetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, datetime) else parse_datetime(str(value))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "strcat": lambda *parts: "".join(str(p) for p in parts),
    "substring": _substring,
    "indexof": _indexof,
    "strlen": _strlen,
    "isnotempty": lambda v: v is not None and v != "",
    "isnotnull": lambda v: v is not None,
    "todatetime": _todatetime,
}


def parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def call(fn: str, *args: Expr | str | int) -> Call:
    return Call(fn, tuple(a if isinstance(a, Expr) else Lit(a) for a in args))


def iif(cond: Expr, then: Expr, other: Expr) -> Call:
    return Call("iif", (cond, then, other))


def present(value: Expr) -> Call:
    """isnotempty for strings (Kusto's strings are never null), isnotnull for the rest."""
    string = not isinstance(value, Col) or value.kind == "string"
    return call("isnotempty" if string else "isnotnull", value)


# ---------------------------------------------------------------------------- vocabularies

# Codes for packed values: digits and lower case only (DuckDB and Kusto agree on their
# comparisons), "." for "not coded: see the full column".
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
UNCODED = "."


def code_of(index: int, width: int) -> str:
    digits = []
    for _ in range(width):
        index, digit = divmod(index, len(ALPHABET))
        digits.append(ALPHABET[digit])
    if index:
        raise ValueError("vocabulary too large for its width")
    return "".join(reversed(digits))


@dataclass(frozen=True)
class Packed:
    column: str
    width: int
    # Append only: a value's code is its position.
    values: tuple[str, ...]


_FHIR_INTERACTIONS = (
    "read",
    "vread",
    "search-type",
    "search-system",
    "search-compartment",
    "create",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "batch",
    "transaction",
    "capabilities",
    "conditional-update",
    "convert-data",
    "everything",
    "export",
    "export-status",
    "bulk-delete",
    "bulk-delete-status",
    "purge-history",
    "validate",
)

_ARM_TYPES = (
    "microsoft.authorization/locks",
    "microsoft.authorization/roleassignments",
    "microsoft.healthcareapis/services",
    "microsoft.healthcareapis/workspaces/fhirservices",
    "microsoft.insights/diagnosticsettings",
    "microsoft.keyvault/vaults",
    "microsoft.operationalinsights/workspaces",
    "microsoft.operationalinsights/workspaces/purge",
    "microsoft.resources/deployments",
    "microsoft.resources/subscriptions/resourcegroups",
    "microsoft.sql/servers",
    "microsoft.sql/servers/auditingsettings",
    "microsoft.sql/servers/databases",
    "microsoft.sql/servers/firewallrules",
    "microsoft.storage/storageaccounts",
    "microsoft.storage/storageaccounts/blobservices/containers",
    "microsoft.storage/storageaccounts/listkeys",
    "microsoft.web/sites",
    "microsoft.web/sites/restart",
)

_ARM_OPERATIONS = (
    "MICROSOFT.AUTHORIZATION/LOCKS/DELETE",
    "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",
    "MICROSOFT.HEALTHCAREAPIS/SERVICES/WRITE",
    "MICROSOFT.HEALTHCAREAPIS/WORKSPACES/FHIRSERVICES/WRITE",
    "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE",
    "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE",
    "MICROSOFT.KEYVAULT/VAULTS/WRITE",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/DELETE",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/PURGE/ACTION",
    "MICROSOFT.OPERATIONALINSIGHTS/WORKSPACES/WRITE",
    "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE",
    "MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE",
    "MICROSOFT.SQL/SERVERS/AUDITINGSETTINGS/WRITE",
    "MICROSOFT.SQL/SERVERS/DATABASES/WRITE",
    "MICROSOFT.SQL/SERVERS/FIREWALLRULES/WRITE",
    "MICROSOFT.SQL/SERVERS/WRITE",
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/BLOBSERVICES/CONTAINERS/WRITE",
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE",
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION",
    "MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE",
    "MICROSOFT.WEB/SITES/RESTART/ACTION",
    "MICROSOFT.WEB/SITES/WRITE",
)

_KEY_VAULT_OPERATIONS = (
    *(
        f"{kind}{verb}"
        for kind, verbs in (
            ("Secret", ("Get", "Set", "List", "Delete", "Purge", "Backup", "Restore", "Recover")),
            ("Key", ("Get", "Create", "Import", "List", "Delete", "Purge", "Backup", "Restore")),
            ("Key", ("Sign", "Verify", "Encrypt", "Decrypt", "Wrap", "Unwrap")),
            ("Certificate", ("Get", "Create", "Import", "List", "Delete", "Purge", "Backup")),
            ("Vault", ("Get", "Put", "Delete", "Patch")),
        )
        for verb in verbs
    ),
    "Authentication",
)

_STORAGE_OPERATIONS = (
    "GetBlob",
    "GetBlobProperties",
    "GetBlobMetadata",
    "ListBlobs",
    "PutBlob",
    "PutBlock",
    "PutBlockList",
    "CopyBlob",
    "DeleteBlob",
    "SetBlobMetadata",
    "SetBlobProperties",
    "GetContainerProperties",
    "ListContainers",
    "CreateContainer",
    "DeleteContainer",
)

_SQL_ACTIONS = (
    "BCM",
    "RCM",
    "DBAF",
    "DBAS",
    "LGIF",
    "LGIS",
    "SL",
    "IN",
    "UP",
    "DL",
    "EX",
    "AL",
    "CR",
)

_ENTRA_AUDIT_ACTIVITIES = (
    "Add member to group",
    "Add member to role",
    "Add member to role completed (PIM activation)",
    "Add member to role in PIM completed (timebound)",
    "Add member to role requested (PIM activation)",
    "Remove member from group",
    "Remove member from role",
    "Add user",
    "Delete user",
    "Update user",
    "Reset user password",
    "Add service principal credentials",
    "Add owner to application",
    "Consent to application",
)

PACKED: tuple[Packed, ...] = (
    Packed(
        "EventType",
        1,
        ("Read", "Create", "Set", "Delete", "Execute", "Logon", "Enable", "Disable", "Other"),
    ),
    Packed("EventResult", 1, ("Success", "Failure", "Partial", "NA")),
    Packed("PhiCategory", 1, ("demographic", "clinical", "financial", "none")),
    Packed("ActorUserType", 1, ("Regular", "ServicePrincipal", "ManagedIdentity", "Other")),
    Packed(
        "ObjectType",
        1,
        (
            "Cloud Resource",
            "Configuration Atom",
            "Database",
            "Directory Service Object",
            "Other",
            "Policy Rule",
            "Service",
            "Event Log",
            "Scheduled Task",
        ),
    ),
    Packed(
        "SourceCategory",
        1,
        (
            "AuditEvent",
            "AuditLogs",
            "Administrative",
            "SQLSecurityAuditEvents",
            "StorageRead",
            "StorageWrite",
            "StorageDelete",
            "SignInLogs",
            "NonInteractiveUserSignInLogs",
            "ServicePrincipalSignInLogs",
            "ManagedIdentitySignInLogs",
        ),
    ),
    Packed(
        "EventProduct",
        1,
        (
            "Key Vault",
            "FHIR Service",
            "Azure Resource Manager",
            "Azure SQL",
            "Azure Storage",
            "Entra ID",
            "Entra ID Audit",
        ),
    ),
    Packed(
        "LogonMethod",
        1,
        (
            # Not "AccountKey": infra/ is checked for account-key words, and the generated
            # transform is infra; such rows send the column in full.
            "OAuth",
            "SAS",
            "Anonymous",
            "TrustedAccess",
            "Username & Password",
            "Multi factor authentication",
            "Service Principal",
            "Managed Identity",
        ),
    ),
    Packed("ConditionalAccessStatus", 1, ("success", "failure", "notApplied")),
    Packed("RiskLevel", 1, ("none", "low", "medium", "high", "hidden")),
    Packed("RiskState", 1, ("none", "atRisk", "confirmedCompromised", "remediated", "dismissed")),
    Packed(
        "EventResultDetails",
        2,
        (
            "0",
            "200",
            "201",
            "202",
            "204",
            "206",
            "304",
            "400",
            "401",
            "403",
            "404",
            "409",
            "412",
            "429",
            "500",
            "503",
            "OK",
            "Accepted",
            "Created",
            "NoContent",
            "Forbidden",
            "Unauthorized",
            "NotFound",
            "Success",
            "success",
            "AuthorizationPermissionMismatch",
            "AuthorizationFailure",
            "BlobNotFound",
            "ContainerNotFound",
            "PublicAccessNotPermitted",
            "18456",
            "50074",
            "50076",
            "50126",
            "50140",
            "53003",
            "500121",
        ),
    ),
    Packed("AccessExplanation", 1, ("care-team", "allowed-application", "unexplained")),
    Packed("PatientRelation", 1, ("self", "family", "coworker", "neighbour")),
    Packed(
        "PatientRelationBasis",
        1,
        (
            "employee-id",
            "surname-and-address",
            "rare-surname",
            "patient-is-employee",
            "street-and-postcode",
        ),
    ),
    Packed("ActorEmploymentStatus", 1, ("active", "leave", "terminated")),
    Packed(
        "Operation",
        2,
        (
            *(f"Microsoft.HealthcareApis/services/fhir-R4/{i}" for i in _FHIR_INTERACTIONS),
            *(f"Microsoft.HealthcareApis/workspaces/fhirservices/{i}" for i in _FHIR_INTERACTIONS),
            *_ARM_OPERATIONS,
            *_KEY_VAULT_OPERATIONS,
            *_STORAGE_OPERATIONS,
            *_SQL_ACTIONS,
            "Sign-in activity",
            *_ENTRA_AUDIT_ACTIVITIES,
        ),
    ),
    Packed(
        "EventSubType",
        2,
        (
            *_FHIR_INTERACTIONS,
            *_ARM_TYPES,
            "Blob",
            "Container",
            "Secret",
            "Key",
            "Certificate",
            "Vault",
            "Interactive",
            "NonInteractive",
            "ServicePrincipal",
            "ManagedIdentity",
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "GRANT",
            "ALTER TABLE",
            "ALTER ROLE ADD MEMBER",
            "CREATE INDEX",
            "EXEC sp_executesql",
            "Core Directory/GroupManagement",
            "Core Directory/RoleManagement",
            "Core Directory/UserManagement",
            "Core Directory/ApplicationManagement",
            "PIM/RoleManagement",
        ),
    ),
)
PACKED_KEY = "k"

# Short keys per table (packed columns have none: they go packed or in full). Never change or
# reuse one (rows wait in the outbox across upgrades); new columns get new keys. Lower case
# only: DuckDB folds case, and no key may equal a full column name, a KQL keyword ("as") or a
# name Log Analytics reserves ("id").
KEYS: dict[str, dict[str, str]] = {
    "PhiAccessEvents_CL": {
        "TimeGenerated": "t",
        "EventUid": "u",
        "EventOriginalUid": "g",
        "Object": "o",
        "ActorUserId": "a",
        "ActorUsername": "n",
        "ActingAppId": "p",
        "ActingAppName": "pn",
        "CredentialId": "cr",
        "ClaimedUserId": "cu",
        "ClaimedUsername": "cn",
        "PurposeOfUse": "pu",
        "SrcIpAddr": "i",
        "SrcGeoCountry": "gc",
        "SrcGeoRegion": "gr",
        "SrcGeoCity": "gy",
        "SrcGeoLatitude": "la",
        "SrcGeoLongitude": "lo",
        "SrcAsn": "sa",
        "HttpUserAgent": "h",
        "IsInteractive": "ii",
        "TargetResourceId": "r",
        "TargetAppId": "ta",
        "TargetAppName": "tn",
        "TargetUserId": "tu",
        "TargetUsername": "tv",
        "DvcScopeId": "s",
        "NewValue": "nv",
        "OldValue": "ov",
        "PatientRef": "pr",
        "PatientRestricted": "pz",
        "RecordCount": "c",
        "ResponseBytes": "b",
        "SensitivityLabels": "sl",
        "SensitivityRank": "sr",
        "RawRecordRef": "q",
        "RowId": "w",
    },
    "PhiAlerts_CL": {
        "AlertId": "a",
        "RuleId": "r",
        "RuleName": "rn",
        "Severity": "sv",
        "Tactics": "tc",
        "Techniques": "tq",
        "Title": "ti",
        "Description": "d",
        "Reasons": "re",
        "ActorUserId": "u",
        "ActorUsername": "un",
        "SrcIpAddr": "i",
        "TargetResourceId": "tr",
        "WindowStart": "ws",
        "WindowEnd": "we",
        "FirstEventTime": "ft",
        "LastEventTime": "lt",
        "EventCount": "ec",
        "DistinctPatientCount": "dp",
        "EvidenceEventUids": "ev",
        "DetectedAt": "da",
        "PatientRefs": "pr",
        "PatientRefsComplete": "pc",
        "EvidenceComplete": "eo",
        "EvidenceEventCount": "en",
        "EvidenceRef": "er",
        "ActorUsualDailyEvents": "ud",
        "ActorBaselineDays": "bd",
        "RowId": "w",
    },
    "PhiPipelineHealth_CL": {
        "TimeGenerated": "t",
        "Batch": "b",
        "Stream": "s",
        "Records": "r",
        "Events": "e",
        "DeadLetters": "d",
        "Skipped": "sk",
        "Late": "l",
        "Alerts": "a",
        "DeadLetterReasons": "dr",
        "SkipReasons": "sr",
        "SourceLastSeen": "ls",
        "RowId": "w",
    },
}

# Extra compact forms (key → the column it rebuilds), beyond a column's short key.
TENANT_RESOURCE_KEY = "rt"  # TargetResourceId of a tenant-level resource (sign-ins)
PATIENT_OBJECT_KEY = "oq"  # Object around its PatientRef

# GUID columns: their short key carries the GUID without dashes, this one any other value.
GUID_COLUMNS: dict[str, str] = {
    "EventOriginalUid": "gv",
    "ActorUserId": "av",
    "ActingAppId": "pv",
    "TargetAppId": "tav",
    "TargetUserId": "tuv",
    "DvcScopeId": "sv",
}
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_RAW_REF = re.compile(
    r"^raw/(\d{4}/\d{2}/\d{2}/\d{2})/([^|]+)-(\d{12})-(\d{12})-([^|/]+)\.jsonl\.gz#(\d+)$"
)
_PAD = "000000000000"


# ---------------------------------------------------------------------------- column plans


@dataclass(frozen=True)
class Form:
    """One compact form of a column: its key, how a full row encodes to it (None: does not
    apply), and the expression that rebuilds the column when the key is present."""

    key: str
    kind: str  # stream type of the key
    encode: Callable[[Mapping[str, Any]], Any]
    rebuild: Expr
    # For a form built from parts and other columns' values (a resource id around a
    # subscription, a path around a PatientRef): its rebuild in plain Python, which the
    # encoder checks on every row (tests hold it equal to `rebuild` evaluated). The other
    # forms (a value under a short key, a vocabulary code, a GUID without its dashes)
    # rebuild the value by construction, which the tests check on a corpus.
    decode: Callable[[Mapping[str, Any]], str] | None = None


@dataclass(frozen=True)
class ColumnPlan:
    column: str  # the table column
    kind: str
    source: str | None  # the full stream column it comes from (None: a constant)
    forms: tuple[Form, ...]
    expression: Expr


def _same(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def same(row: Mapping[str, Any]) -> Any:
        return row.get(name)

    same.plain_column = name  # type: ignore[attr-defined]
    return same


def _is_plain(form: Form, column: str) -> bool:
    """The form is the column's value under its short key."""
    return getattr(form.encode, "plain_column", None) == column


def _guid_encode(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def encode(row: Mapping[str, Any]) -> Any:
        value = row.get(name)
        return value.replace("-", "") if isinstance(value, str) and _GUID.match(value) else None

    return encode


def _dashed(key: Col) -> Expr:
    pieces: list[Expr | str] = []
    for start, length in ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12)):
        if pieces:
            pieces.append("-")
        pieces.append(call("substring", key, start, length))
    return call("strcat", *pieces)


def _padded(value: Expr) -> Expr:
    return call("substring", call("strcat", _PAD, value), call("strlen", value))


def _after(value: Expr, sep: str) -> Expr:
    return call("substring", value, Binary("+", call("indexof", value, sep), Lit(1)))


def _before(value: Expr, sep: str) -> Expr:
    return call("substring", value, 0, call("indexof", value, sep))


def _chain(column: Col, forms: Sequence[Form]) -> Expr:
    """The full column when present, else the first compact form present."""
    if not forms:
        return column
    if column.kind != "string":  # a non-string has one form, its short key
        (form,) = forms
        return iif(present(column), column, form.rebuild)
    rest: Expr = Lit("")
    for form in reversed(forms):
        key = Col(form.key, form.kind)
        rest = iif(present(key), form.rebuild, rest)
    return iif(present(column), column, rest)


def _plans(
    table: str,
    stream: Sequence[tuple[str, str]],
    constants: Mapping[str, str],
    renames: Mapping[str, str],
    time_from: str | None,
    table_order: Sequence[tuple[str, str]],
) -> tuple[ColumnPlan, ...]:
    keys = KEYS[table]
    kinds = dict(stream)
    packed = {p.column: p for p in PACKED} if table == "PhiAccessEvents_CL" else {}
    forms: dict[str, list[Form]] = {}
    position = 0
    positions: dict[str, int] = {}
    for p in PACKED:
        positions[p.column] = position
        position += p.width
    pk = Col(PACKED_KEY, "string")
    for name, kind in stream:
        key = keys.get(name, "")
        own = Col(key, kind)
        found: list[Form] = []
        if name in packed:
            p = packed[name]
            piece = Ref(f"xk{positions[name]}", call("substring", pk, positions[name], p.width))
            cases: list[Expr] = []
            for index, value in enumerate(p.values):
                cases += [Binary("==", piece, Lit(code_of(index, p.width))), Lit(value)]
            found.append(
                Form(PACKED_KEY, "string", lambda row: None, Call("case", (*cases, Lit(""))))
            )
        if name in GUID_COLUMNS and table == "PhiAccessEvents_CL":
            found.append(Form(key, "string", _guid_encode(name), _dashed(own)))
            plain = GUID_COLUMNS[name]
            found.append(Form(plain, kind, _same(name), Col(plain, kind)))
        elif name == "TargetResourceId" and table == "PhiAccessEvents_CL":
            found.append(
                Form(
                    key,
                    "string",
                    _resource_in_subscription,
                    _resource_rebuild(own),
                    _resource_decode(key),
                )
            )
            tenant = Col(TENANT_RESOURCE_KEY, "string")
            found.append(
                Form(
                    TENANT_RESOURCE_KEY,
                    "string",
                    _resource_in_tenant,
                    call(
                        "strcat",
                        "/tenants/",
                        Ref("xtn", _before(tenant, "/")),
                        "/providers/",
                        Ref("xtp", _after(tenant, "/")),
                    ),
                    _tenant_decode,
                )
            )
        elif name == "RawRecordRef":
            found.append(
                Form(key, "string", _raw_ref_encode, _raw_ref_rebuild(own), _raw_ref_decode(key))
            )
        elif name == "Object" and table == "PhiAccessEvents_CL":
            compact = Col(PATIENT_OBJECT_KEY, "string")
            found.append(
                Form(
                    PATIENT_OBJECT_KEY,
                    "string",
                    _patient_object_encode,
                    call(
                        "strcat",
                        Ref("xo0", Part(compact, "|", 0)),
                        _PATIENT_REF,
                        Ref("xo1", Part(compact, "|", 1)),
                    ),
                    _patient_object_decode,
                )
            )
            found.append(Form(key, kind, _same(name), own))
        elif name not in packed and key:  # a column without a key goes in full
            found.append(Form(key, kind, _same(name), own))
        forms[name] = found
    plans: list[ColumnPlan] = []
    reverse = {new: old for old, new in renames.items()}
    for column, kind in table_order:
        if column in constants:
            plans.append(ColumnPlan(column, kind, None, (), Lit(constants[column])))
            continue
        source = reverse.get(column, column)
        if column == "TimeGenerated" and time_from and source not in kinds:
            source = time_from
        full = Col(source, kinds[source])
        expression = _chain(full, forms[source])
        if kinds[source] != kind:  # DetectedAt feeds TimeGenerated
            expression = call("todatetime", expression)
        plans.append(ColumnPlan(column, kind, source, tuple(forms[source]), expression))
    return tuple(plans)


_PATIENT_REF = Ref(
    "xpatient",
    iif(
        present(Col("PatientRef", "string")),
        Col("PatientRef", "string"),
        Col(KEYS["PhiAccessEvents_CL"]["PatientRef"], "string"),
    ),
)
_SCOPE = Col("DvcScopeId", "string")
_SCOPE_KEY = Col(KEYS["PhiAccessEvents_CL"]["DvcScopeId"], "string")
_SCOPE_PLAIN = Col(GUID_COLUMNS["DvcScopeId"], "string")
_SCOPE_VALUE = Ref(
    "xscope",
    iif(present(_SCOPE), _SCOPE, iif(present(_SCOPE_KEY), _dashed(_SCOPE_KEY), _SCOPE_PLAIN)),
)


def _resource_in_subscription(row: Mapping[str, Any]) -> str | None:
    resource, scope = row.get("TargetResourceId"), row.get("DvcScopeId")
    if not isinstance(resource, str) or not isinstance(scope, str) or not scope:
        return None
    prefix = f"/subscriptions/{scope}/resourcegroups/"
    if not resource.startswith(prefix):
        return None
    group, sep, rest = resource[len(prefix) :].partition("/providers/")
    if not sep or not group or "/" in group:
        return None
    return f"{group}/{rest}"


def _resource_rebuild(key: Col) -> Expr:
    return call(
        "strcat",
        "/subscriptions/",
        _SCOPE_VALUE,
        "/resourcegroups/",
        Ref("xrg", _before(key, "/")),
        "/providers/",
        Ref("xrp", _after(key, "/")),
    )


def _resource_in_tenant(row: Mapping[str, Any]) -> str | None:
    resource = row.get("TargetResourceId")
    if not isinstance(resource, str) or not resource.startswith("/tenants/"):
        return None
    tenant, sep, rest = resource[len("/tenants/") :].partition("/providers/")
    if not sep or not tenant or "/" in tenant:
        return None
    return f"{tenant}/{rest}"


def _raw_ref_encode(row: Mapping[str, Any]) -> str | None:
    value = row.get("RawRecordRef")
    match = _RAW_REF.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    hour, prefix, first, last, suffix, index = match.groups()
    if _hour_of(suffix) == hour:  # the batch's enqueued time names its archive hour
        hour = ""
    return "|".join(
        (hour, prefix, first.lstrip("0") or "0", last.lstrip("0") or "0", suffix, index)
    )


def _hour_of(suffix: str) -> str | None:
    """yyyy/mm/dd/hh of a batch name's `tYYYYMMDDTHH...` part."""
    if not re.match(r"^t\d{8}T\d{2}", suffix):
        return None
    return f"{suffix[1:5]}/{suffix[5:7]}/{suffix[7:9]}/{suffix[10:12]}"


def _raw_ref_rebuild(key: Col) -> Expr:
    part = [Ref(f"xq{i}", Part(key, "|", i)) for i in range(6)]
    stamp = part[4]
    hour = iif(
        present(part[0]),
        part[0],
        call(
            "strcat",
            call("substring", stamp, 1, 4),
            "/",
            call("substring", stamp, 5, 2),
            "/",
            call("substring", stamp, 7, 2),
            "/",
            call("substring", stamp, 10, 2),
        ),
    )
    return call(
        "strcat",
        "raw/",
        hour,
        "/",
        part[1],
        "-",
        _padded(part[2]),
        "-",
        _padded(part[3]),
        "-",
        stamp,
        ".jsonl.gz#",
        part[5],
    )


def _patient_object_encode(row: Mapping[str, Any]) -> str | None:
    value, patient = row.get("Object"), row.get("PatientRef")
    if not isinstance(value, str) or not isinstance(patient, str) or not patient:
        return None
    before, found, after = value.partition(patient)
    if not found or "|" in before or "|" in after:
        return None
    return f"{before}|{after}"


# The derived forms' rebuilds in plain Python (the encoder's check; equal to the KQL above).


def _dashes(text: str) -> str:
    if len(text) != 32:
        raise Unencodable("not 32 digits")
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _scope(row: Mapping[str, Any]) -> str:
    events = KEYS["PhiAccessEvents_CL"]
    if _text(row, "DvcScopeId"):
        return _text(row, "DvcScopeId")
    if _text(row, events["DvcScopeId"]):
        return _dashes(_text(row, events["DvcScopeId"]))
    return _text(row, GUID_COLUMNS["DvcScopeId"])


def _split_at(text: str, sep: str) -> tuple[str, str]:
    at = text.index(sep)
    return text[:at], text[at + len(sep) :]


def _resource_decode(key: str) -> Callable[[Mapping[str, Any]], str]:
    def decode(row: Mapping[str, Any]) -> str:
        group, rest = _split_at(_text(row, key), "/")
        return f"/subscriptions/{_scope(row)}/resourcegroups/{group}/providers/{rest}"

    return decode


def _tenant_decode(row: Mapping[str, Any]) -> str:
    tenant, rest = _split_at(_text(row, TENANT_RESOURCE_KEY), "/")
    return f"/tenants/{tenant}/providers/{rest}"


def _part(text: str, index: int) -> str:
    parts = text.split("|")
    return parts[index] if index < len(parts) else ""


def _pad(text: str) -> str:
    if not text.isascii():
        raise Unencodable("non-ASCII")
    return (_PAD + text)[len(text) :]


def _raw_ref_decode(key: str) -> Callable[[Mapping[str, Any]], str]:
    def decode(row: Mapping[str, Any]) -> str:
        text = _text(row, key)
        hour, prefix, first, last, stamp, index = (_part(text, i) for i in range(6))
        if not hour:
            if len(stamp) < 12:
                raise Unencodable("no hour in the stamp")
            hour = f"{stamp[1:5]}/{stamp[5:7]}/{stamp[7:9]}/{stamp[10:12]}"
        return f"raw/{hour}/{prefix}-{_pad(first)}-{_pad(last)}-{stamp}.jsonl.gz#{index}"

    return decode


def _patient_object_decode(row: Mapping[str, Any]) -> str:
    text = _text(row, PATIENT_OBJECT_KEY)
    patient = _text(row, "PatientRef") or _text(row, KEYS["PhiAccessEvents_CL"]["PatientRef"])
    return f"{_part(text, 0)}{patient}{_part(text, 1)}"


# ---------------------------------------------------------------------------- one table


def _normal(value: Any, kind: str) -> Any:
    """A value as Log Analytics holds it: a missing string is "", a datetime parsed."""
    if kind == "string":
        return "" if value is None else value
    if kind == "datetime" and isinstance(value, str):
        return parse_datetime(value)
    return value


@dataclass(frozen=True)
class WirePlan:
    """How one table's rows go on the wire and how the DCR transform rebuilds them."""

    table: str
    stream: tuple[tuple[str, str], ...]  # the full stream columns (the previous version's)
    columns: tuple[ColumnPlan, ...]  # one per table column, in table order

    def compact_columns(self) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        for plan in self.columns:
            for form in plan.forms:
                seen.setdefault(form.key, form.kind)
        return list(seen.items())

    def transform(self) -> str:
        # The named parts first (an extend per depth: a part may use one computed before),
        # then one project of the table's columns, which drops the stream's and the parts.
        found: dict[str, tuple[int, Ref]] = {}
        for plan in self.columns:
            refs_of(plan.expression, found)
        steps = ["source"]
        for depth in sorted({d for d, _ in found.values()}):
            named = sorted((n, r) for n, (d, r) in found.items() if d == depth)
            steps.append("extend " + ", ".join(f"{n} = {r.expr.render()}" for n, r in named))
        steps.append(
            "project "
            + ", ".join(f"{plan.column} = {plan.expression.render()}" for plan in self.columns)
        )
        return " | ".join(steps)

    def rebuild(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The table row the transform makes of `row` (Python's evaluation of it)."""
        return {plan.column: plan.expression.eval(row) for plan in self.columns}

    def expected(self, full: Mapping[str, Any], plan: ColumnPlan) -> Any:
        value = plan.expression.eval({}) if plan.source is None else full.get(plan.source)
        return _normal(value, plan.kind)

    def expand(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The full wire row (the previous version's form, what `encode` was given) of a
        compact or full row: for reading outbox rows, and the tests' ingestion stand-in."""
        out: dict[str, Any] = {}
        for plan in self.columns:
            source = plan.source
            if (
                source is None
                or source in out
                or (plan.column != source and source in (p.column for p in self.columns))
            ):
                continue  # a constant, or TimeGenerated fed by DetectedAt
            if source in row:
                out[source] = row[source]
                continue
            keyed = [f.key for f in plan.forms if f.key in row and f.key != PACKED_KEY]
            value = plan.expression.eval(row)
            if value is None or (value == "" and not keyed):
                continue
            out[source] = value
        return {name: out[name] for name, _ in self.stream if name in out}

    @functools.cached_property
    def _packed(self) -> tuple[tuple[str, str, dict[str, str]], ...]:
        if self.table != "PhiAccessEvents_CL":
            return ()
        return tuple(
            (p.column, UNCODED * p.width, {v: code_of(i, p.width) for i, v in enumerate(p.values)})
            for p in PACKED
        )

    @functools.cached_property
    def _encoders(self) -> dict[str, tuple[str | None, ColumnPlan, tuple[Form, ...]]]:
        """Per full column: its short key when that is its only form (the common case,
        copied as it is), else its forms in order; packed columns are not here."""
        out: dict[str, tuple[str | None, ColumnPlan, tuple[Form, ...]]] = {}
        packed = {p.column for p in PACKED} if self._packed else set()
        for plan in self.columns:
            source = plan.source
            if source is None or source in packed or source in out:
                continue
            if plan.column != source and any(p.column == source for p in self.columns):
                continue  # TimeGenerated fed by DetectedAt: DetectedAt's own plan encodes it
            forms = tuple(f for f in plan.forms if f.key != PACKED_KEY)
            simple = (
                len(forms) == 1
                and forms[0].decode is None
                and forms[0].key in (KEYS[self.table].get(source),)
            )
            out[source] = (
                forms[0].key if simple and _is_plain(forms[0], source) else None,
                plan,
                forms,
            )
        return out

    @functools.cached_property
    def _order(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.stream) + tuple(k for k, _ in self.compact_columns())

    def encode(self, full: Mapping[str, Any], *, check_all: bool = False) -> dict[str, Any]:
        """The compact row for a full wire row: every column in its shortest form that the
        transform rebuilds exactly, the others in full. Derived forms are checked on every
        row (their rebuild evaluated; on a difference the column goes in full); `check_all`
        checks every column the same way (the tests)."""
        row: dict[str, Any] = {}
        if self._packed:
            codes = []
            for column, uncoded, vocabulary in self._packed:
                value = full.get(column)
                code = vocabulary.get(value) if isinstance(value, str) else None
                if code is None:
                    code = uncoded
                    if value is not None:  # not in the vocabulary: in full
                        row[column] = value
                codes.append(code)
            packed = "".join(codes)
            if packed.strip(UNCODED):
                row[PACKED_KEY] = packed
        derived: list[tuple[ColumnPlan, Form]] = []
        encoders = self._encoders
        for name, full_value in full.items():
            entry = encoders.get(name)
            if entry is None:
                continue  # a packed column (done above)
            simple, plan, forms = entry
            if simple is not None:
                row[simple] = full_value
                continue
            for form in forms:
                try:
                    value = form.encode(full)
                except Unencodable:
                    value = None
                if value is not None:
                    row[form.key] = value
                    if form.decode is not None:
                        derived.append((plan, form))
                    break
            else:  # no compact form applies: in full
                row[name] = full_value
        for plan, form in derived:
            assert form.decode is not None and plan.source is not None
            try:
                same = form.decode(row) == full.get(plan.source)
            except (Unencodable, IndexError, KeyError, TypeError):
                same = False
            if not same:
                row[plan.source] = full[plan.source]
        for plan in self.columns if check_all else ():
            if plan.source is None or plan.source not in full:
                continue
            try:
                same = _normal(plan.expression.eval(row), plan.kind) == self.expected(full, plan)
            except Unencodable:
                same = False
            if not same:
                row[plan.source] = full[plan.source]
        # In the stream's declared order: full columns, then compact ones.
        return {key: row[key] for key in self._order if key in row}


def wire_plan(
    table: str,
    stream: Sequence[tuple[str, str]],
    table_columns: Sequence[tuple[str, str]],
    *,
    constants: Mapping[str, str],
    renames: Mapping[str, str],
    time_from: str | None,
) -> WirePlan:
    plans = _plans(table, stream, constants, renames, time_from, table_columns)
    return WirePlan(table, tuple(stream), plans)
