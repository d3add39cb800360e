"""Offline sync: what a field device sends (changes of six entity types), what it gets back, and the
conflict-resolution strategies a tenant may choose per entity type.

A change is ``{"event_id", "entity", "op", "id", "version", "client_ts", "data"}``: ``id`` is the
record's id (generated on the device), ``version`` the record version the change was based on (0 for
a create), ``data`` the fields set (all required ones for a create, any subset for an update, nothing
for a delete). Each entity's fields are one model below; an update is checked against its `patch_model`.

>>> ENTITY_MODELS["note"].model_validate({"text": "belt worn"}).model_dump()["tags"]
[]
>>> sorted(patch_model("manual_reading").model_validate({"value": 4.5}).model_dump(exclude_unset=True))
['value']
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from schema.ids import EquipmentId, SensorName
from schema.severity import Severity

EntityType = Literal["manual_reading", "production_record", "maintenance_record", "inspection", "note", "attachment"]
ENTITY_TYPES: tuple[str, ...] = get_args(EntityType)
Op = Literal["create", "update", "delete"]
StrategyName = Literal["newest_wins", "highest_value", "manual_review", "merge", "keep_both"]
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)
DEFAULT_STRATEGIES: dict[str, str] = {
    "manual_reading": "newest_wins",
    "production_record": "highest_value",  # regulatory: a reported volume is never lowered by a conflict
    "maintenance_record": "newest_wins",
    "inspection": "manual_review",  # safety-critical: a person decides
    "note": "merge",  # both texts kept
    "attachment": "keep_both",
}
# keep_both keeps the losing version as a record of its own; production is one record per well and day.
ALLOWED_STRATEGIES: dict[str, frozenset[str]] = {
    e: frozenset(STRATEGY_NAMES) - ({"keep_both"} if e == "production_record" else set()) for e in ENTITY_TYPES
}
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# Ids as lower-case text (checked in Rust, no uuid.UUID per change: a chunk has thousands of them).
UuidText = Annotated[str, StringConstraints(to_lower=True, pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                                            r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
WellId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# One instant, one spelling: "+02:00" and "Z" forms of the same time compare equal after this.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Volume = Annotated[float, Field(ge=0, allow_inf_nan=False)]


# Bounded text fields (a type checker reads only names, so one alias per bound rather than a function call).
_Text32 = Annotated[str, StringConstraints(max_length=32, min_length=0)]
_Text64 = Annotated[str, StringConstraints(max_length=64, min_length=0)]
_Text64NonEmpty = Annotated[str, StringConstraints(max_length=64, min_length=1)]
_Text200 = Annotated[str, StringConstraints(max_length=200, min_length=0)]
_Text255NonEmpty = Annotated[str, StringConstraints(max_length=255, min_length=1)]
_Text500 = Annotated[str, StringConstraints(max_length=500, min_length=0)]
_Text2000 = Annotated[str, StringConstraints(max_length=2000, min_length=0)]
_Text2000NonEmpty = Annotated[str, StringConstraints(max_length=2000, min_length=1)]
_Text10000 = Annotated[str, StringConstraints(max_length=10_000, min_length=0)]
_Text20000 = Annotated[str, StringConstraints(max_length=20_000, min_length=0)]


def _sync_strategies(value: dict[str, str]) -> dict[str, str]:
    bad = sorted(e for e, s in value.items() if s not in ALLOWED_STRATEGIES[e])
    if bad:
        raise ValueError(f"keep_both is not allowed for {', '.join(bad)} (one record per well and day)")
    return value


SyncStrategies = Annotated[dict[EntityType, StrategyName], AfterValidator(_sync_strategies)]


# ---------------------------------------------------------------- entity fields


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManualReadingData(_Data):
    """A gauge read by hand."""

    equipment_id: EquipmentId
    sensor: SensorName
    value: Finite
    unit: _Text32 = ""
    read_at: UtcDatetime
    notes: _Text2000 | None = None


class ProductionRecordData(_Data):
    """One well's production on one day (the same table as ``/v1/production``)."""

    well_id: WellId
    day: date
    oil_bbl: Volume = 0.0
    gas_mcf: Volume = 0.0
    water_bbl: Volume = 0.0
    runtime_hours: Annotated[float, Field(ge=0, le=24)] | None = None
    tubing_psi: Finite | None = None
    casing_psi: Finite | None = None
    line_psi: Finite | None = None
    temperature_f: Finite | None = None
    notes: _Text2000 | None = None


