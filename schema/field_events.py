"""Field events: what crews report from the field, stored append-only and published on the FIELD stream.

Two kinds share the ``field_events`` table. A *record change* (``maintenance_record.create``, ...) is
every change a device syncs (schema/sync.py). A *domain event* says what happened, in the words of
the field: ``POST /v1/field-events`` appends one, and a sync chunk may carry them under ``events``.

- ``maintenance_started``: a maintenance job starts on the equipment (a maintenance record is
  created; ``data.maintenance_id`` names it, else it gets an id derived from the event id).
- ``maintenance_finished``: the job ``data.maintenance_id`` ends (without it: every job of the
  equipment in progress).
- ``failure_reported``: the equipment failed at ``occurred_at`` (a label for its failure model).
- ``inspection_finding``: a finding with a ``severity`` (opens or raises the equipment's
  ``inspection`` alert).

Every stored event with an equipment is published to ``field.<tenant>.<equipment>`` after its
transaction commits, in a ``FieldEventBatch`` with the equipment's other events of the same chunk
(``Nats-Msg-Id`` is derived from their event ids, so a republish is dropped as a duplicate).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schema.ids import EquipmentId
from schema.severity import Severity
from schema.sync import DeviceId, UtcDatetime, content_hash, error_path

DomainEventType = Literal["maintenance_started", "maintenance_finished", "failure_reported", "inspection_finding"]
Effect = Literal["maintenance_started", "maintenance_finished", "failure_reported", "inspection_finding"]
Text = Annotated[str, StringConstraints(max_length=2000)]


class MaintenanceStartedData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maintenance_id: UUID | None = None
    kind: Literal["preventive", "corrective", "inspection", "failure_repair"] = "preventive"
    description: Text = ""
    performed_by: Annotated[str, StringConstraints(max_length=200)] | None = None


class MaintenanceFinishedData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maintenance_id: UUID | None = None


class FailureReportedData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Text = ""
    failure_mode: Annotated[str, StringConstraints(max_length=64)] | None = None


class InspectionFindingData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity
    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    code: Annotated[str, StringConstraints(max_length=64)] | None = None
    inspection_id: UUID | None = None


EVENT_DATA: dict[str, type[BaseModel]] = {
    "maintenance_started": MaintenanceStartedData,
    "maintenance_finished": MaintenanceFinishedData,
    "failure_reported": FailureReportedData,
    "inspection_finding": InspectionFindingData,
}


class FieldEventIn(BaseModel):
    """One domain event. ``device_id`` is optional for ``POST /v1/field-events`` (a web form has none)."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID
    type: DomainEventType
    equipment_id: EquipmentId
    occurred_at: UtcDatetime
    device_id: DeviceId | None = None
    data: dict[str, Any] = Field(default_factory=dict, description="per type: see the module docstring")


class FieldEventStored(BaseModel):
    """The answer to ``POST /v1/field-events``."""

    event_id: UUID
    type: str
    equipment_id: str | None
    record_id: UUID | None = None
    version: int | None = None
    outcome: str
    effects: list[Effect] = []
    duplicate: bool = False


class FieldEventMessage(BaseModel):
    """One stored field event and what it caused, as `FieldEventBatch` carries it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    event_id: UUID
    type: str = Field(description="a domain event type, or <entity>.<op> for a synced record change")
    equipment_id: str
    occurred_at: datetime
    device_id: str | None = None
    entity: str | None = None
    record_id: UUID | None = None
    version: int | None = None
    outcome: str
    effects: list[Effect] = []
    data: dict[str, Any] = {}


class FieldEventBatch(BaseModel):
    """What ``field.<tenant>.<equipment>`` carries: the equipment's events of one committed chunk, in order
    (at most 200 a message; a chunk of more makes several)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    equipment_id: str
    events: list[FieldEventMessage]


@dataclass(frozen=True)
class ParsedEvent:
    path: str  # events[2]
    event_id: str
    type: str
    equipment_id: str
    occurred_at: datetime
    device_id: str | None
    data: dict[str, Any]
    content_hash: str


def parse_event(item: Any, path: str = "body") -> tuple[ParsedEvent | None, list[dict[str, str]]]:
    """One domain event and its data checked against its type; or the errors, named from ``path``."""
    def errors(where: str, exc: ValidationError) -> list[dict[str, str]]:
        return [{"field": error_path(where, e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]

    try:
        event = FieldEventIn.model_validate(item)
    except ValidationError as exc:
        return None, errors(path, exc)
    try:
        data = EVENT_DATA[event.type].model_validate(event.data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        return None, errors(f"{path}.data", exc)
    normalized = {"type": event.type, "equipment_id": event.equipment_id,
                  "occurred_at": event.occurred_at.isoformat(), "data": data}
    return ParsedEvent(path, str(event.event_id), event.type, event.equipment_id, event.occurred_at, event.device_id,
                       data, content_hash(normalized)), []


def parse_events(raw: Sequence[Any], prefix: str = "events") -> tuple[list[ParsedEvent], list[dict[str, str]]]:
    """Check every event; the errors name each offending one (``events[1].data.severity``)."""
    parsed: list[ParsedEvent] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        event, problems = parse_event(item, f"{prefix}[{i}]")
        if event is not None:
            parsed.append(event)
        errors.extend(problems)
    return parsed, errors
