"""Azure SQL audit (`SQLSecurityAuditEvents`) records → access events.

The record is the diagnostic-settings shape: `category`, `resourceId` of the database (or the
server's `master`), `time` or `originalEventTimestamp`, and `properties.*` in the audit's own
snake_case names (`action_id`, `succeeded`, `server_principal_name`, `statement`, ...;
next-wave.md §1, azure-formats.md §d). The Log Analytics `_s`/`_d` suffixed names are read too,
for records re-exported from a workspace.

What leaves, and why:

- **The statement text never does** (it names patients: `WHERE mrn = 'MRN123'`). Only its
  kind, from a fixed vocabulary (`SELECT`, `INSERT`, `DROP TABLE`, `ALTER ROLE ADD MEMBER`,
  `EXEC sp_set_firewall_rule`, `OTHER`, ...), goes to `EventSubType`; no token of the text
  that is not in that vocabulary is ever copied. `additional_information` gives only the
  digits of its error code. Nothing else of the record's free text is read.
- **Actor.** `actor_username` is the server principal only when it is a UPN (an Entra user,
  with an `@`), as for every source. Per-user rules group by `actor` (Entra object id, else
  app id, else address), and SQL audit carries no object id, so `actor_user_id` holds a
  principal key instead: `sql:<upn>` for an Entra user (one person on every server and
  database of the tenant) and `sql:<server>/<login>` for a SQL login, an Entra app or a
  managed identity (a SQL login is per logical server: `sqladmin` on two servers is two
  accounts). The key is the same on the failed and the successful records of one login, so a
  brute force followed by a success is one actor. Without a principal (some failed logins)
  the actor is the client address, as the grouping falls back to it.
- `application_name` (SSMS, SqlClient, an EHR's connection string) → `acting_app_name`;
  `host_name`, the workstation name the client sends in its login packet (its own word, like
  a user agent) → `http_user_agent`, the model's field for how a client describes itself;
  `client_ip` → `SrcIpAddr`.
- `RecordCount`: `response_rows` for reads, `affected_rows` for writes (Sentinel's SQL
  solution reads them so); for other kinds whichever is non-zero.
- `PhiCategory` from `data_sensitivity_information`, with its labels and top rank
  (`phiwatch.sources.sql_sensitivity`).

A statement longer than 4,000 characters is split over records with `sequence_number` 2, 3,
...: those continuation records repeat the first one's counts, so they are counted skips,
not events (a mass read must not count twice).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from phiwatch.model import AccessEvent, EventResult, EventType, build_event
from phiwatch.sources.base import NormaliseContext
from phiwatch.sources.fields import normalise_ip, subscription_of, to_int, to_str
from phiwatch.sources.record import TIME_KEYS, Record, RecordSkipped, lower_keys
from phiwatch.sources.sql_sensitivity import parse_sensitivity
from phiwatch.sources.sql_statement import is_read_kind, is_write_kind, statement_kind

name = "sql"
PRODUCT = "Azure SQL"
# Data plane: who read what; its detections group by the actor.
PLANE = "data"

CATEGORY = "SQLSecurityAuditEvents"
# The only category `matches` can accept (lower case): routing asks no other record.
MATCH_CATEGORIES = frozenset({CATEGORY.lower()})

# Action ids (sys.dm_audit_actions) → event type and, when the record has no statement, the
# kind. Statement-bearing actions (BCM, RCM, ...) take their kind from the statement.
_LOGON_ACTIONS = {
    "DBAS",  # database authentication succeeded
    "DBAF",  # database authentication failed
    "LGIS",  # login succeeded (server)
    "LGIF",  # login failed (server)
    "DAGS",  # database authentication group succeeded
    "DAGF",  # database authentication group failed
}
_LOGON_OUTCOMES = {action: action.endswith("S") for action in _LOGON_ACTIONS}
_LOGOFF_ACTIONS = {"LGO", "DBL"}
_ACTION_TYPES: dict[str, tuple[EventType, str]] = {
    "SL": ("Read", "SELECT"),
    "IN": ("Create", "INSERT"),
    "UP": ("Set", "UPDATE"),
    "DL": ("Delete", "DELETE"),
    "EX": ("Execute", "EXEC"),
    "RF": ("Read", "REFERENCES"),
    "G": ("Set", "GRANT"),
    "GWG": ("Set", "GRANT"),
    "D": ("Set", "DENY"),
    "DWC": ("Set", "DENY"),
    "R": ("Set", "REVOKE"),
    "RWC": ("Set", "REVOKE"),
    "RWG": ("Set", "REVOKE"),
    "CR": ("Create", "CREATE"),
    "AL": ("Set", "ALTER"),
    "DR": ("Delete", "DROP"),
    "APRL": ("Set", "ALTER ROLE ADD MEMBER"),
    "DPRL": ("Set", "ALTER ROLE DROP MEMBER"),
    "ADSP": ("Set", "ALTER SERVER ROLE ADD MEMBER"),
    "DRSP": ("Set", "ALTER SERVER ROLE DROP MEMBER"),
    "IMP": ("Execute", "IMPERSONATE"),
    "TO": ("Set", "TAKE OWNERSHIP"),
    "TRO": ("Set", "TRANSFER OWNERSHIP"),
    "PWC": ("Set", "PASSWORD CHANGE"),
    "PWR": ("Set", "PASSWORD RESET"),
    "AUSC": ("Set", "AUDIT CHANGE"),
    "AUSF": ("Set", "AUDIT CHANGE"),
}
# The statement's kind → event type (for BCM/RCM and any action with a statement).
_KIND_TYPES: dict[str, EventType] = {
    "SELECT": "Read",
    "INSERT": "Create",
    "UPDATE": "Set",
    "MERGE": "Set",
    "DELETE": "Delete",
    "TRUNCATE": "Delete",
    "CREATE": "Create",
    "ALTER": "Set",
    "DROP": "Delete",
    "GRANT": "Set",
    "DENY": "Set",
    "REVOKE": "Set",
    "EXEC": "Execute",
    "ADD": "Set",  # ADD SENSITIVITY CLASSIFICATION
}

_SUCCEEDED = {"true": True, "1": True, "false": False, "0": False}
_ERROR_CODE = re.compile(r"<error_code>\s*(\d{1,9})\s*</error_code>", re.IGNORECASE)
_FAILURE_REASON = re.compile(r"<failure_reason>\s*Err\s+(\d{1,9})", re.IGNORECASE)
_SERVER = re.compile(r"/providers/microsoft\.sql/(?:servers|managedinstances)/([^/]+)")
_DATABASE = re.compile(r"/databases/([^/]+)")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SYNAPSE = re.compile(r"/providers/microsoft\.synapse/workspaces/([^/]+)")


def matches(record: Record) -> bool:
    return record.category_lower == "sqlsecurityauditevents"


class _Props:
    """`properties` looked up case-insensitively, under the audit name or its Log Analytics
    name (`client_ip_s`, `affected_rows_d`)."""

    __slots__ = ("_p",)

    def __init__(self, props: dict[str, Any]) -> None:
        # Audit records share their key sets: lower-cased once each (sources.record).
        cached = lower_keys(props)
        if cached is not None:
            lowered = cached
        else:
            try:
                lowered = {key.lower(): value for key, value in props.items()}
            except AttributeError:  # a key that is not text: the careful loop skips it
                lowered = {}
        if len(lowered) < len(props):
            # Two keys alike but for case (or one not text): the first non-null one wins.
            lowered = {}
            for key, value in props.items():
                if isinstance(key, str) and lowered.get(key.lower()) is None:
                    lowered[key.lower()] = value
        self._p = lowered

    def get(self, key: str) -> Any:
        props = self._p
        value = props.get(key)
        if value is not None:
            return value
        for candidate in _suffixed(key):
            value = props.get(candidate)
            if value is not None:
                return value
        return None

    def text(self, key: str) -> str | None:
        return to_str(self.get(key))

    def count(self, key: str) -> int | None:
        number = to_int(self.get(key))
        return number if number is not None and number >= 0 else None


@cache  # the few dozen audit field names this module reads
def _suffixed(key: str) -> tuple[str, str, str]:
    return f"{key}_s", f"{key}_d", f"{key}_b"


def _succeeded(value: Any) -> bool | None:
    """`"true"`/`"false"`, `true`/`false`, `1`/`0`, `"1"`/`"0"`, any case; else unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _SUCCEEDED.get(value.strip().lower())
    return None


