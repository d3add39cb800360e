"""Notification channels and deliveries: the repository.

Deliveries are planned from committed ``alert_events`` by seq (`plan_deliveries`): one statement reads the
events after the tenant's cursor, inserts a delivery per (event, channel) that should hear of it and moves the
cursor, in the caller's transaction. The unique (event seq, channel) key makes a re-read insert nothing, and the
cursor moves only with the rows, so a crash anywhere neither loses nor doubles a delivery. Sending happens
outside any transaction; its outcome is recorded by `mark_sent`, `mark_retry` or `mark_failed` (which also
writes the alert's ``notification_failed`` event).
"""

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from config.secrets import SecretBox
from schema.severity import SEVERITIES
from store.alerts import EVENT_COLUMNS, _serialize_tenant_events
from store.db import Executor
from store.listing import FieldSpec, ResourceSpec

__all__ = [
    "CHANNELS", "DELIVERIES", "NOTIFY_KINDS", "advance_cursor", "delete_channel", "due_deliveries",
    "failing_channel_counts", "get_channel",
    "insert_channel", "mark_failed", "mark_retry", "mark_sent", "open_secrets", "plan_deliveries", "read_cursor",
    "seal_secrets", "update_channel",
]

# The alert events that notify: an alert opening, and its escalation.
NOTIFY_KINDS = ("opened", "escalated")
CHANNEL_COLUMNS = ("id, name, kind, enabled, min_severity, config, secret IS NOT NULL AS secret_set, created_by,"
                   " created_at, updated_at")
# A severity's rank in SQL, in the order of `schema.severity` (least first).
_RANK = "array_position(ARRAY[" + ", ".join(f"'{s}'" for s in SEVERITIES) + "], {})"

CHANNELS = ResourceSpec(
    name="notification_channels", from_sql="notification_channels", default_sort="name",
    deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("name", "name"),
        FieldSpec("kind", "kind", "enum", enum=("email", "webhook", "slack", "teams", "sms")),
        FieldSpec("enabled", "enabled", "bool"),
        FieldSpec("min_severity", "min_severity", "enum", enum=tuple(SEVERITIES)),
        FieldSpec("config", "config", filterable=False, sortable=False),
        FieldSpec("secret_set", "secret IS NOT NULL", "bool"),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)
DELIVERIES = ResourceSpec(
    name="notification_deliveries", default_sort="created_at",
    from_sql="(SELECT d.*, c.name AS channel_name FROM notification_deliveries d JOIN notification_channels c"
             " ON c.tenant_id = d.tenant_id AND c.id = d.channel_id) AS deliveries",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("alert_id", "alert_id", "int", filterable=False),
        FieldSpec("event_seq", "event_seq", "int"),
        FieldSpec("event_kind", "event_kind"),
        FieldSpec("channel_id", "channel_id", "uuid"),
        FieldSpec("channel_name", "channel_name"),
        FieldSpec("channel_kind", "channel_kind", "enum", enum=("email", "webhook", "slack", "teams", "sms")),
        FieldSpec("status", "status", "enum", enum=("pending", "sent", "failed")),
        FieldSpec("attempts", "attempts", "int"),
        FieldSpec("next_attempt_at", "CASE WHEN status = 'pending' THEN next_attempt_at END", "timestamp"),
        FieldSpec("last_error", "last_error", sortable=False),
        FieldSpec("response_code", "response_code", "int"),
        FieldSpec("latency_ms", "latency_ms", "float"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("sent_at", "sent_at", "timestamp"),
        FieldSpec("failed_at", "failed_at", "timestamp"),
        FieldSpec("recipient", "recipient"),
        FieldSpec("recipient_user", "recipient_user", "uuid"),
        FieldSpec("escalation_step", "escalation_step", "int"),
    ),
)


# ---------------------------------------------------------------- channels


