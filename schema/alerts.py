"""Alerts, their events (as they travel on the ALERTS stream and over the WebSocket) and silences."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schema.ids import EquipmentId

Severity = Literal["info", "warning", "critical"]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertEventKind(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertEvent(BaseModel):
    """One row of ``alert_events``: committed to the DB before it is published."""

    model_config = ConfigDict(frozen=True)

    seq: int
    tenant_id: str
    alert_id: int
    equipment_id: str
    rule_id: str
    kind: AlertEventKind
    state: AlertState
    severity: Severity
    message: str
    details: dict[str, Any]
    actor: str
    occurred_at: datetime
    created_at: datetime


class Alert(BaseModel):
    """The current state of one alert (a row of ``alerts``)."""

    id: int
    equipment_id: str
    rule_id: str
    state: AlertState
    severity: Severity
    message: str
    details: dict[str, Any]
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    ack_comment: str | None = None
    escalated_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = Field(None, description="Who resolved it by hand (null: the condition cleared).")
    resolve_comment: str | None = None


class ResolveRequest(BaseModel):
    """A manual resolve: the alert closes now, whatever the rule still sees (a new alert opens when the
    condition clears and comes back, or its rule reports a new severity)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"comment": "replaced the seal"}]})

    comment: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class AlertDetail(Alert):
    """An alert with every change it went through, oldest first."""

    events: list[AlertEvent]


# ---------------------------------------------------------------- silences

RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_SILENCE_DAYS = 30


class SilenceState(StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class SilenceCreate(BaseModel):
    """Silence one equipment, one rule (a custom rule's id or a default one such as ``stale_data``), or
    one rule on one equipment, from `starts_at` (default now) until `ends_at` (at most 30 days later)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "equipment_id": "PJ-0042", "ends_at": "2026-11-22T18:00:00Z", "reason": "rod pump replacement"}]})

    equipment_id: EquipmentId | None = None
    rule_id: RuleId | None = None
    starts_at: datetime | None = Field(None, description="RFC 3339 with a zone; default now.")
    ends_at: datetime = Field(description="RFC 3339 with a zone; in the future, at most 30 days after starts_at.")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000, pattern=NO_NUL)]


class Silence(BaseModel):
    id: UUID
    equipment_id: str | None = None
    rule_id: str | None = None
    starts_at: datetime
    ends_at: datetime
    reason: str
    state: SilenceState = Field(description="scheduled, active, expired, or cancelled (ended early by DELETE).")
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
