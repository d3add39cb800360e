"""In-app notifications: the repository.

`plan_in_app` runs in the notifier's planning transaction, before the channel plan moves the cursor: it reads the
same events (after the tenant's notification cursor, by seq) and inserts one notification per event that notifies
and per active user whose role may read alerts and whose preferences (`notify.preferences`) keep ``in_app`` for
the event's severity (the inbox wakes nobody, so quiet hours do not hold it back). The unique (user, event seq,
reminder) key makes a re-read insert nothing, so a restart neither loses nor doubles one. Reading, marking read
and deleting are per user: a row of another user (or, by row-level security, another tenant) is not found.
"""

import uuid
from datetime import datetime

import asyncpg

from notify.preferences import DEFAULT_CHANNELS
from store.db import Executor
from store.listing import FieldSpec, ResourceSpec
from store.notifications import NOTIFY_KINDS, read_cursor

__all__ = ["ALERT_READER_ROLES", "INBOX_COLUMNS", "IN_APP", "delete", "mark_read", "plan_in_app", "unread_count"]

# The roles whose users see alerts: serve.auth.PERMISSIONS["alerts:read"] (which the store cannot import;
# tests/test_in_app_notifications.py checks that the two agree).
ALERT_READER_ROLES = ("admin", "manager", "operator", "viewer")

IN_APP = ResourceSpec(
    name="notifications", from_sql="in_app_notifications", default_sort="-created_at",
    deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("alert_id", "alert_id", "int"),
        FieldSpec("event_seq", "event_seq", "int"),
        FieldSpec("event_kind", "event_kind"),
        FieldSpec("title", "title", sortable=False),
        FieldSpec("body", "body", filterable=False, sortable=False),
        FieldSpec("severity", "severity", "enum", enum=("info", "warning", "critical")),
        FieldSpec("read", "read_at IS NOT NULL", "bool"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("read_at", "read_at", "timestamp"),
    ),
)


INBOX_COLUMNS = ("user_id, id, alert_id, event_seq, event_kind, title, body, severity, read_at IS NOT NULL AS read,"
                 " created_at, read_at")


async def plan_in_app(conn: asyncpg.Connection, tenant_id: str, *, now: datetime, limit: int,
                      ) -> list[asyncpg.Record]:
    """Notifications for up to ``limit`` events after the tenant's cursor (the page the channel plan reads next
    in the same transaction); returns those inserted (with their ``user_id``), for the WebSocket after the
    commit."""
    cursor = await read_cursor(conn, tenant_id)
    return list(await conn.fetch(
        """WITH batch AS (
               SELECT seq, alert_id, kind, severity, rule_id, equipment_id, message FROM alert_events
               WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3),
           planned AS (
               INSERT INTO in_app_notifications (tenant_id, user_id, alert_id, event_seq, event_kind, title, body,
                                                 severity, created_at)
               SELECT $1, u.id, b.alert_id, b.seq, b.kind,
                      left(format('[%s] %s on %s: alert %s %s', b.severity, b.rule_id, b.equipment_id, b.alert_id,
                                  b.kind), 500),
                      left(coalesce(b.message, ''), 4000), b.severity, $4
               FROM batch b JOIN users u
                 ON u.tenant_id = $1 AND u.status = 'active' AND u.deleted_at IS NULL AND u.role = ANY($6::text[])
               LEFT JOIN notification_preferences p ON p.tenant_id = $1 AND p.user_id = u.id
               WHERE b.kind = ANY($5::text[])
                 AND coalesce(p.channels -> b.severity, $7::jsonb -> b.severity) ? 'in_app'
               ON CONFLICT (tenant_id, user_id, event_seq, reminder) DO NOTHING
               RETURNING *)
           SELECT """ + INBOX_COLUMNS + """ FROM planned""",
        tenant_id, cursor, limit, now, list(NOTIFY_KINDS), list(ALERT_READER_ROLES),
        {k: list(v) for k, v in DEFAULT_CHANNELS.items()}))


async def unread_count(conn: Executor, tenant_id: str, user_id: uuid.UUID) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM in_app_notifications WHERE tenant_id = $1 AND user_id = $2 AND read_at IS NULL"
        " AND deleted_at IS NULL", tenant_id, user_id))


async def mark_read(conn: Executor, tenant_id: str, user_id: uuid.UUID, notification_id: uuid.UUID, *,
                    now: datetime) -> asyncpg.Record | None:
    """The notification, read (the first read time stays); None when it is not the user's live one."""
    return await conn.fetchrow(
        "UPDATE in_app_notifications SET read_at = coalesce(read_at, $4) WHERE tenant_id = $1 AND user_id = $2"
        " AND id = $3 AND deleted_at IS NULL RETURNING id, alert_id, event_seq, event_kind, title, body, severity,"
        " read_at IS NOT NULL AS read, created_at, read_at", tenant_id, user_id, notification_id, now)


async def delete(conn: Executor, tenant_id: str, user_id: uuid.UUID, notification_id: uuid.UUID, *,
                 now: datetime) -> bool:
    """Soft delete; False when it is not the user's live notification."""
    row = await conn.fetchrow(
        "UPDATE in_app_notifications SET deleted_at = $4 WHERE tenant_id = $1 AND user_id = $2 AND id = $3"
        " AND deleted_at IS NULL RETURNING id", tenant_id, user_id, notification_id, now)
    return row is not None