async def insert_channel(conn: Executor, tenant_id: str, *, name: str, kind: str, enabled: bool, min_severity: str,
                         config: dict[str, Any], secret: str | None, created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO notification_channels (tenant_id, name, kind, enabled, min_severity, config, secret,"
        f" created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {CHANNEL_COLUMNS}",
        tenant_id, name, kind, enabled, min_severity, config, secret, created_by)


async def get_channel(conn: Executor, tenant_id: str, channel_id: uuid.UUID, *,
                      with_secret: bool = False) -> asyncpg.Record | None:
    """A live channel; ``with_secret`` adds its sealed ``secret`` (for sending and for updates)."""
    extra = ", secret" if with_secret else ""
    return await conn.fetchrow(
        f"SELECT {CHANNEL_COLUMNS}{extra} FROM notification_channels"
        " WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL", tenant_id, channel_id)


async def update_channel(conn: Executor, tenant_id: str, channel_id: uuid.UUID, *, name: str, enabled: bool,
                         min_severity: str, config: dict[str, Any], secret: str | None) -> asyncpg.Record:
    """The new settings; disabling the channel fails its pending deliveries (nobody is to send them)."""
    row = await conn.fetchrow(
        "UPDATE notification_channels SET name = $3, enabled = $4, min_severity = $5, config = $6, secret = $7,"
        " updated_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        f" RETURNING {CHANNEL_COLUMNS}", tenant_id, channel_id, name, enabled, min_severity, config, secret)
    if row is not None and not enabled:
        await _fail_pending(conn, tenant_id, channel_id, "channel disabled")
    return row


async def delete_channel(conn: Executor, tenant_id: str, channel_id: uuid.UUID) -> bool:
    """Soft delete (its deliveries stay as history); its pending deliveries fail."""
    row = await conn.fetchrow(
        "UPDATE notification_channels SET deleted_at = now(), enabled = false, secret = NULL"
        " WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING id", tenant_id, channel_id)
    if row is None:
        return False
    await _fail_pending(conn, tenant_id, channel_id, "channel deleted")
    return True


async def _fail_pending(conn: Executor, tenant_id: str, channel_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE notification_deliveries SET status = 'failed', failed_at = now(), last_error = $3"
        " WHERE tenant_id = $1 AND channel_id = $2 AND status = 'pending'", tenant_id, channel_id, reason)


# ---------------------------------------------------------------- deliveries


async def plan_deliveries(conn: asyncpg.Connection, tenant_id: str, *, now: datetime, limit: int) -> tuple[int, int]:
    """Read up to ``limit`` events after the tenant's cursor, plan their deliveries, move the cursor; returns
    (events read, deliveries planned). Run it in a transaction. A channel hears of events committed after it
    was created, if enabled and the event's severity is at least its ``min_severity``."""
    # Read, not upserted: an idle round writes nothing. Two planners reading the same cursor (an actor handing
    # over) insert nothing twice: the unique key drops the second insert.
    cursor = await read_cursor(conn, tenant_id)
    row = await conn.fetchrow(
        f"""WITH batch AS (
                SELECT seq, alert_id, kind, severity, created_at FROM alert_events
                WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3),
            planned AS (
                INSERT INTO notification_deliveries (tenant_id, alert_id, event_seq, event_kind, channel_id,
                                                     channel_kind, next_attempt_at, created_at)
                SELECT $1, b.alert_id, b.seq, b.kind, c.id, c.kind, $4, $4
                FROM batch b JOIN notification_channels c
                  ON c.tenant_id = $1 AND c.enabled AND c.deleted_at IS NULL AND b.created_at >= c.created_at
                 AND {_RANK.format('b.severity')} >= {_RANK.format('c.min_severity')}
                WHERE b.kind = ANY($5::text[])
                ON CONFLICT (tenant_id, event_seq, channel_id, reminder) WHERE escalation_key IS NULL DO NOTHING
                RETURNING 1)
            SELECT (SELECT count(*) FROM batch) AS events, (SELECT max(seq) FROM batch) AS last,
                   (SELECT count(*) FROM planned) AS planned""",
        tenant_id, cursor, limit, now, list(NOTIFY_KINDS))
    if row["last"] is not None:
        await advance_cursor(conn, tenant_id, row["last"])
    return int(row["events"]), int(row["planned"])


async def read_cursor(conn: Executor, tenant_id: str) -> int:
    """The last alert event seq whose deliveries are planned (0: none yet)."""
    return int(await conn.fetchval("SELECT seq FROM notification_cursors WHERE tenant_id = $1", tenant_id) or 0)


async def advance_cursor(conn: Executor, tenant_id: str, seq: int) -> None:
    await conn.execute(
        "INSERT INTO notification_cursors (tenant_id, seq) VALUES ($1, $2) ON CONFLICT (tenant_id)"
        " DO UPDATE SET seq = greatest(notification_cursors.seq, excluded.seq)", tenant_id, seq)


async def due_deliveries(conn: Executor, tenant_id: str, *, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Pending deliveries whose next attempt is due, oldest first, with what sending them needs: the channel's
    settings (its secret still sealed) and the event."""
    return await conn.fetch(
        """SELECT d.id, d.alert_id, d.event_seq, d.attempts, d.created_at, d.channel_id,
                  c.kind AS channel_kind, c.name AS channel_name, c.config, c.secret,
                  e.kind AS event_kind, e.equipment_id, e.rule_id, e.severity, e.state, e.message, e.occurred_at,
                  d.route, d.recipient, d.recipient_user, d.escalation_step,
                  CASE WHEN cardinality(d.event_seqs) > 1 THEN (
                      SELECT jsonb_agg(jsonb_build_object('alert_id', g.alert_id, 'event_seq', g.seq,
                          'event_kind', g.kind, 'equipment_id', g.equipment_id, 'rule_id', g.rule_id,
                          'severity', g.severity, 'state', g.state, 'message', g.message,
                          'occurred_at', g.occurred_at) ORDER BY g.seq)
                      FROM alert_events g WHERE g.tenant_id = d.tenant_id AND g.seq = ANY(d.event_seqs)) END AS grouped
           FROM notification_deliveries d
           JOIN notification_channels c ON c.tenant_id = d.tenant_id AND c.id = d.channel_id
           JOIN alert_events e ON e.seq = d.event_seq
           WHERE d.tenant_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
           ORDER BY d.next_attempt_at, d.id LIMIT $3""", tenant_id, now, limit)


async def mark_sent(conn: Executor, tenant_id: str, delivery_id: uuid.UUID, *, now: datetime,
                    response_code: int | None, latency_ms: float) -> None:
    await conn.execute(
        "UPDATE notification_deliveries SET status = 'sent', attempts = attempts + 1, sent_at = $3,"
        " response_code = $4, latency_ms = $5, last_error = NULL WHERE tenant_id = $1 AND id = $2"
        " AND status = 'pending'", tenant_id, delivery_id, now, response_code, latency_ms)


async def mark_retry(conn: Executor, tenant_id: str, delivery_id: uuid.UUID, *, next_attempt_at: datetime,
                     error: str, response_code: int | None, latency_ms: float) -> None:
    await conn.execute(
        "UPDATE notification_deliveries SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,"
        " response_code = $5, latency_ms = $6 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        tenant_id, delivery_id, next_attempt_at, error[:2000], response_code, latency_ms)


async def mark_failed(conn: asyncpg.Connection, tenant_id: str, delivery_id: uuid.UUID, *, now: datetime,
                      error: str, response_code: int | None, latency_ms: float | None) -> asyncpg.Record | None:
    """The delivery failed for good: the row says so, and the alert gets a ``notification_failed`` event (returned,
    for the caller to publish after the commit). Run it in a transaction."""
    row = await conn.fetchrow(
        "UPDATE notification_deliveries SET status = 'failed', attempts = attempts + 1, failed_at = $3,"
        " last_error = $4, response_code = $5, latency_ms = $6 WHERE tenant_id = $1 AND id = $2"
        " AND status = 'pending' RETURNING alert_id, event_seq, channel_id, channel_kind, attempts",
        tenant_id, delivery_id, now, error[:2000], response_code, latency_ms)
    if row is None:
        return None
    await _serialize_tenant_events(conn, tenant_id)
    details = {"delivery_id": str(delivery_id), "event_seq": row["event_seq"], "channel_id": str(row["channel_id"]),
               "channel_kind": row["channel_kind"], "attempts": row["attempts"], "error": error[:500]}
    return await conn.fetchrow(
        "INSERT INTO alert_events (tenant_id, alert_id, equipment_id, rule_id, kind, state, severity, message,"
        " details, actor, occurred_at) SELECT tenant_id, id, equipment_id, rule_id, 'notification_failed', state,"
        f" severity, $3, $4, 'notifier', $5 FROM alerts WHERE tenant_id = $1 AND id = $2 RETURNING {EVENT_COLUMNS}",
        tenant_id, row["alert_id"], f"notification to {row['channel_kind']} channel failed: {error[:200]}",
        details, now)



async def failing_channel_counts(pool: Executor, after: int) -> dict[str, int]:
    """{channel kind: how many enabled channels failed each of their last ``after`` finished deliveries}, across
    tenants (a definer function: counts only, for /health)."""
    rows = await pool.fetch("SELECT kind, failing FROM wellpulse_failing_channel_counts($1)", after)
    return {r["kind"]: int(r["failing"]) for r in rows}


# ---------------------------------------------------------------- write-only settings at rest


def seal_secrets(box: SecretBox, secrets: dict[str, str]) -> str | None:
    """A channel's write-only settings as one sealed JSON document (None when it has none)."""
    return box.seal(json.dumps(secrets, sort_keys=True)) if secrets else None


def open_secrets(box: SecretBox, sealed: str | None) -> dict[str, str]:
    """The write-only settings; `ValueError` when no key of the box sealed them."""
    if sealed is None:
        return {}
    opened = json.loads(box.open(sealed))
    return {str(k): str(v) for k, v in opened.items()}
