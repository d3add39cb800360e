"""Alerts as the API and the housekeeping see them: listing, events, manual resolve, silences and
releasing alerts that a silence held back.

What the models decide is written by `store.db.persist_alert_changes` (which also holds alerts back
while their equipment or rule is silenced); acknowledge and escalation live there too. Everything here
takes the tenant's connection and filters on the tenant; events are committed before they are
published, like every alert event.
"""

import uuid
from datetime import datetime

import asyncpg

from store.db import _ALERT_COLUMNS, _EVENT_COLUMNS, Executor, _connection, _insert_event, _serialize_tenant_events
from store.listing import FieldSpec, ResourceSpec

SEVERITY_RANK_SQL = "CASE severity WHEN 'info' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"
ALERTS = ResourceSpec(
    name="alerts", from_sql="alerts", default_sort="-opened_at",
    fields=(
        FieldSpec("id", "id", "int"),
        FieldSpec("equipment_id", "equipment_id"),
        FieldSpec("rule_id", "rule_id"),
        FieldSpec("state", "state", "enum", enum=("open", "acknowledged", "resolved")),
        FieldSpec("severity", "severity", "enum", enum=("info", "warning", "critical")),
        FieldSpec("message", "message", sortable=False),
        FieldSpec("details", "details", filterable=False, sortable=False),
        FieldSpec("opened_at", "opened_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
        FieldSpec("acknowledged_at", "acknowledged_at", "timestamp"),
        FieldSpec("acknowledged_by", "acknowledged_by"),
        FieldSpec("ack_comment", "ack_comment", filterable=False, sortable=False),
        FieldSpec("escalated_at", "escalated_at", "timestamp"),
        FieldSpec("resolved_at", "resolved_at", "timestamp"),
        FieldSpec("resolved_by", "resolved_by"),
        FieldSpec("resolve_comment", "resolve_comment", filterable=False, sortable=False),
    ),
)
# Equipment that serves one of the wells in $1 (a well-level view of the alerts).
WELL_FILTER_SQL = ("EXISTS (SELECT 1 FROM equipment_wells ew WHERE ew.tenant_id = alerts.tenant_id"
                   " AND ew.equipment_id = alerts.equipment_id AND ew.well_id = ANY($1::text[]))")
MIN_SEVERITY_SQL = f"({SEVERITY_RANK_SQL}) >= $1"

SILENCE_STATE_SQL = ("CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' WHEN starts_at > now() THEN 'scheduled'"
                     " WHEN ends_at > now() THEN 'active' ELSE 'expired' END")
SILENCE_COLUMNS = (f"id, equipment_id, rule_id, starts_at, ends_at, reason, {SILENCE_STATE_SQL} AS state,"
                   " created_by, created_at, cancelled_at, cancelled_by")
SILENCES = ResourceSpec(
    name="silences", from_sql="silences", default_sort="-created_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("equipment_id", "equipment_id"),
        FieldSpec("rule_id", "rule_id"),
        FieldSpec("starts_at", "starts_at", "timestamp"),
        FieldSpec("ends_at", "ends_at", "timestamp"),
        FieldSpec("reason", "reason", sortable=False),
        FieldSpec("state", SILENCE_STATE_SQL, "enum", enum=("scheduled", "active", "expired", "cancelled")),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("cancelled_at", "cancelled_at", "timestamp"),
        FieldSpec("cancelled_by", "cancelled_by"),
    ),
)


# ---------------------------------------------------------------- alerts