class MaintenanceRecordData(_Data):
    """A maintenance job; without ``ended_at`` it is in progress and the equipment's alerts are silenced."""

    equipment_id: EquipmentId
    kind: Literal["preventive", "corrective", "inspection", "failure_repair"] = "preventive"
    description: _Text2000 = ""
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    performed_by: _Text200 | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> "MaintenanceRecordData":
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class Finding(_Data):
    """One finding of an inspection; one with a severity opens (or raises) the equipment's ``inspection`` alert."""

    code: _Text64 | None = None
    description: _Text2000NonEmpty
    severity: Severity | None = None


class InspectionData(_Data):
    equipment_id: EquipmentId
    well_id: WellId | None = None
    inspected_at: UtcDatetime
    inspector: _Text200 | None = None
    kind: _Text64 = "routine"
    checklist: Annotated[dict[_Text64NonEmpty, bool | Finite | _Text500], Field(max_length=200)] = {}
    findings: Annotated[list[Finding], Field(max_length=100)] = []
    notes: _Text10000 | None = None


class NoteData(_Data):
    equipment_id: EquipmentId | None = None
    well_id: WellId | None = None
    title: _Text200 = ""
    text: _Text20000
    tags: Annotated[list[_Text64NonEmpty], Field(max_length=50)] = []


# What a device may call its attachment. HTML, SVG and scripts are not here: served from our origin they would
# run in a signed-in admin's browser (stored XSS). Anything else is uploaded as application/octet-stream.
ATTACHMENT_CONTENT_TYPES = frozenset({
    "application/octet-stream", "application/pdf", "application/json", "text/plain", "text/csv",
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif", "image/tiff", "image/bmp",
    "video/mp4", "video/quicktime", "audio/mpeg", "audio/mp4", "audio/wav", "application/zip",
})


def _attachment_content_type(value: str) -> str:
    value = value.strip().lower()
    if value not in ATTACHMENT_CONTENT_TYPES:
        raise ValueError(f"content type must be one of {', '.join(sorted(ATTACHMENT_CONTENT_TYPES))}")
    return value


AttachmentContentType = Annotated[str, StringConstraints(max_length=127), AfterValidator(_attachment_content_type)]


class AttachmentData(_Data):
    """A photo or document's metadata; its content goes to ``PUT /v1/sync/attachments/{id}/content``."""

    equipment_id: EquipmentId | None = None
    well_id: WellId | None = None
    parent_entity: EntityType | None = None
    parent_id: UUID | None = None
    filename: _Text255NonEmpty
    content_type: AttachmentContentType = "application/octet-stream"
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    caption: _Text2000 = ""
    taken_at: UtcDatetime | None = None


ENTITY_MODELS: dict[str, type[_Data]] = {
    "manual_reading": ManualReadingData, "production_record": ProductionRecordData,
    "maintenance_record": MaintenanceRecordData, "inspection": InspectionData, "note": NoteData,
    "attachment": AttachmentData,
}


@cache
def patch_model(entity: str) -> type[BaseModel]:
    """The entity's fields, each optional (an update sets any subset); a field given must still be valid.

    Defaults are not validated, so a field left out stays out of ``model_dump(exclude_unset=True)``
    while an explicit ``null`` for a field that cannot be null is refused.
    """
    model = ENTITY_MODELS[entity]
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = (annotation, Field(None, description=info.description))
    return create_model(f"{model.__name__}Patch", __config__=ConfigDict(extra="forbid"), **fields)


# ---------------------------------------------------------------- requests


class SyncChange(BaseModel):
    """One change made on a device (the wire shape; ``data`` is checked against the entity's fields)."""

    model_config = ConfigDict(extra="forbid")

    event_id: UuidText = Field(description="a UUID, unique per change; a change sent again with it is applied once")
    entity: EntityType
    op: Op
    id: UuidText = Field(description="the record's id (a UUID), generated on the device")
    version: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(
        0, description="the record version this change was based on (0 for a create)")
    client_ts: UtcDatetime = Field(description="when the change was made on the device")
    data: dict[str, Any] = Field(default_factory=dict)


