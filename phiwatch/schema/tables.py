"""Log Analytics table and DCR stream schemas, derived from the pydantic models.

The models are the single source of truth: `phiwatch schema` prints what infra/ deploys, and
a test fails when the committed infra drifts from the models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel

from phiwatch.model import AccessEvent, Alert, BatchHealth
from phiwatch.schema.wire import WirePlan, wire_plan


@dataclass(frozen=True)
class TableSpec:
    model: type[BaseModel]
    table: str  # Log Analytics custom table
    stream: str  # DCR input stream the sink posts to
    description: str
    # Columns Log Analytics reserves: renamed on the way in by the DCR transform.
    renames: tuple[tuple[str, str], ...] = ()
    # TimeGenerated is required in every table; when the model has none, this column feeds it.
    time_from: str | None = None
    # Columns with one value for every row: not sent (Log Analytics bills ingested bytes), the
    # DCR transform adds them back, so the table is the same.
    constants: tuple[tuple[str, str], ...] = ()


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        AccessEvent,
        "PhiAccessEvents_CL",
        "Custom-PhiAccessEvents",
        "phiwatch: normalised PHI-access events (ASIM AuditEvent 0.1.2 aligned)",
        constants=(
            ("EventSchema", "AuditEvent"),
            ("EventSchemaVersion", "0.1.2"),
            ("EventVendor", "Microsoft"),
        ),
    ),
    TableSpec(
        Alert,
        "PhiAlerts_CL",
        "Custom-PhiAlerts",
        "phiwatch: correlated alerts; one row per alert version, dedupe on AlertId",
        renames=(("Title", "AlertTitle"),),
        time_from="DetectedAt",
    ),
    TableSpec(
        BatchHealth,
        "PhiPipelineHealth_CL",
        "Custom-PhiPipelineHealth",
        "phiwatch: one row per processed batch (counts, reasons, per-source last seen)",
    ),
)

# An idempotency key on every row the sink sends: a digest of the row's own content, so a
# row sent twice (a kill between an accepted upload and the outbox delete, two instances
# draining one outbox) has one RowId, and rows that differ in anything (another event of
# the same record, another version of an alert) have different ones. Not a model field: the
# archive and the models do not change, the sink adds it. Dedupe in KQL with
# `summarize arg_max(TimeGenerated, *) by RowId` (infra/sentinel/README.md).
ROW_ID = "RowId"
COMPACT_ROW_ID = "w"  # its key in a compact row (phiwatch.schema.wire.KEYS)
_ROW_ID_COLUMN = {"name": ROW_ID, "type": "string"}

# Columns Log Analytics adds to every table (for KQL schemas, not for ingestion).
SYSTEM_COLUMNS = (("TenantId", "string"), ("Type", "string"), ("_ResourceId", "string"))


def _la_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _la_type(kinds[0])
    if origin is Literal:
        values = typing.get_args(annotation)
        return "string" if all(isinstance(v, str) for v in values) else "long"
    if origin in (list, dict, tuple, set):
        return "dynamic"
    if origin is typing.Annotated:
        return _la_type(typing.get_args(annotation)[0])
    if annotation is AwareDatetime:
        return "datetime"
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "boolean"
        if issubclass(annotation, int):
            return "long"
        if issubclass(annotation, float):
            return "real"
        if issubclass(annotation, datetime):
            return "datetime"
        if issubclass(annotation, str):
            return "string"
    raise TypeError(f"no Log Analytics type for {annotation!r}")


def _model_columns(spec: TableSpec) -> list[dict[str, str]]:
    return [
        {"name": field.alias or name, "type": _la_type(field.annotation)}
        for name, field in spec.model.model_fields.items()
    ]


def archive_columns(spec: TableSpec) -> list[dict[str, str]]:
    """Columns of the model's lines in the archive (`to_json`: wire names, constants included,
    no DCR rename or added TimeGenerated): what an external table over the archive reads."""
    return _model_columns(spec)


def full_stream_columns(spec: TableSpec) -> list[dict[str, str]]:
    """The full columns of the DCR input stream: the model's wire names (without the constant
    columns the transform adds), as the previous version sent every row and as a compact row
    still sends a column its compact form cannot rebuild."""
    constants = dict(spec.constants)
    return [c for c in _model_columns(spec) if c["name"] not in constants] + [_ROW_ID_COLUMN]


def stream_columns(spec: TableSpec) -> list[dict[str, str]]:
    """Columns of the DCR input stream: the full columns, then the compact ones
    (`phiwatch.schema.wire`): one stream takes the rows of both versions."""
    compact = [{"name": k, "type": t} for k, t in plan_for(spec).compact_columns()]
    return full_stream_columns(spec) + compact


@functools.cache
def plan_for(spec: TableSpec) -> WirePlan:
    """How `spec`'s rows are made compact and rebuilt by its DCR transform."""
    return wire_plan(
        spec.table,
        [(c["name"], c["type"]) for c in full_stream_columns(spec)],
        [(c["name"], c["type"]) for c in table_columns(spec)],
        constants=dict(spec.constants),
        renames=dict(spec.renames),
        time_from=spec.time_from,
    )


def table_columns(spec: TableSpec) -> list[dict[str, str]]:
    """Columns of the Log Analytics table: the model's, renamed, with TimeGenerated."""
    renames = dict(spec.renames)
    columns = [{**c, "name": renames.get(c["name"], c["name"])} for c in _model_columns(spec)]
    if not any(c["name"] == "TimeGenerated" for c in columns):
        columns.insert(0, {"name": "TimeGenerated", "type": "datetime"})
    return [*columns, dict(_ROW_ID_COLUMN)]


def transform_kql(spec: TableSpec) -> str:
    """The DCR transform from stream to table: every table column from the full column when
    the row has it, else from its compact form; the constant columns added."""
    return plan_for(spec).transform()


def full_wire_row(spec: TableSpec, model: BaseModel) -> dict[str, Any]:
    """The row as the previous version sent it: the model's wire form without nulls (a
    missing column is null in Log Analytics anyway) and without the constants the transform
    adds, plus its RowId (a digest of this form, so a row keeps its RowId across versions)."""
    skip = dict(spec.constants)
    row = {k: v for k, v in model.to_wire().items() if v is not None and k not in skip}  # type: ignore[attr-defined]
    row[ROW_ID] = row_id(row)
    return row


def wire_row(spec: TableSpec, model: BaseModel) -> dict[str, Any]:
    """The row the sink sends: `full_wire_row` made compact (short keys, packed codes,
    derived forms the DCR transform rebuilds; `phiwatch.schema.wire`)."""
    return plan_for(spec).encode(full_wire_row(spec, model))


def is_compact(row: Mapping[str, Any]) -> bool:
    """Whether an outbox row is in the compact form (it has the short RowId key)."""
    return COMPACT_ROW_ID in row


def row_id(row: Mapping[str, Any]) -> str:
    """The RowId of a wire row: SHA-256 (128 bits, hex) of its canonical JSON without RowId.
    The same for the row as sent and as read back from the outbox (a JSON round trip), so a
    row queued before RowId existed gets the RowId it would have had."""
    content = {k: v for k, v in row.items() if k != ROW_ID}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


def spec_for(model: BaseModel) -> TableSpec:
    return next(spec for spec in TABLES if isinstance(model, spec.model))


def by_table(name: str) -> TableSpec:
    return next(spec for spec in TABLES if spec.table == name)
