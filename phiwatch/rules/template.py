"""The Sentinel analytic-rule template, as a pydantic model: the single source of truth for
the format of the files in `kql/`.

Keys are camelCase in YAML (Sentinel's template format) and snake_case in Python, so
`rule.query_frequency` reads `queryFrequency`. Durations are `timedelta`s in Python and
Sentinel's `5m` / `2h` / `1d` text in YAML. The model checks what a rule file *is* (types,
enumerations, GUID and duration syntax, what each kind requires); `phiwatch.rules.lint`
checks whether Sentinel will *accept* it (ranges, limits, consistency, the KQL itself).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _hyphenated_guid(value: object) -> object:
    # UUID() also takes 32 bare hex digits or braces; Sentinel wants the hyphenated form.
    if isinstance(value, str) and not _GUID.match(value):
        raise ValueError("id must be a GUID like 007c8ebe-dc17-4030-827e-32581ffdc89b")
    return value


# The `id` of an analytic rule or a hunting query.
GuidId = Annotated[UUID, BeforeValidator(_hyphenated_guid)]

_RULE_ID = r"^[a-z0-9]+(-[a-z0-9]+)*$"


def parse_duration(text: object) -> timedelta:
    """Sentinel's template durations: a whole number of minutes, hours or days (`5m`, `2h`,
    `14d`)."""
    if isinstance(text, timedelta):
        return text
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 5m, 2h or 1d")
    return int(match[1]) * _UNITS[match[2]]


def format_duration(value: timedelta) -> str:
    """The largest whole unit: 1 day is `1d`, 90 minutes `90m`."""
    for unit, size in _UNITS.items():
        if value % size == timedelta(0):
            return f"{value // size}{unit}"
    raise ValueError(f"{value} is not a whole number of minutes")


def to_iso8601(value: timedelta) -> str:
    """ARM's form of a duration (`PT5M`, `PT2H`, `P1D`, `P1DT6H`), for exporters."""
    minutes = value // timedelta(minutes=1)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    if hours or minutes or not days:
        text += (
            "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes or not hours else "")
        )
    return text


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

Severity = Literal["Informational", "Low", "Medium", "High"]
TriggerOperator = Literal["gt", "lt", "eq", "ne"]
Kind = Literal["Scheduled", "NRT"]
Backend = Literal["log-analytics", "adx"]

# ARM's names for the template's trigger operators.
TRIGGER_OPERATORS: dict[str, str] = {
    "gt": "GreaterThan",
    "lt": "LessThan",
    "eq": "Equal",
    "ne": "NotEqual",
}


