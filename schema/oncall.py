"""Per-user notification preferences, on-call schedules and escalation chains in the API (issue 12).

The shapes are checked here; what a schedule means (rotations in order, overrides that do not overlap) is checked
by `notify.oncall`, what a chain names (users, schedules, channels of the tenant) by `serve.oncall`; a refusal
names the field (``overrides[1].start``).
"""

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from schema.alerts import NO_NUL
from schema.severity import Severity

__all__ = [
    "ChainCreate", "ChainPublic", "ChainStep", "ChainTargets", "ChainUpdate", "Medium", "OnCallNow", "OverrideSpec",
    "PreferencesBody", "PreferencesPublic", "QuietHours", "RotationSpec", "ScheduleCreate", "SchedulePublic",
    "ScheduleUpdate",
]

Medium = Literal["email", "sms", "in_app"]
LocalTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------- preferences


class QuietHours(_Strict):
    """A daily window in the tenant's time zone; ``end`` at or before ``start`` runs past midnight."""

    start: LocalTime
    end: LocalTime


class PreferencesBody(_Strict):
    """A user's preferences. ``channels``: for each severity, which of the user's media hear of it (a severity
    left out keeps its default: info → in_app; warning → in_app, email; critical → in_app, email, sms).
    During ``quiet_hours`` only critical alerts reach email and SMS; the rest still land in the inbox.
    ``phone``: where SMS goes (E.164, ``+15550100``)."""

    channels: dict[Severity, Annotated[list[Medium], Field(max_length=3)]] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    phone: Phone | None = None

    @field_validator("channels")
    @classmethod
    def _no_repeats(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for severity, media in value.items():
            if len(set(media)) != len(media):
                raise ValueError(f"{severity}: a medium is listed twice")
        return value


class PreferencesPublic(BaseModel):
    user_id: UUID
    channels: dict[Severity, list[Medium]] = Field(description="Every severity, defaults filled in.")
    quiet_hours: QuietHours | None
    phone: str | None
    timezone: str = Field(description="The tenant's time zone, in which quiet hours are read.")
    updated_at: datetime | None = Field(description="None: never set (the defaults).")


# ------------------------------------------------------------------------------------------- schedules


class RotationSpec(_Strict):
    """Members (user ids) in order; the pager passes to the next every day or week at ``handoff_time`` (the
    tenant's wall clock) from ``start``."""

    members: Annotated[list[UUID], Field(min_length=1, max_length=100)]
    handoff: Literal["daily", "weekly"] = "weekly"
    handoff_time: LocalTime = "09:00"
    start: Annotated[date, Field(ge=date(2000, 1, 1), le=date(2200, 12, 31))]


class OverrideSpec(_Strict):
    """``user`` on call from ``start`` to ``end`` instead of the rotation's member."""

    user: UUID
    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if not 2000 <= value.year <= 2200:
            raise ValueError("must be between the years 2000 and 2200")
        return value


class ScheduleCreate(_Strict):
    name: Name
    rotations: Annotated[list[RotationSpec], Field(min_length=1, max_length=20)]
    overrides: list[OverrideSpec] = Field(default_factory=list, max_length=500)


class ScheduleUpdate(_Strict):
    """Partial update: each field given replaces the stored one as a whole."""

    name: Name | None = None
    rotations: Annotated[list[RotationSpec], Field(min_length=1, max_length=20)] | None = None
    overrides: Annotated[list[OverrideSpec], Field(max_length=500)] | None = None


class SchedulePublic(BaseModel):
    id: UUID
    name: str
    rotations: list[RotationSpec]
    overrides: list[OverrideSpec]
    timezone: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class OnCallNow(BaseModel):
    schedule_id: UUID
    at: datetime
    user_id: UUID | None = Field(description="None: nobody (before the first rotation starts).")
    source: Literal["override", "rotation", "none"]
    rotation: int | None = Field(None, description="The index of the rotation that says so.")
    until: datetime | None = Field(description="When this answer may change next (a handoff, an override's edge).")


# ------------------------------------------------------------------------------------------- chains


class ChainTargets(_Strict):
    users: list[UUID] = Field(default_factory=list, max_length=50,
                              description="Each reached by their preferences (email, SMS, in-app).")
    schedules: list[UUID] = Field(default_factory=list, max_length=10,
                                  description="Whoever is on call then, reached by their preferences.")
    channels: list[UUID] = Field(default_factory=list, max_length=20,
                                 description="Notification channels, sent to as configured.")


class ChainStep(_Strict):
    """Fires ``after_seconds`` after the previous step (the first: after the alert opened) if the alert is still
    unacknowledged and open."""

    after_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 0
    targets: ChainTargets


class ChainCreate(_Strict):
    name: Name
    steps: Annotated[list[ChainStep], Field(min_length=1, max_length=20)]
    repeat: Annotated[int, Field(ge=0, le=100, description="Run the steps again this many times (reminders until"
                                 " acknowledged); the first step of a repeat waits its own after_seconds.")] = 0


class ChainUpdate(_Strict):
    name: Name | None = None
    steps: Annotated[list[ChainStep], Field(min_length=1, max_length=20)] | None = None
    repeat: Annotated[int, Field(ge=0, le=100)] | None = None


class ChainPublic(BaseModel):
    id: UUID
    name: str
    steps: list[ChainStep]
    repeat: int
    created_by: str
    created_at: datetime
    updated_at: datetime
