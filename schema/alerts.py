"""Alerts, their events (as they travel on the ALERTS stream and over the WebSocket), the alarm states of
ISA-18.2 (shelve, out of service), verdicts, alarm KPIs and silences."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints

from schema.ids import EquipmentId
from schema.severity import SEVERITY_RANK as SEVERITY_RANK  # the order, defined in schema.severity
from schema.severity import Severity

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"  # put aside by an operator until shelved_until
    SUPPRESSED = "suppressed"  # by design: sensor out of service, equipment not running, upstream cause
    RESOLVED = "resolved"


class AlertEventKind(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLEARED = "cleared"  # the condition cleared, the alert stays (latched and unacknowledged, or shelved)
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    VERDICT = "verdict"  # a verdict given to an alert that changed state no more
    NOTIFICATION_FAILED = "notification_failed"  # a channel could not be reached in time (actors/notifier.py)


Verdict = Literal["real", "false_alarm", "planned"]
SuppressedReason = Literal["out_of_service", "maintenance", "equipment_stopped", "upstream"]


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
    _json: str | None = PrivateAttr(default=None)

    def as_json(self) -> str:
        """The event as JSON, made once: a tenant's hundred sockets send the same text."""
        if self._json is None:
            self._json = self.model_dump_json()
        return self._json


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
    occurrences: int = Field(1, description="Times its condition came (back) while it stayed open: a chattering "
                             "alert held open, a latched or shelved one whose condition returned.")
    cleared_at: datetime | None = Field(None, description="Its condition cleared but it stays: latched and not "
                                        "yet acknowledged (\"cleared, awaiting acknowledgement\"), or shelved.")
    latched: bool = False
    sensors: list[str] = Field(default_factory=list, description="The sensors it is about.")
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    suppressed_reason: SuppressedReason | None = None
    verdict: Verdict | None = None
    verdict_by: str | None = None
    verdict_at: datetime | None = None


_VERDICT = Field(None, description="real, false_alarm (teaches the models: an anomaly or drift alert widens its "
                 "sensors' normal) or planned (an operating change: the models re-baseline its sensors). Given once: "
                 "the same verdict again changes nothing, another one is a 409.")


class AcknowledgeBody(BaseModel):
    """Acknowledge, with an optional comment and verdict. A latched alert whose condition cleared resolves."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "comment": "crew on the way", "verdict": "real"}]})

    comment: str | None = Field(None, max_length=2000, pattern=NO_NUL)
    verdict: Verdict | None = _VERDICT


class ResolveRequest(BaseModel):
    """A manual resolve: the alert closes now, whatever the rule still sees (a new alert opens when the
    condition clears and comes back, or its rule reports a new severity). A resolved alert takes a verdict
    it has none of yet."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"comment": "replaced the seal",
                                                                                 "verdict": "real"}]})

    comment: str | None = Field(None, max_length=2000, pattern=NO_NUL)
    verdict: Verdict | None = _VERDICT


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000, pattern=NO_NUL)]


class ShelveRequest(BaseModel):
    """Shelve for `minutes` (at most the tenant's `max_shelve_minutes`, default 480): the alert returns open and
    unacknowledged when they end, or earlier if its condition clears and comes back."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "minutes": 120, "reason": "known issue, crew scheduled for tomorrow"}]})

    minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)]
    reason: Reason


class OutOfServiceRequest(BaseModel):
    """Take a sensor out of service: its alerts are suppressed until it returns (DELETE) or `until`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "reason": "transmitter replaced, calibrating", "until": "2026-11-23T18:00:00Z"}]})

    reason: Reason
    until: AwareDatetime | None = Field(None, description="RFC 3339 with a zone, in the future; none: until DELETE.")


class OutOfService(BaseModel):
    id: UUID
    equipment_id: str
    sensor: str
    reason: str
    since: datetime
    until: datetime | None = None
    created_by: str
    ended_at: datetime | None = None
    ended_by: str | None = None


# ---------------------------------------------------------------- KPIs


class Duration(BaseModel):
    count: int = Field(description="Alerts it is measured over.")
    mean_seconds: float | None = None
    p90_seconds: float | None = None


class VerdictCounts(BaseModel):
    real: int
    false_alarm: int
    planned: int
    precision: float | None = Field(description="real / (real + false_alarm); null without such verdicts.")


class KeyCount(BaseModel):
    equipment_id: str
    rule_id: str
    equipment_type: str | None = None
    count: int | None = None
    max_openings_per_minute: int | None = None


class KpiPart(BaseModel):
    openings: int = Field(description="Alerts annunciated in the span (opened, or opened when a suppression ended).")
    alerts_per_10min_mean: float = Field(description="Over every 10-minute period of the span, empty ones too.")
    alerts_per_10min_max: int
    flood_periods: int = Field(description="10-minute periods with more than 10 openings.")
    flood_share: float
    chattering: list[KeyCount] = Field(description="Keys (equipment, rule) opening ≥ 3 times within 1 minute.")
    stale: int = Field(description="Alerts open more than 24 h at the end of the span (or now).")
    bad_actors: list[KeyCount] = Field(description="The 10 keys with the most openings.")
    time_to_acknowledge: Duration
    time_to_resolve: Duration
    verdicts: VerdictCounts


class AlertKpis(BaseModel):
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    periods: int = Field(description="10-minute periods in the span.")
    tenant: KpiPart
    by_equipment_type: dict[str, KpiPart]
    precision_by_rule: dict[str, VerdictCounts]

    model_config = ConfigDict(populate_by_name=True)


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
