"""Notification policies in the API: a tenant's routing tree (`notify.routing`), one document.

The shapes are checked here; what a document means (one root, no cycle, known matcher fields, mute timings that
exist, channels of the tenant) is checked by `notify.routing.PolicyTree.parse` and `serve.notification_policies`,
which name the offending field (``routes[2].parent``).
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schema.alerts import NO_NUL

__all__ = ["MuteTimingSpec", "PolicyDocument", "PolicyPublic", "RouteSpec"]

Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
Value = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Seconds = Annotated[float, Field(ge=0, le=7 * 86400)]
LocalTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class RouteSpec(BaseModel):
    """One route; the one without ``parent`` is the root. Settings left out are the parent's."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: Name
    parent: Name | None = None
    matchers: dict[str, Annotated[list[Value], Field(min_length=1, max_length=100)]] = Field(
        default_factory=dict, description="field: [values]; fields: severity, equipment_type, equipment_id,"
        " well_id, rule_kind, rule_id, labels.<name> (the equipment's metadata). Every field must match one value.")
    channels: list[UUID] = Field(default_factory=list, max_length=50)
    group_by: list[str] = Field(default_factory=list, max_length=10)
    group_wait: Seconds | None = Field(None, description="seconds before a new group's first message (30)")
    group_interval: Seconds | None = Field(None, description="seconds between a group's messages (300)")
    repeat_interval: Seconds | None = Field(None, description="seconds between reminders of a group's"
                                            " alerts still unacknowledged (14400; 0: none)")
    continue_: bool = Field(False, alias="continue", description="after matching, try the next siblings too")
    mute_timings: list[Name] = Field(default_factory=list, max_length=20)
    escalation_chain: UUID | None = Field(None, description="An escalation chain (/v1/escalation-chains) run for"
                                          " each alert this route takes, until it is acknowledged (inherited).")


class MuteTimingSpec(BaseModel):
    """A weekly window in the tenant's time zone; ``end`` at or before ``start`` runs past midnight."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    weekdays: list[str] = Field(default_factory=list, max_length=7, description="mon..sun; empty: every day")
    start: LocalTime
    end: LocalTime


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routes: list[RouteSpec] = Field(min_length=1, max_length=200)
    mute_timings: list[MuteTimingSpec] = Field(default_factory=list, max_length=50)


class PolicyPublic(PolicyDocument):
    updated_by: str
    updated_at: datetime
