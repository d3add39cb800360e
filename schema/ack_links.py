"""Acknowledge links in the API: what a link names, and whether it was used."""

from datetime import datetime

from pydantic import BaseModel

__all__ = ["AckLinkAlert", "AckLinkPublic"]


class AckLinkAlert(BaseModel):
    id: int
    equipment_id: str
    rule_id: str
    state: str
    severity: str
    message: str
    opened_at: datetime
    acknowledged_at: datetime | None = None


class AckLinkPublic(BaseModel):
    alert: AckLinkAlert
    used: bool
    expires_at: datetime