class SyncRequestBody(BaseModel):
    """``POST /v1/sync``: device, the cursor of the last server change it has, a chunk of changes."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    cursor: Annotated[int, Field(ge=0, le=2**62)] = 0
    changes: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"items": SyncChange.model_json_schema()},
        description="applied in order, in one transaction: all or nothing")
    events: list[dict[str, Any]] = Field(
        default_factory=list, description="field events (maintenance_started, failure_reported, ...), as in"
        " POST /v1/field-events")
    pull: bool = Field(True, description="false: do not send server changes back (an upload in chunks)")


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    cursor: Annotated[int, Field(ge=0, le=2**62)] = 0
    total_chunks: Annotated[int, Field(ge=1, le=100_000)] | None = None


class UploadChunkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra={"items": SyncChange.model_json_schema()})
    events: list[dict[str, Any]] = Field(default_factory=list)


class ResolveRequest(BaseModel):
    """Settle a conflict held for review: choose one of its versions (an event id, or ``server``), or send
    the merged fields in ``data``."""

    model_config = ConfigDict(extra="forbid")

    choose: UUID | Literal["server"] | None = None
    data: dict[str, Any] | None = None
    comment: _Text2000 | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "ResolveRequest":
        if (self.choose is None) == (self.data is None):
            raise ValueError("give either choose or data")
        return self


# ---------------------------------------------------------------- responses


Outcome = Literal["applied", "won", "lost", "merged", "kept_both", "pending", "duplicate", "recorded"]


class AppliedChange(BaseModel):
    """What became of one change (or event) of the chunk, in its order."""

    event_id: UUID
    id: UUID | None = Field(None, description="the record the change named")
    record_id: UUID | None = Field(None, description="only when it landed on another record: a production record"
                                   " for the same well and day existed already (``id`` is an alias of it now)")
    entity: EntityType | None = Field(None, description="for events and duplicates")
    op: str | None = Field(None, description="for events (their type) and duplicates")
    version: int | None = Field(None, description="the record's version after this change")
    outcome: Outcome
    conflict_id: UUID | None = None


class FieldDecision(BaseModel):
    field: str
    server: Any = None
    client: Any = None
    result: Any = None


class ConflictSettlement(BaseModel):
    id: UUID
    event_id: UUID
    entity: EntityType
    record_id: UUID
    strategy: StrategyName
    status: Literal["settled", "pending"]
    outcome: Outcome
    fields: list[FieldDecision] = []
    copy_id: UUID | None = Field(None, description="keep_both: the record that keeps the losing version")


class ServerChange(BaseModel):
    seq: int
    entity: EntityType
    id: UUID
    op: Op
    version: int
    data: dict[str, Any]
    origin: str
    changed_at: datetime


class SyncResult(BaseModel):
    device_id: str
    applied: list[AppliedChange]
    conflicts: list[ConflictSettlement]
    changes: list[ServerChange] = Field(description="server changes after the device's cursor (its own changes,"
                                        " applied as sent, left out)")
    cursor: int = Field(description="send it next time")
    has_more: bool = Field(False, description="more server changes wait: sync again with the new cursor")
    upload_id: UUID | None = None
    chunk: int | None = None


class UploadPublic(BaseModel):
    id: UUID
    device_id: str
    status: Literal["open", "completed"]
    cursor: int = Field(description="the device's cursor when the upload started")
    total_chunks: int | None
    next_chunk: int = Field(description="the chunk to send next: resume here after a dropped connection")
    applied_changes: int
    conflicts: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class UploadCompleted(BaseModel):
    upload: UploadPublic
    changes: list[ServerChange] = Field(description="server changes after the upload's starting cursor")
    cursor: int
    has_more: bool = False


class ConflictVersion(BaseModel):
    event_id: UUID | None = None
    device_id: str | None = None
    client_ts: datetime | None = None
    base_version: int | None = None
    data: dict[str, Any] = {}
    state: dict[str, Any] | None = Field(None, description="the whole record as this version would make it")


class ConflictPublic(BaseModel):
    id: UUID
    entity: EntityType
    record_id: UUID
    strategy: StrategyName
    status: Literal["settled", "pending"]
    outcome: str
    base_version: int
    server: dict[str, Any]
    versions: list[ConflictVersion]
    result: dict[str, Any] | None
    device_ids: list[str]
    created_at: datetime
    settled_at: datetime | None
    settled_by: str | None
    comment: str | None = None


class DeviceStatus(BaseModel):
    device_id: str
    first_seen_at: datetime
    last_sync_at: datetime | None
    last_cursor: int
    syncs: int
    pending_conflicts: int
    last_error: str | None
    last_error_at: datetime | None


class AttachmentContentStored(BaseModel):
    id: UUID
    sha256: str
    size_bytes: int
    content_type: str


# ---------------------------------------------------------------- parsing a chunk


@dataclass(frozen=True)
class ParsedChange:
    """A change checked against its entity's fields. ``data``: the fields given (JSON values);
    ``defaults``: for a create, every field with its default (what a new record starts from)."""

    path: str  # changes[3]: where errors about it point
    event_id: str
    entity: str
    op: str
    record_id: str
    version: int
    client_ts: datetime
    data: dict[str, Any]
    defaults: dict[str, Any]
    content_hash: str


def error_path(prefix: str, loc: Sequence[Any]) -> str:
    """``changes[3]`` + ``("data", "findings", 0, "severity")`` -> ``changes[3].data.findings[0].severity``.

    >>> error_path("changes[3]", ("version",)), error_path("changes[0]", ("data", "findings", 0, "severity"))
    ('changes[3].version', 'changes[0].data.findings[0].severity')
    """
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _errors(prefix: str, exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": error_path(prefix, e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]


def content_hash(item: Mapping[str, Any]) -> str:
    """What "the same event" means: its content, normalized, without its id."""
    body = {k: v for k, v in item.items() if k != "event_id"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_changes(raw: Sequence[Any], prefix: str = "changes") -> tuple[list[ParsedChange], list[dict[str, str]]]:
    """Check every change; the errors name each offending one (``changes[3].data.value``).

    >>> ok, errors = parse_changes([{"event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "entity": "well",
    ...     "op": "create", "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca428", "client_ts": "2026-11-22T06:00:00Z"}])
    >>> ok, errors[0]["field"]
    ([], 'changes[0].entity')
    """
    try:
        changes: list[SyncChange] = _CHANGES.validate_python(raw)
    except ValidationError:
        return _parse_each(raw, prefix)  # the slow path names every problem of every change
    # The fast path: one validation call per entity type and operation, not one per change.
    groups: dict[tuple[str, str], list[int]] = {}
    errors: list[dict[str, str]] = []
    for i, change in enumerate(changes):
        if change.op == "delete":
            if change.data:
                errors.append({"field": f"{prefix}[{i}].data", "message": "a delete carries no data"})
            continue
        groups.setdefault((change.entity, change.op), []).append(i)
    data: dict[int, dict[str, Any]] = {}
    defaults: dict[int, dict[str, Any]] = {}
    for (entity, op), indexes in groups.items():
        adapter = _list_adapter(entity, op)
        try:
            models = adapter.validate_python([changes[i].data for i in indexes])
        except ValidationError as exc:
            for e in exc.errors():
                j, *loc = e.get("loc", ()) or (0,)  # a list adapter's errors start at the item's index
                field = error_path(f"{prefix}[{indexes[int(j)]}].data", loc)
                errors.append({"field": field, "message": str(e.get("msg"))})
            continue
        given = adapter.dump_python(models, mode="json", exclude_unset=True)
        full = adapter.dump_python(models, mode="json") if op == "create" else [{}] * len(models)
        for i, g, f in zip(indexes, given, full, strict=True):
            if op == "update" and not g:
                errors.append({"field": f"{prefix}[{i}].data", "message": "an update sets at least one field"})
            data[i], defaults[i] = g, f
    if errors:
        return [], errors
    parsed = []
    for i, change in enumerate(changes):
        parsed.append(_parsed(f"{prefix}[{i}]", change, data.get(i, {}), defaults.get(i, {})))
    return parsed, []


_CHANGES: TypeAdapter[list[SyncChange]] = TypeAdapter(list[SyncChange])


@cache
def _list_adapter(entity: str, op: str) -> TypeAdapter[Any]:
    model = ENTITY_MODELS[entity] if op == "create" else patch_model(entity)
    item: Any = model  # chosen at run time: not a static type
    return TypeAdapter(list[item])


def _parsed(path: str, change: SyncChange, data: dict[str, Any], defaults: dict[str, Any]) -> ParsedChange:
    normalized = {"entity": change.entity, "op": change.op, "id": change.id, "version": change.version,
                  "client_ts": change.client_ts, "data": data}
    return ParsedChange(path, change.event_id, change.entity, change.op, change.id, change.version,
                        change.client_ts, data, defaults, content_hash(normalized))


def _parse_each(raw: Sequence[Any], prefix: str) -> tuple[list[ParsedChange], list[dict[str, str]]]:
    parsed: list[ParsedChange] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        path = f"{prefix}[{i}]"
        try:
            change = SyncChange.model_validate(item)
        except ValidationError as exc:
            errors.extend(_errors(path, exc))
            continue
        if change.op == "delete":
            if change.data:
                errors.append({"field": f"{path}.data", "message": "a delete carries no data"})
            continue
        if change.op == "update" and not change.data:
            errors.append({"field": f"{path}.data", "message": "an update sets at least one field"})
            continue
        try:
            _list_adapter(change.entity, change.op).validate_python([change.data])
        except ValidationError as exc:
            errors.extend({"field": error_path(f"{path}.data", tuple(e.get("loc", ()))[1:]),
                           "message": str(e.get("msg", ""))} for e in exc.errors())
    return parsed, errors
