"""What an Activity Log write changed: its `properties` from the request and response bodies,
and the bounded buffer that carries a `Start` record's request body to its terminal record.

An ARM write is logged as records sharing a `correlationId`: `Start` carries
`properties.requestbody` (the JSON the caller sent, as a *string*), `Accept` (asynchronous
operations) and the terminal `Success`/`Failure` often carry `properties.responseBody` (the
resource after the change). Rules must judge a change on success only, so the terminal
successful record's event gets the change in `NewValue`; the `Start` (and `Accept`) records
stay counted skips (`non-terminal`) and only leave their bodies here.

`NewValue` (AccessEvent.new_value) is compact JSON of one object, the union of the bodies'
`properties` objects (request first, then response: on a key both give, the response wins,
being the resource's state after the change):

- top-level keys with their first letter lower-cased when the second is lower case, so both
  API versions read alike (`Properties.RoleDefinitionId` → `roleDefinitionId`); nested
  objects are kept as sent (tag names are the customer's own);
- values under secret-like keys (`password`, `secret`, `connectionString`, names ending in
  `key`/`keys`, tokens, custom data) replaced by `"[redacted]"`, at any depth; for writes
  whose properties are all secrets (a Key Vault secret, a web app's app settings or
  connection strings) every value is, and only the names show; numbers JSON or a 64-bit
  long cannot hold (`1e400` reads as infinity) as null;
- at most NEW_VALUE_MAX_CHARS characters: beyond, the largest top-level entries are left out
  and their names listed in `"_omitted"`;
- then the identifier redaction every copied text gets (NormaliseContext.redacted).

A body that is not JSON, or has no `properties` object, contributes nothing. A terminal record
whose `Start` never arrived (or was let go) still makes its event, from its own bodies.

The buffer is pipeline state (one per `Pipeline`, like the dedupe set): entries a batch adds
or takes stay pending until the batch commits, and a rollback forgets them, so a retried
batch derives the same events. Across diagnostics partitions it does not help: Azure Monitor
spreads records over the hub's partitions, so a `Start` and its terminal record may be read
by different pipelines (partitions, instances); then `NewValue` comes from the terminal
record's own bodies only (often the `responseBody`), or is absent.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Bodies of ARM writes are small (a role assignment ~300 characters, a storage account's
# properties ~2,000); a network security group with its rules can run to hundreds of KB.
NEW_VALUE_MAX_CHARS = 4096
# Asynchronous writes (a database, a cluster) run up to hours; a Start older than this in
# event time is let go. Count cap: 10,000 entries of at most NEW_VALUE_MAX_CHARS is ~45 MB at
# worst, ~5 MB for real bodies; a tenant's Activity writes stay far below 10,000 an hour.
START_BUFFER_HORIZON_SECONDS = 3 * 3600.0
START_BUFFER_MAX_ENTRIES = 10_000

OMITTED = "_omitted"
REDACTED = "[redacted]"
# Lower-cased substrings of key names whose values are secrets, never copied.
_SECRET_KEYS = (
    "password",
    "secret",
    "connectionstring",
    "sastoken",
    "accesstoken",
    "customdata",
)
# ... and key names ending so (`primaryKey`, `storageAccountAccessKey`, `keys` of listKeys),
# whatever the service calls them. A flag such as `allowSharedKeyAccess` does not end so.
_SECRET_ENDINGS = ("key", "keys")
# Writes whose every property value is a secret: the setting names are what a rule may need.
_SECRET_RESOURCE_TYPES = ("microsoft.keyvault/vaults/secrets",)
_SECRET_CONFIG_NAMES = frozenset(
    {"appsettings", "connectionstrings", "authsettings", "authsettingsv2", "publishingcredentials"}
)
_OMITTED_NAME_CHARS = 64
_OMITTED_BUDGET = 1024

Key = tuple[str, str, str]
Change = dict[str, Any]


def change_key(correlation_id: str | None, operation: str, resource_id: str) -> Key | None:
    """The buffer key of a write: the correlation id alone is not enough, a deployment's
    operations all share one."""
    if not correlation_id:
        return None
    return (correlation_id.lower(), operation.upper(), resource_id.lower())


def all_secret(resource_type: str, resource_id: str) -> bool:
    """True for a write whose properties are all secrets (see the module docstring)."""
    if resource_type.endswith(_SECRET_RESOURCE_TYPES):
        return True
    return resource_type.endswith("/config") and (
        resource_id.rsplit("/", 1)[-1] in _SECRET_CONFIG_NAMES
    )


def body_properties(props: dict[str, Any], names: Iterable[str], secret: bool) -> Change:
    """The `properties` object of the bodies named (`requestbody`, `responsebody`, lower
    case; any case in the record) in a record's `properties`, merged in the order named; {}
    when none is usable. With `secret` every value is a secret (`all_secret`)."""
    wanted = list(names)
    found: dict[str, Any] = {}
    for key, value in props.items():
        lowered = key.lower()
        if lowered in wanted and found.get(lowered) is None:
            found[lowered] = value
    merged: Change = {}
    for name in wanted:
        change = _properties_of(found.get(name), secret)
        merged.update(change)
    return merged


def _properties_of(body: Any, secret: bool) -> Change:
    try:
        for _ in range(2):  # a body is JSON in a string; seen once more encoded again
            if not isinstance(body, str):
                break
            body = json.loads(body, parse_constant=_no_constant)
        if not isinstance(body, dict):
            return {}
        inner = next(
            (v for k, v in body.items() if k.lower() == "properties" and isinstance(v, dict)),
            None,
        )
        if inner is None:
            return {}
        if secret:
            return {_camel(k): REDACTED for k in inner}
        return {_camel(k): _masked(k, v) for k, v in inner.items()}
    except (ValueError, RecursionError):  # not JSON, or nested past the interpreter's depth
        return {}


def _no_constant(name: str) -> None:
    # `NaN`/`Infinity` are not JSON: read as null, so NewValue stays valid JSON.
    return None


def _camel(key: str) -> str:
    if len(key) > 1 and key[0].isupper() and key[1].islower():
        return key[0].lower() + key[1:]
    return key


def _masked(key: str, value: Any) -> Any:
    lowered = key.lower()
    if lowered.endswith(_SECRET_ENDINGS) or any(s in lowered for s in _SECRET_KEYS):
        return REDACTED if value is not None else None
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked("", v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # `1e400` reads as infinity, which JSON cannot write
    if isinstance(value, int) and value.bit_length() > 63:
        return None  # past a 64-bit long (Log Analytics), and past 4,300 digits unprintable
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def bounded(change: Change, omitted: Iterable[str] = ()) -> tuple[Change, tuple[str, ...]]:
    """`change` within NEW_VALUE_MAX_CHARS: the smallest entries kept (the flags rules read,
    `allowBlobPublicAccess`, `roleDefinitionId`, are small), the names of the others returned."""
    left_out = [k for k in omitted if k not in change]
    if len(_dumps(change)) + (len(_dumps(left_out)) if left_out else 0) <= NEW_VALUE_MAX_CHARS:
        return change, tuple(left_out)
    sizes = {k: len(_dumps({k: v})) for k, v in change.items()}
    budget = NEW_VALUE_MAX_CHARS - _OMITTED_BUDGET
    kept: set[str] = set()
    used = 2
    for k in sorted(change, key=lambda k: (sizes[k], k)):
        if used + sizes[k] <= budget:
            kept.add(k)
            used += sizes[k]
        else:
            left_out.append(k)
    return {k: v for k, v in change.items() if k in kept}, tuple(left_out)


def new_value(change: Change, omitted: Iterable[str] = ()) -> str | None:
    """The compact JSON NewValue of a change (the shape in the module docstring)."""
    try:
        kept, left_out = bounded(change, omitted)
        if not kept and not left_out:
            return None
        out = dict(kept)
        if left_out:
            names: list[str] = []
            room = _OMITTED_BUDGET - 16
            for name in left_out:
                short = name[:_OMITTED_NAME_CHARS]
                room -= len(_dumps(short)) + 1
                if room < 0:
                    break
                names.append(short)
            out[OMITTED] = names
        text = _dumps(out)
        return text if len(text) <= NEW_VALUE_MAX_CHARS else _dumps({OMITTED: []})
    except (ValueError, RecursionError):
        return None


@dataclass(slots=True)
class _Start:
    stamp: float  # event time (epoch seconds) of the record that left it
    change: str  # compact JSON of the bounded change
    omitted: tuple[str, ...]


class StartBuffer:
    """Bounded `Start`/`Accept` changes by (correlation id, operation, resource), for the
    terminal record of the same write.

    Bounds: at most `max_entries` (oldest let go first) and, at each commit, entries whose
    record is older than `horizon` seconds before the pipeline's clock. What a batch puts or
    takes is pending until `commit`; `rollback` forgets it, so a retried batch sees the buffer
    as its first attempt did."""

    def __init__(
        self,
        max_entries: int = START_BUFFER_MAX_ENTRIES,
        horizon: float = START_BUFFER_HORIZON_SECONDS,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.horizon = horizon
        self._held: OrderedDict[Key, _Start] = OrderedDict()  # committed, oldest first
        self._added: dict[Key, _Start] = {}  # put by the current batch
        self._taken: set[Key] = set()  # committed entries the current batch took

    def _current(self, key: Key) -> _Start | None:
        if key in self._added:
            return self._added[key]
        if key in self._taken:
            return None
        return self._held.get(key)

    def put(self, key: Key, change: Change, stamp: float) -> None:
        """Remember a non-terminal record's change, merged over what the write left before
        (an `Accept`'s response after its `Start`'s request)."""
        earlier = self._current(key)
        omitted: tuple[str, ...] = ()
        if earlier is not None:
            change = {**json.loads(earlier.change), **change}
            omitted = earlier.omitted
            stamp = min(stamp, earlier.stamp)
        if not change and not omitted:
            return
        kept, left_out = bounded(change, omitted)
        self._added[key] = _Start(stamp, _dumps(kept), left_out)
        if key in self._held:
            self._taken.add(key)  # replaced: the committed one goes at commit

    def take(self, key: Key) -> tuple[Change, tuple[str, ...]] | None:
        """The change a terminal record's write left, removed from the buffer (pending)."""
        start = self._added.pop(key, None)
        if start is None:
            if key in self._taken:
                return None
            start = self._held.get(key)
            if start is None:
                return None
        if key in self._held:
            self._taken.add(key)
        return json.loads(start.change), start.omitted

    def commit(self, now: float) -> None:
        """Apply the batch's puts and takes, then let go of entries past the horizon of
        `now` (the pipeline's event-time clock) and the oldest beyond the cap."""
        held = self._held
        for key in self._taken:
            held.pop(key, None)
        for key, start in self._added.items():
            held[key] = start  # new keys go last: the order is arrival order
        self._added.clear()
        self._taken.clear()
        expire_before = now - self.horizon
        # Arrival order is nearly event-time order: the scan stops at the first entry in
        # time, so an entry out of order waits for the ones before it (or the count cap).
        while held:
            oldest = next(iter(held.values()))
            if len(held) <= self.max_entries and not oldest.stamp < expire_before:
                break
            held.popitem(last=False)

    def rollback(self) -> None:
        self._added.clear()
        self._taken.clear()

    def __len__(self) -> int:
        """Committed entries."""
        return len(self._held)
