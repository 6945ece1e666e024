"""A case-insensitive, defensive view of one diagnostic record, shared by all normalisers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from phiwatch.sources.fields import TimeOutOfRange, normalise_ip, parse_event_time, to_str

# Names under which services put the event time (SQL audit, Event Hubs logs, Activity raw).
TIME_KEYS = ("time", "timestamp", "originaleventtimestamp", "eventtimestamp", "eventtimestring")

# Long-URI claim types → the short JWT names (Key Vault and ARM log either form).
_LONG_CLAIMS = {
    "http://schemas.microsoft.com/identity/claims/objectidentifier": "oid",
    "http://schemas.microsoft.com/identity/claims/tenantid": "tid",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "unique_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": "email",
    "http://schemas.microsoft.com/claims/authnmethodsreferences": "amr",
    "http://schemas.microsoft.com/identity/claims/identityprovider": "idp",
}


class RecordRejected(Exception):
    """The record cannot become an event; `reason` is written for an operator."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RecordSkipped(Exception):
    """The record is well formed but is deliberately not an event (counted, archived)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Top-level fields the portal/REST Activity Log export (and `az monitor activity-log list`)
# writes as `{value, localizedValue}` objects; the diagnostic-settings form has plain strings.
_LOCALIZED_FIELDS = ("operationname", "category", "status", "substatus", "eventname")


def diagnostic_shape_problem(record: Record) -> str | None:
    """Why `record`, though it looks like an Azure log, is not the diagnostic-settings shape
    every normaliser reads (None when it is). Read before routing, a few key lookups: such a
    record must be refused whole, never half-normalised (its `category` reads as missing, its
    time key as another's)."""
    fields = record.fields
    for key in _LOCALIZED_FIELDS:
        value = fields.get(key)
        if isinstance(value, dict) and ("value" in value or "localizedValue" in value):
            return (
                f"'{key}' is a {{value, localizedValue}} object: an Activity Log export "
                "(portal or REST API), not a diagnostic-settings record"
            )
    if "submissiontimestamp" in fields and "time" not in fields:
        return (
            "'submissionTimestamp' without 'time': an Activity Log export "
            "(portal or REST API), not a diagnostic-settings record"
        )
    return None


_TEXT_ONLY = frozenset({str})
_CLAIMS_CACHE: dict[Any, Claims] = {}
_CLAIMS_CACHE_SIZE = 2048
_MAX_CACHED_CHARS = 8192  # a token's claims are a few hundred characters


class Claims:
    """Caller identity from `identity.claim` / `identity.claims`, long or short names.

    Immutable once made: `of` hands out one instance per distinct claim set (a batch holds
    a few dozen callers, each on many records), and `actor_memo` keeps what
    `sources.base.actor_fields` derived from it."""

    __slots__ = ("_c", "actor_memo")

    def __init__(self, claims: dict[str, Any]) -> None:
        self._c = claims
        self.actor_memo: dict[str, Any] | None = None

    @classmethod
    def of(cls, identity: Any) -> Claims:
        if not isinstance(identity, dict):
            return cls({})
        raw = identity.get("claims", identity.get("claim"))
        if type(raw) is dict:
            # A caller seen before, found before its values are checked: only checked sets
            # are stored, and a tuple equal to one of those has text in the same places.
            try:
                found = _CLAIMS_CACHE.get(tuple(raw.items()))
            except TypeError:  # a list or object among the values: unhashable
                found = None
            if found is not None:
                return found
        key: Any = None
        if isinstance(raw, str):
            key = raw if len(raw) <= _MAX_CACHED_CHARS else None
        elif (
            isinstance(raw, dict)
            and set(map(type, raw.values())) <= _TEXT_ONLY
            and sum(map(len, raw.values())) <= _MAX_CACHED_CHARS
        ):
            # Text values only: equal keys then mean equal claims (1, 1.0 and True would be
            # equal keys but not equal claims, and lists cannot be keys). Bounded in size.
            key = tuple(raw.items())
        if key is not None:
            found = _CLAIMS_CACHE.get(key)
            if found is not None:
                return found
        claims = cls._parse(raw)
        if key is not None:
            if len(_CLAIMS_CACHE) >= _CLAIMS_CACHE_SIZE:
                _CLAIMS_CACHE.clear()  # bounded: a cache of callers, not a directory
            _CLAIMS_CACHE[key] = claims
        return claims

    @classmethod
    def _parse(cls, raw: Any) -> Claims:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raw = None
        if not isinstance(raw, dict):
            return cls({})
        claims: dict[str, Any] = {}
        for key, value in raw.items():
            short = _LONG_CLAIMS.get(key)
            if short is None:
                short = key.rsplit("/", 1)[-1] if key.startswith("http") else key
            claims.setdefault(short.lower(), value)
        return cls(claims)

    def get(self, *names: str) -> str | None:
        claims = self._c
        for name in names:
            value = claims.get(name)
            if value is None:
                continue
            # to_str inlined for its common case: claims are read several times a record.
            text = (value.strip() or None) if type(value) is str else to_str(value)
            if text:
                return text
        return None

    @property
    def object_id(self) -> str | None:
        oid = self.get("oid", "objectidentifier")
        return oid.lower() if oid else None

    @property
    def upn(self) -> str | None:
        upn = self.get("upn", "unique_name", "preferred_username")
        return upn if upn and "@" in upn else None

    @property
    def app_id(self) -> str | None:
        app = self.get("appid", "azp")
        return app.lower() if app else None

    @property
    def user_type(self) -> str | None:
        if self.get("xms_mirid"):
            return "ManagedIdentity"
        if self.upn:
            return "Regular"
        if self.get("idtyp") == "app" or (self.app_id and self.object_id):
            return "ServicePrincipal"
        return None


class Record:
    """Top-level keys lower-cased once; nested access stays explicit.

    `category` (and its lower case), `resource_id` and `operation_name` are read once here:
    routing and every normaliser ask for them several times a record."""

    __slots__ = (
        "_properties",
        "category",
        "category_lower",
        "fields",
        "operation_name",
        "resource_id",
        "uid",
    )

    def __init__(self, value: dict[str, Any], uid: str) -> None:
        fields = lower_keys(value)
        if fields is None:
            fields = {key.lower(): item for key, item in value.items()}
        if len(fields) < len(value):
            # `Level` and `level` both present: keep the first non-null one.
            fields = {}
            for key, item in value.items():
                lowered_key = key.lower()
                if fields.get(lowered_key) is None:
                    fields[lowered_key] = item
        self.fields = fields
        self.uid = uid
        self._properties: dict[str, Any] | None = None
        # `text` of each, its common case inlined (three method calls a record).
        get = fields.get
        category = get("category")
        if category is None:
            category = get("type")
        self.category: str = category.strip() if type(category) is str else _text(category)
        self.category_lower: str = self.category.lower()
        resource_id = get("resourceid")
        self.resource_id: str = (
            resource_id.strip() if type(resource_id) is str else _text(resource_id)
        ).lower()
        operation = get("operationname")
        self.operation_name: str = operation.strip() if type(operation) is str else _text(operation)

    def get(self, *names: str) -> Any:
        fields = self.fields
        for name in names:
            value = fields.get(name)
            if value is not None:
                return value
        return None

    def text(self, *names: str) -> str | None:
        fields = self.fields
        for name in names:
            value = fields.get(name)
            if value is not None:
                # to_str of the first value present, its common case inlined (hot path).
                if type(value) is str:
                    return value.strip() or None
                return to_str(value)
        return None

    def time(self) -> datetime:
        value = self.get(*TIME_KEYS)
        if value is None:
            raise RecordRejected("no-timestamp", "no timestamp")
        try:
            parsed = parse_event_time(value)
        except TimeOutOfRange as exc:
            raise RecordRejected("time-out-of-range", str(exc)) from None
        if parsed is None:
            raise RecordRejected("bad-timestamp", "timestamp is not a recognisable date/time")
        return parsed

    def properties(self) -> dict[str, Any]:
        """`properties` as a dict, whether it came as an object or as (pseudo-)JSON text."""
        if self._properties is None:
            self._properties = _parse_properties(self.get("properties"))
        return self._properties

    def claims(self) -> Claims:
        return Claims.of(self.get("identity"))

    def caller_ip(self) -> str | None:
        value = self.text("calleripaddress")
        return normalise_ip(value) if value else None


def _text(value: Any) -> str:
    """`Record.text` of one value, "" for none."""
    if type(value) is str:
        return value.strip()
    return (to_str(value) if value is not None else None) or ""


# A source writes its records with one set of keys (a corpus of 28,694 records held 15):
# each set is lower-cased once, then every record of it is zipped with its values in C
# instead of lower-casing each key of each record (issue #18). Bounded in shapes and keys.
_KEY_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_KEY_SETS = 512
_MAX_CACHED_KEYS = 64


def _lowered_keys(value: dict[Any, Any]) -> tuple[str, ...] | None:
    """`value`'s keys lower-cased, in order, from the cache; None for a record with more
    keys than are cached, or a key that is not text (the caller lower-cases those itself)."""
    if len(value) > _MAX_CACHED_KEYS:
        return None
    keys = tuple(value)
    lowered = _KEY_SETS.get(keys)
    if lowered is None:
        try:
            lowered = tuple(key.lower() for key in keys)
        except AttributeError:
            return None
        if len(_KEY_SETS) >= _MAX_KEY_SETS:
            _KEY_SETS.clear()  # bounded: a few shapes per source, not every hostile one
        _KEY_SETS[keys] = lowered
    return lowered


def lower_keys(value: dict[Any, Any]) -> dict[str, Any] | None:
    """`{key.lower(): item}` of a JSON object through the key-set cache (for keys alike but
    for case, the last one's item, as that comprehension gives); None when a key is not text
    or there are more than the cache takes: the caller's own comprehension decides those."""
    lowered = _lowered_keys(value)
    if lowered is None:
        return None
    return dict(zip(lowered, value.values(), strict=True))


def _parse_properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        for candidate in (text, _sanitise(text)):
            try:
                parsed = json.loads(candidate)
            except (ValueError, RecursionError):  # "[[[[…" deeper than the parser goes
                continue
            if isinstance(parsed, dict):
                return parsed
        raise RecordRejected("properties-not-json", "properties is not valid JSON")
    raise RecordRejected(
        "properties-wrong-type", f"properties is a JSON {type(value).__name__}, not an object"
    )


def _sanitise(text: str) -> str:
    # Function App logs send single-quoted pseudo-JSON; this recovers the common case only.
    return text.replace("'", '"').replace("\n", "\\n")
