"""The three records phiwatch produces (contract: DESIGN.md §4–§5).

Field names are snake_case in Python and PascalCase on the wire (Sentinel columns), so
`event.actor_user_id` serialises as `ActorUserId`. Serialise with `to_wire()`.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

EventType = Literal[
    "Read",
    "Create",
    "Set",
    "Delete",
    "Execute",
    "Logon",
    "Enable",
    "Disable",
    "Other",
]
EventResult = Literal["Success", "Failure", "Partial", "NA"]
PhiCategory = Literal["demographic", "clinical", "financial", "none"]
Severity = Literal["Informational", "Low", "Medium", "High"]
# Which plane a source's events are on: data (someone read or used something) or control
# (someone changed a resource). Each source declares one (phiwatch/sources/*.py, PLANE).
Plane = Literal["data", "control"]
ActorUserType = Literal["Regular", "ServicePrincipal", "ManagedIdentity", "Other"]
# Patient privacy stamps (phiwatch/privacy/directory.py says how each is decided).
AccessExplanation = Literal["care-team", "allowed-application", "unexplained"]
PatientRelation = Literal["self", "family", "coworker", "neighbour"]
RelationBasis = Literal[
    "employee-id",
    "surname-and-address",
    "rare-surname",
    "patient-is-employee",
    "street-and-postcode",
]
EmploymentStatus = Literal["active", "leave", "terminated"]

# What one alert row in Sentinel carries of its lists (EvidenceEventUids, PatientRefs): a
# row must stay small. The archived alert carries them whole, up to MAX_ALERT_REFS each.
MAX_EVIDENCE = 50
# The archived alert's lists are complete up to this many entries each (a breach notification
# needs every patient; the bound keeps the detect state and one alert line a few MB at most).
# Beyond it the alert says so (EvidenceEventCount, PatientRefsComplete) instead of growing.
MAX_ALERT_REFS = 100_000


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        str_strip_whitespace=False,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @cached_property
    def _json(self) -> bytes:
        # Models are frozen, and the same event is written to the archive, a local file and
        # Sentinel: serialise it once (in pydantic's own serializer: same bytes as dumping
        # to_wire() with orjson, a third faster).
        return self.__pydantic_serializer__.to_json(self, by_alias=True)

    def to_json(self) -> bytes:
        return self._json


class AccessEvent(_Wire):
    """One normalised access to a monitored resource, ASIM AuditEvent 0.1.2 aligned."""

    time_generated: AwareDatetime
    event_uid: str
    event_original_uid: str | None = None
    event_schema: Literal["AuditEvent"] = "AuditEvent"
    event_schema_version: Literal["0.1.2"] = "0.1.2"
    event_type: EventType
    event_sub_type: str | None = None
    event_result: EventResult
    event_result_details: str | None = None
    event_product: str
    event_vendor: Literal["Microsoft"] = "Microsoft"
    operation: str
    object: str | None = None
    object_type: str | None = None
    actor_user_id: str | None = None
    actor_username: str | None = None
    actor_user_type: ActorUserType | None = None
    acting_app_id: str | None = None
    acting_app_name: str | None = None
    # A keyed hash of the credential a caller presented without a principal (a SAS signature,
    # an account key): what ties together requests no identity does.
    credential_id: str | None = None
    # How the caller authenticated: OAuth, SAS, AccountKey, Anonymous (Storage); the sign-in's
    # method (password, MFA) for Entra (ASIM LogonMethod).
    logon_method: str | None = None
    # Who the application says it acts for (FHIR X-MS-AZUREFHIR-AUDIT-* headers): the actor
    # only for applications configured as trusted, else kept here as the caller's word.
    claimed_user_id: str | None = None
    claimed_username: str | None = None
    purpose_of_use: str | None = None
    src_ip_addr: str | None = None
    src_geo_country: str | None = None
    src_geo_region: str | None = None
    src_geo_city: str | None = None
    src_geo_latitude: float | None = None
    src_geo_longitude: float | None = None
    src_asn: int | None = Field(default=None, ge=0)  # autonomous system of the address
    http_user_agent: str | None = None
    # Sign-ins: interactive or not, Entra ID Protection's risk, conditional access outcome.
    is_interactive: bool | None = None
    risk_level: str | None = None
    risk_state: str | None = None
    conditional_access_status: str | None = None
    target_resource_id: str | None = None
    # The application signed in to (sign-ins), the user acted on (directory changes, role
    # assignments: ASIM TargetUserId/TargetUsername).
    target_app_id: str | None = None
    target_app_name: str | None = None
    target_user_id: str | None = None
    target_username: str | None = None
    dvc_scope_id: str | None = None
    # A change's properties as compact JSON (ASIM NewValue/OldValue): an Activity Log write's
    # request or response body, a directory change's modified properties. Bounded in size.
    new_value: str | None = None
    old_value: str | None = None
    # PHI extensions
    patient_ref: str | None = None
    record_count: int | None = Field(default=None, ge=0)
    response_bytes: int | None = Field(default=None, ge=0)  # bytes a read returned (Storage)
    phi_category: PhiCategory = "none"
    # Data classification the source reports (SQL sensitivity labels) and its top rank.
    sensitivity_labels: list[str] | None = None
    sensitivity_rank: int | None = Field(default=None, ge=0)
    # Patient privacy (phiwatch/privacy): what the workforce roster and the patient index say
    # of this access, stamped at normalise time with the inputs then in force (a later roster
    # must not rewrite why yesterday's access was or was not explained). None: not known
    # (no patient in the event, or the input that would say is not loaded).
    access_explanation: AccessExplanation | None = None
    patient_relation: PatientRelation | None = None
    patient_relation_basis: RelationBasis | None = None
    patient_restricted: bool | None = None
    actor_employment_status: EmploymentStatus | None = None
    source_category: str
    raw_record_ref: str


# ------------------------------------------------------------------ fast construction

# AccessEvent's fields in schema order, each with its default (None for a required one).
# The serializer writes a model's __dict__ in its order, so a built event's dict must start
# from this: same keys, same order as validation leaves them.
_EVENT_TEMPLATE: dict[str, Any] = {
    name: None if info.is_required() else info.get_default(call_default_factory=True)
    for name, info in AccessEvent.model_fields.items()
}
_EVENT_FIELD_COUNT = len(_EVENT_TEMPLATE)
_EVENT_REQUIRED = frozenset(n for n, i in AccessEvent.model_fields.items() if i.is_required())
_set = object.__setattr__


def build_event(fields: dict[str, Any]) -> AccessEvent:
    """`AccessEvent(**fields)` without validating again what a normaliser has typed already
    (phiwatch/sources: times parsed, numbers coerced, enums from fixed tables).

    The event is what validation gives for those fields: the same values, defaults and set
    fields, the same JSON bytes (tests/test_fast_events.py holds it for generated records
    of every source). Unknown or missing fields go through validation, for its error."""
    values = {**_EVENT_TEMPLATE, **fields}
    keys = fields.keys()
    # A key the template lacks makes the dict longer: an unknown field.
    if len(values) != _EVENT_FIELD_COUNT or not keys >= _EVENT_REQUIRED:
        return AccessEvent(**fields)
    event = object.__new__(AccessEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(keys))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


class Alert(_Wire):
    """A correlated finding; the same input always yields the same `AlertId`."""

    alert_id: str
    rule_id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    rule_name: str
    severity: Severity
    tactics: list[str]
    techniques: list[str]
    title: str
    description: str
    reasons: list[str]
    actor_user_id: str | None = None
    actor_username: str | None = None
    src_ip_addr: str | None = None
    target_resource_id: str | None = None
    window_start: AwareDatetime
    window_end: AwareDatetime
    first_event_time: AwareDatetime
    last_event_time: AwareDatetime
    event_count: int = Field(ge=0)
    distinct_patient_count: int = Field(default=0, ge=0)
    # Every counted event's EventUid in the archive (earliest first, up to MAX_ALERT_REFS);
    # at most MAX_EVIDENCE in Sentinel, where EvidenceEventCount says how many there are.
    evidence_event_uids: list[str] = Field(max_length=MAX_ALERT_REFS)
    detected_at: AwareDatetime
    # Optional, so alerts archived before them still validate.
    # Every patient the alert involves, as pseudonyms, sorted (up to MAX_ALERT_REFS).
    patient_refs: list[str] | None = Field(default=None, max_length=MAX_ALERT_REFS)
    # False when the rule saw more patients or evidence events than the alert could keep.
    patient_refs_complete: bool | None = None
    evidence_complete: bool | None = None
    # How many evidence EventUids the archived alert holds: set where a copy carries fewer
    # (Sentinel's row), with EvidenceRef saying where the rest are.
    evidence_event_count: int | None = Field(default=None, ge=0)
    evidence_ref: str | None = None
    # For alerts keyed by actor: the actor's usual volume of this rule's events (median per
    # active day over the 14 days before the alert's day) and how many active days that is
    # (0: no history yet). phiwatch.detect.kinds.baseline keeps it.
    actor_usual_daily_events: float | None = Field(default=None, ge=0)
    actor_baseline_days: int | None = Field(default=None, ge=0)


class DeadLetter(_Wire):
    """An input record phiwatch could not turn into an event, and why.

    It never holds the record's content (which may carry PHI): `RawRecordRef` and
    `RecordHash` point at the byte-exact copy in the archive.
    """

    record_hash: str
    reason_code: str
    reason: str
    source_stream: str
    position: str
    source_category: str | None = None
    received_at: datetime | None = None
    raw_record_ref: str


class BatchHealth(_Wire):
    """One processed batch, for the operations view (dead-letter and late rates, lag, and
    when each log source was last seen). Counts only: no record content."""

    time_generated: AwareDatetime  # when the batch arrived (enqueued) or its latest event
    batch: str
    stream: str
    records: int = Field(ge=0)
    events: int = Field(ge=0)
    dead_letters: int = Field(ge=0)
    skipped: int = Field(ge=0)
    late: int = Field(ge=0)
    alerts: int = Field(ge=0)
    dead_letter_reasons: dict[str, int]
    skip_reasons: dict[str, int]
    # Latest event time seen per source category in the batch (AuditLogs, AuditEvent, ...).
    source_last_seen: dict[str, AwareDatetime]
