"""In-app notifications (issue 12): what `GET /v1/notifications` lists and `PATCH .../read` answers."""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
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


class InAppPush(BaseModel):
    """What the alert WebSocket sends (with ``?notifications=true``) when one of the caller's in-app notifications
    is committed: ``{"type": "notification", "data": {...}}``. Alert events carry no ``type``; they have ``seq``."""

    type: Literal["notification"] = "notification"
    data: InAppNotification


def inbox_message(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Committed notifications (with ``user_id``) as one bus message, for the WebSocket hub of each replica."""
    return json.dumps([{"user_id": str(r["user_id"]),
                        "data": InAppNotification(**{k: v for k, v in dict(r).items() if k != "user_id"})
                        .model_dump(mode="json")} for r in rows]).encode()


def parse_inbox_message(payload: bytes) -> list[tuple[str, InAppPush]]:
    """(user id, push) of each notification of an `inbox_message`."""
    return [(str(item["user_id"]), InAppPush(data=InAppNotification.model_validate(item["data"])))
            for item in json.loads(payload)]