def _error_code(additional: Any) -> str | None:
    """The error number of a failure (`<error_code>18456</error_code>` or
    `<failure_reason>Err 18456, Level 14, ...`): digits only, never the message."""
    if not isinstance(additional, str):
        return None
    match = _ERROR_CODE.search(additional) or _FAILURE_REASON.search(additional)
    return match.group(1) if match else None


def _server_and_database(resource_id: str, props: _Props) -> tuple[str | None, str | None]:
    server_match = _SERVER.search(resource_id) or _SYNAPSE.search(resource_id)
    server = server_match.group(1) if server_match else None
    server = server or (props.text("logicalservername") or props.text("server_instance_name"))
    database = props.text("database_name")
    if database is None:
        database_match = _DATABASE.search(resource_id)
        database = database_match.group(1) if database_match else None
    return (server.lower() if server else None), database


def _principal(props: _Props) -> str | None:
    """Who acted: the login (server principal), else the session's login, else the
    database user (contained users)."""
    for key in ("server_principal_name", "session_server_principal_name"):
        value = props.text(key)
        if value:
            return value
    return props.text("database_principal_name")


def _actor(principal: str | None, server: str | None) -> dict[str, Any]:
    if principal is None:
        return {"actor_user_id": None, "actor_username": None, "actor_user_type": None}
    if "@" in principal:
        upn = principal.lower()
        return {"actor_user_id": f"sql:{upn}", "actor_username": upn, "actor_user_type": "Regular"}
    # A SQL login, an Entra app or managed identity (logged by display name), or a contained
    # database user: which of them the audit does not say.
    return {
        "actor_user_id": f"sql:{server or 'unknown-server'}/{principal.lower()}",
        "actor_username": None,
        "actor_user_type": "Other",
    }