async def get_alert(conn: Executor, tenant_id: str, alert_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = $1 AND id = $2", tenant_id, alert_id)


async def alert_events(conn: Executor, tenant_id: str, alert_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE tenant_id = $1 AND alert_id = $2 ORDER BY seq",
        tenant_id, alert_id)


async def resolve_alert(
    pool: Executor, tenant_id: str, alert_id: int, *, actor: str, comment: str | None, now: datetime
) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
    """Resolve by hand. Returns (alert, event); event is None when the alert was already resolved.

    The models still take the condition as holding: a new alert opens when it clears and comes back
    (or when the rule reports a new severity for it).
    """
    async with _connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alert = await conn.fetchrow(
            f"UPDATE alerts SET state = 'resolved', resolved_at = $3, resolved_by = $4, resolve_comment = $5,"
            f" updated_at = now() WHERE tenant_id = $1 AND id = $2 AND state <> 'resolved'"
            f" RETURNING {_ALERT_COLUMNS}",
            tenant_id, alert_id, now, actor, comment,
        )
        if alert is None:
            return await get_alert(conn, tenant_id, alert_id), None
        event = await _insert_event(conn, tenant_id, alert, "resolved", actor, now,
                                    message=f"resolved by {actor}", details={"comment": comment, "manual": True})
        return alert, event


async def release_suppressed(pool: Executor, tenant_id: str) -> list[asyncpg.Record]:
    """Open the alerts a silence held back whose silence (or maintenance) is over; returns their events.

    A held-back row exists only while its condition holds (the models' "resolved" deletes it), so
    each one released is an alert that still applies. It opens now: that is when operators hear of it.
    """
    async with _connection(pool) as conn:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM suppressed_alerts WHERE tenant_id = $1)",
                                   tenant_id):
            return []  # the usual case: no lock taken
    async with _connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        released = await conn.fetch(
            "DELETE FROM suppressed_alerts WHERE tenant_id = $1"
            " AND NOT wellpulse_silenced(tenant_id, equipment_id, rule_id, now())"
            " RETURNING equipment_id, rule_id, severity, message, details, suppressed_at",
            tenant_id,
        )
        events = []
        for row in released:
            alert = await conn.fetchrow(
                f"INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, details, opened_at)"
                f" VALUES ($1, $2, $3, 'open', $4, $5, $6, now())"
                f" ON CONFLICT (tenant_id, equipment_id, rule_id) WHERE state <> 'resolved' DO NOTHING"
                f" RETURNING {_ALERT_COLUMNS}",
                tenant_id, row["equipment_id"], row["rule_id"], row["severity"], row["message"], row["details"],
            )
            if alert is None:
                continue  # opened meanwhile by the models themselves
            since = row["suppressed_at"].isoformat()
            events.append(await _insert_event(conn, tenant_id, alert, "opened", "system", alert["opened_at"],
                                              message=f"{row['message']} (held since {since} by a silence"
                                                      " or maintenance)",
                                              details={**(row["details"] or {}), "held_since": since}))
        return events


async def escalate_after_seconds(conn: Executor, tenant_id: str) -> float | None:
    """The tenant's own escalation delay (tenant setting ``escalate_after_minutes``), or None."""
    minutes = await conn.fetchval(
        "SELECT settings->>'escalate_after_minutes' FROM tenants WHERE id = $1", tenant_id)
    return None if minutes is None else float(minutes) * 60.0


# ---------------------------------------------------------------- silences


async def get_silence(conn: Executor, tenant_id: str, silence_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SILENCE_COLUMNS} FROM silences WHERE tenant_id = $1 AND id = $2", tenant_id, silence_id)


async def insert_silence(conn: Executor, tenant_id: str, *, equipment_id: str | None, rule_id: str | None,
                         starts_at: datetime, ends_at: datetime, reason: str, created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO silences (tenant_id, equipment_id, rule_id, starts_at, ends_at, reason, created_by)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SILENCE_COLUMNS}",
        tenant_id, equipment_id, rule_id, starts_at, ends_at, reason, created_by)


async def cancel_silence(conn: Executor, tenant_id: str, silence_id: uuid.UUID, *, actor: str,
                         ) -> asyncpg.Record | None:
    """End a silence now; None when it was already cancelled or over (or does not exist)."""
    return await conn.fetchrow(
        "UPDATE silences SET cancelled_at = now(), cancelled_by = $3"
        " WHERE tenant_id = $1 AND id = $2 AND cancelled_at IS NULL AND ends_at > now()"
        f" RETURNING {SILENCE_COLUMNS}",
        tenant_id, silence_id, actor)

