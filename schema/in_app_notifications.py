"""In-app notifications (issue 12): what `GET /v1/notifications` lists and `PATCH .../read` answers."""

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from schema.api import Meta
from schema.severity import Severity


class InAppNotification(BaseModel):
    """An alert event as one user's notification."""

    id: UUID
    alert_id: int
    event_seq: int = Field(description="The alert event it tells of.")
    event_kind: str = Field(description="`opened` or `escalated`.")
    title: str
    body: str = Field(description="The alert's message.")
    severity: Severity
    read: bool
    created_at: datetime
    read_at: datetime | None = None


class InboxMeta(Meta):
    unread: int = Field(description="The caller's unread notifications (not deleted), over all pages.")