def _classify(action: str, statement: Any) -> tuple[EventType, str | None]:
    if action in _LOGON_ACTIONS:
        return "Logon", None
    if action in _LOGOFF_ACTIONS:
        return "Other", "LOGOUT"
    kind = statement_kind(statement) if isinstance(statement, str) else None
    if action in _ACTION_TYPES:
        event_type, action_kind = _ACTION_TYPES[action]
        # The statement names the object class (GRANT vs ALTER ROLE ADD MEMBER) when the
        # record has one; the action id decides the type.
        return event_type, kind if kind and kind != "OTHER" else action_kind
    if kind is None:
        return "Other", None
    return _KIND_TYPES.get(kind.split(" ", 1)[0], "Other"), kind


def _record_count(kind: str | None, props: _Props, event_type: EventType) -> int | None:
    if event_type == "Logon" or kind is None:
        return None
    response = props.count("response_rows")
    affected = props.count("affected_rows")
    if is_read_kind(kind):
        return response
    if is_write_kind(kind):
        return affected
    if response:
        return response
    return affected if affected else None


def _original_uid(props: _Props) -> str | None:
    """The audit's own id of the event (`event_id`, else `sequence_group_id`): GUID-shaped
    ids only, since any other text in them would be free text from the wire."""
    for key in ("event_id", "sequence_group_id"):
        value = props.text(key)
        if value and _GUID.fullmatch(value):
            return value.lower()
    return None


def _result(succeeded: bool | None) -> EventResult:
    if succeeded is None:
        return "NA"
    return "Success" if succeeded else "Failure"


def normalise(record: Record, ctx: NormaliseContext) -> list[AccessEvent]:
    props = _Props(record.properties())
    sequence = to_int(props.get("sequence_number"))
    if sequence is not None and sequence > 1:
        raise RecordSkipped(
            "statement-continuation",
            "continuation of a long statement (sequence_number above 1): counted once",
        )
    if record.get(*TIME_KEYS) is None:
        # The audit's own time when the envelope has none (re-exported records).
        event_time = props.get("event_time")
        if event_time is not None:
            record.fields["time"] = event_time
    time = record.time()
    action = (props.text("action_id") or "").upper()
    event_type, kind = _classify(action, props.get("statement"))
    succeeded = _succeeded(props.get("succeeded"))
    if succeeded is None:
        # An authentication action names its own outcome (DBAS succeeded, DBAF failed).
        succeeded = _LOGON_OUTCOMES.get(action)
    result = _result(succeeded)
    details = _error_code(props.get("additional_information")) if result == "Failure" else None
    resource_id = record.resource_id
    server, database = _server_and_database(resource_id, props)
    sensitivity = parse_sensitivity(props.get("data_sensitivity_information"))
    client_ip = props.text("client_ip")
    fields = {
        "time_generated": time,
        "event_uid": record.uid,
        "event_original_uid": _original_uid(props),
        "event_type": event_type,
        "event_sub_type": kind,
        "event_result": result,
        "event_result_details": details,
        "event_product": PRODUCT,
        "operation": action or "UNKNOWN",
        "object": "/".join(p for p in (server, database) if p) or None,
        "object_type": "Database",
        "src_ip_addr": normalise_ip(client_ip) if client_ip else None,
        "acting_app_name": props.text("application_name"),
        "http_user_agent": props.text("host_name"),
        "target_resource_id": resource_id or None,
        "dvc_scope_id": subscription_of(resource_id),
        "record_count": _record_count(kind, props, event_type),
        "phi_category": sensitivity.category,
        "sensitivity_labels": sensitivity.labels or None,
        "sensitivity_rank": sensitivity.rank,
        "source_category": CATEGORY,
        "raw_record_ref": ctx.raw_record_ref,
        **_actor(_principal(props), server),
    }
    return [build_event(ctx.redacted(fields))]