class _Part(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RequiredDataConnector(_Part):
    connector_id: str
    data_types: list[str] = []


class FieldMapping(_Part):
    identifier: str
    column_name: str


class EntityMapping(_Part):
    entity_type: str
    field_mappings: list[FieldMapping] = Field(min_length=1)


class AlertDynamicProperty(_Part):
    alert_property: str
    value: str


class AlertDetailsOverride(_Part):
    alert_display_name_format: str | None = None
    alert_description_format: str | None = None
    alert_severity_column_name: str | None = None
    alert_tactics_column_name: str | None = None
    alert_dynamic_properties: list[AlertDynamicProperty] = []


class GroupingConfiguration(_Part):
    enabled: bool = False
    reopen_closed_incident: bool = False
    lookback_duration: Duration = timedelta(hours=5)
    matching_method: Literal["AllEntities", "AnyAlert", "Selected"] = "AllEntities"
    group_by_entities: list[str] = []
    group_by_alert_details: list[str] = []
    group_by_custom_details: list[str] = []


class IncidentConfiguration(_Part):
    create_incident: bool = True
    grouping_configuration: GroupingConfiguration = GroupingConfiguration()


class EventGroupingSettings(_Part):
    aggregation_kind: Literal["SingleAlert", "AlertPerResult"] = "SingleAlert"


class RunSettings(_Part):
    """phiwatch's own scheduled runner executes the rule on its queryFrequency."""

    backend: Backend = "log-analytics"


class PhiwatchSettings(_Part):
    """What Sentinel does not know about: phiwatch's own use of the rule."""

    # The streaming detection this rule twins (Alert.RuleId), or the RuleId alerts raised from
    # this rule's results carry.
    rule_id: str | None = Field(default=None, pattern=_RULE_ID)
    # Present when phiwatch's scheduled runner executes the rule itself.
    run: RunSettings | None = None
    # Why the local engine (duckdb-kql) cannot execute this rule's query: `rules test` then
    # reports its cases as "not executed" with this reason, never as passed.
    unsupported_locally: str | None = Field(default=None, min_length=10)


class RuleTemplate(_Part):
    """One Sentinel analytic-rule template (one file in `kql/`)."""

    id: GuidId
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    severity: Severity
    status: Literal["Available", "Deprecated"] = "Available"
    required_data_connectors: list[RequiredDataConnector] = []
    kind: Kind
    # Scheduled rules only: NRT rules run every minute over what was ingested since the last run.
    query_frequency: Duration | None = None
    query_period: Duration | None = None
    trigger_operator: TriggerOperator | None = None
    trigger_threshold: int | None = None
    tactics: list[str] = []
    relevant_techniques: list[Annotated[str, Field(pattern=r"^T\d{4}(\.\d{3})?$")]] = []
    query: str = Field(min_length=1)
    entity_mappings: list[EntityMapping] = []
    custom_details: dict[str, str] = {}
    alert_details_override: AlertDetailsOverride | None = None
    event_grouping_settings: EventGroupingSettings | None = None
    incident_configuration: IncidentConfiguration | None = None
    suppression_enabled: bool = False
    suppression_duration: Duration = timedelta(hours=5)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    tags: list[Any] = []
    metadata: dict[str, Any] = {}
    phiwatch: PhiwatchSettings = PhiwatchSettings()

    @model_validator(mode="after")
    def _kind_fields(self) -> RuleTemplate:
        scheduled = ("query_frequency", "query_period", "trigger_operator", "trigger_threshold")
        if self.kind == "Scheduled":
            missing = [to_camel(f) for f in scheduled if getattr(self, f) is None]
            if missing:
                raise ValueError(f"kind Scheduled needs {', '.join(missing)}")
        else:
            given = [to_camel(f) for f in scheduled if getattr(self, f) is not None]
            if given:
                raise ValueError(
                    f"kind NRT runs every minute on newly ingested rows and takes no "
                    f"{', '.join(given)}"
                )
        return self

    # --- accessors for the runner, the exporter and the backtest ---------------------------

    @property
    def is_nrt(self) -> bool:
        return self.kind == "NRT"

    @property
    def frequency(self) -> timedelta:
        """How often the rule runs (NRT: every minute)."""
        return self.query_frequency or timedelta(minutes=1)

    @property
    def lookback(self) -> timedelta:
        """How far back one run reads (NRT: the minute since the last run)."""
        return self.query_period or timedelta(minutes=1)

    @property
    def techniques(self) -> list[str]:
        """Technique ids without sub-technique (`T1562.008` → `T1562`), deduplicated."""
        return list(dict.fromkeys(t.split(".")[0] for t in self.relevant_techniques))

    @property
    def sub_techniques(self) -> list[str]:
        return [t for t in self.relevant_techniques if "." in t]

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = (int(part) for part in self.version.split("."))
        return major, minor, patch

    @property
    def rule_id(self) -> str | None:
        return self.phiwatch.rule_id

    @property
    def runs_in_phiwatch(self) -> bool:
        return self.phiwatch.run is not None

    @property
    def backend(self) -> Backend | None:
        return self.phiwatch.run.backend if self.phiwatch.run else None

    @property
    def unsupported_locally(self) -> str | None:
        return self.phiwatch.unsupported_locally

    def matches_trigger(self, result_count: int) -> bool:
        """Whether a run returning `result_count` rows raises alerts (NRT: any row)."""
        if self.trigger_operator is None or self.trigger_threshold is None:
            return result_count > 0
        threshold = self.trigger_threshold
        return {
            "gt": result_count > threshold,
            "lt": result_count < threshold,
            "eq": result_count == threshold,
            "ne": result_count != threshold,
        }[self.trigger_operator]

    def to_template(self, *, only_written: bool = False) -> dict[str, Any]:
        """The template as Sentinel's YAML keys and values (durations as `5m`), without the
        phiwatch block: with defaults filled in, or `only_written` what the file says."""
        data = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_unset=only_written
        )
        data.pop("phiwatch", None)
        return data
