"""Alert events as they travel on the ALERTS stream and over the WebSocket."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["info", "warning", "critical"]
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
