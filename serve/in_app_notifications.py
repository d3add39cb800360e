"""In-app notification services: a user's own notifications, listed newest first with the unread count, marked
read, deleted. The notifier (`actors.notifier`) creates them; every query here is scoped to the caller's tenant
(row-level security) and to the caller's user id, so another user's notification is simply not found.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schema.errors import NotFound
from serve.auth import Principal
from serve.errors import ApiError
from serve.services import Services
from store import in_app_notifications as store
from store.listing import ListQuery, fetch_page

__all__ = ["delete_notification", "list_notifications", "mark_read"]


async def list_notifications(services: Services, principal: Principal, q: ListQuery,
                             ) -> tuple[list[dict[str, Any]], int, int]:
    """(page rows, total, unread) of the caller's live notifications."""
    user_id = _user_id(principal)
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await fetch_page(conn, store.IN_APP, q, principal.tenant_id,
                                       extra_where=[("user_id = $1", [user_id])])
        unread = await store.unread_count(conn, principal.tenant_id, user_id)
    return rows, total, unread


async def mark_read(services: Services, principal: Principal, notification_id: uuid.UUID) -> asyncpg.Record:
    """The notification, read; marking it again changes nothing (it keeps its first `read_at`)."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.mark_read(conn, principal.tenant_id, _user_id(principal), notification_id,
                                    now=datetime.now(UTC))
    if row is None:
        raise _not_found(notification_id)
    return row


async def delete_notification(services: Services, principal: Principal, notification_id: uuid.UUID) -> None:
    async with services.tenant_tx(principal.tenant_id) as conn:
        deleted = await store.delete(conn, principal.tenant_id, _user_id(principal), notification_id,
                                     now=datetime.now(UTC))
    if not deleted:
        raise _not_found(notification_id)


def _user_id(principal: Principal) -> uuid.UUID:
    """The caller as a user; a session that may only enrol MFA reads no alerts, so no notifications either."""
    if principal.mfa_setup_only:
        raise ApiError(403, "multi-factor sign-in must be set up first (POST /v1/auth/mfa/setup)",
                       code="MFA_SETUP_REQUIRED")
    return uuid.UUID(principal.subject)


def _not_found(notification_id: uuid.UUID) -> NotFound:
    return NotFound(f"notification {notification_id} not found")
