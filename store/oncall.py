"""Per-user notification preferences, on-call schedules and escalation chains: the repository.

Every query is scoped by tenant (and row-level security). The documents (a schedule's rotations and overrides, a
chain's steps) are stored as the API checked them; `notify.oncall` and `notify.preferences` read them.
"""

import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any

import asyncpg

from notify.oncall import Override, Rotation, Schedule
from notify.preferences import Preferences
from store.db import Executor
from store.listing import FieldSpec, ResourceSpec

__all__ = [
    "CHAINS", "SCHEDULES", "chains_naming_schedule", "delete_chain", "delete_schedule", "get_chain",
    "get_preferences", "get_schedule", "insert_chain", "insert_schedule", "live_chain_ids", "live_schedule_ids",
    "live_users", "load_preferences", "preferences_of", "put_preferences", "schedule_of", "schedules_by_id",
    "tenant_zone", "update_chain", "update_schedule",
]

SCHEDULE_COLUMNS = "id, name, rotations, overrides, created_by, created_at, updated_at"
CHAIN_COLUMNS = "id, name, steps, repeat, created_by, created_at, updated_at"


async def tenant_zone(conn: Executor, tenant_id: str) -> str:
    """The tenant's time zone (IANA name; UTC when unset)."""
    return str(await conn.fetchval("SELECT coalesce(settings->>'timezone', 'UTC') FROM tenants WHERE id = $1",
                                   tenant_id) or "UTC")


async def live_users(conn: Executor, tenant_id: str, user_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``user_ids`` are the tenant's users, not deleted nor deactivated."""
    return set(await conn.fetchval(
        "SELECT coalesce(array_agg(id), '{}') FROM users WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
        " AND deleted_at IS NULL AND status <> 'deactivated'", tenant_id, list(user_ids)))


# ------------------------------------------------------------------------------------------- preferences


async def get_preferences(conn: Executor, tenant_id: str, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT user_id, channels, quiet_start, quiet_end, phone, updated_at FROM notification_preferences"
        " WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id)


async def put_preferences(conn: Executor, tenant_id: str, user_id: uuid.UUID, *, channels: dict[str, list[str]],
                          quiet_start: time | None, quiet_end: time | None, phone: str | None) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO notification_preferences (tenant_id, user_id, channels, quiet_start, quiet_end, phone)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, user_id) DO UPDATE SET"
        " channels = excluded.channels, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,"
        " phone = excluded.phone, updated_at = now()"
        " RETURNING user_id, channels, quiet_start, quiet_end, phone, updated_at",
        tenant_id, user_id, channels, quiet_start, quiet_end, phone)


def preferences_of(row: Mapping[str, Any] | None) -> Preferences:
    """The pure value of a stored row (the defaults for no row)."""
    if row is None:
        return Preferences()
    return Preferences(channels={k: tuple(v) for k, v in row["channels"].items()}, quiet_start=row["quiet_start"],
                       quiet_end=row["quiet_end"], phone=row["phone"])


async def load_preferences(conn: Executor, tenant_id: str, user_ids: Iterable[uuid.UUID],
                           ) -> dict[uuid.UUID, tuple[str, Preferences]]:
    """{user id: (their address, their preferences)} of the live users among ``user_ids``."""
    rows = await conn.fetch(
        "SELECT u.id, u.email, p.channels, p.quiet_start, p.quiet_end, p.phone FROM users u"
        " LEFT JOIN notification_preferences p ON p.tenant_id = u.tenant_id AND p.user_id = u.id"
        " WHERE u.tenant_id = $1 AND u.id = ANY($2::uuid[]) AND u.deleted_at IS NULL AND u.status = 'active'",
        tenant_id, list(user_ids))
    return {r["id"]: (r["email"], preferences_of(r if r["channels"] is not None else None)) for r in rows}


# ------------------------------------------------------------------------------------------- schedules


async def insert_schedule(conn: Executor, tenant_id: str, *, name: str, rotations: list[dict[str, Any]],
                          overrides: list[dict[str, Any]], created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO oncall_schedules (tenant_id, name, rotations, overrides, created_by) VALUES ($1, $2, $3, $4,"
        f" $5) RETURNING {SCHEDULE_COLUMNS}", tenant_id, name, rotations, overrides, created_by)


async def get_schedule(conn: Executor, tenant_id: str, schedule_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {SCHEDULE_COLUMNS} FROM oncall_schedules WHERE tenant_id = $1 AND id = $2"
                               " AND deleted_at IS NULL", tenant_id, schedule_id)


async def update_schedule(conn: Executor, tenant_id: str, schedule_id: uuid.UUID, *, name: str,
                          rotations: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE oncall_schedules SET name = $3, rotations = $4, overrides = $5, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {SCHEDULE_COLUMNS}",
        tenant_id, schedule_id, name, rotations, overrides)


async def chains_naming_schedule(conn: Executor, tenant_id: str, schedule_id: uuid.UUID) -> list[str]:
    """The names of the live escalation chains with a step that targets the schedule."""
    return list(await conn.fetchval(
        "SELECT coalesce(array_agg(DISTINCT c.name), '{}') FROM escalation_chains c,"
        " jsonb_array_elements(c.steps) AS step WHERE c.tenant_id = $1 AND c.deleted_at IS NULL"
        " AND step -> 'targets' -> 'schedules' ? $2", tenant_id, str(schedule_id)))


async def delete_schedule(conn: Executor, tenant_id: str, schedule_id: uuid.UUID) -> bool:
    return await conn.fetchval("UPDATE oncall_schedules SET deleted_at = now() WHERE tenant_id = $1 AND id = $2"
                               " AND deleted_at IS NULL RETURNING true", tenant_id, schedule_id) is not None


def schedule_of(rotations: list[dict[str, Any]], overrides: list[dict[str, Any]], zone: str) -> Schedule:
    """The pure schedule of stored (or API-checked) documents; `notify.oncall.ScheduleError` when unusable."""
    return Schedule(
        [Rotation(tuple(str(m) for m in r["members"]), r["handoff"],
                  time.fromisoformat(str(r["handoff_time"])), date.fromisoformat(str(r["start"])))
         for r in rotations],
        [Override(str(o["user"]), _instant(o["start"]), _instant(o["end"])) for o in overrides], zone)


def _instant(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


async def schedules_by_id(conn: Executor, tenant_id: str, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Schedule]:
    """The live schedules among ``ids``, parsed (one that cannot be read any more is left out)."""
    zone = await tenant_zone(conn, tenant_id)
    rows = await conn.fetch("SELECT id, rotations, overrides FROM oncall_schedules WHERE tenant_id = $1"
                            " AND id = ANY($2::uuid[]) AND deleted_at IS NULL", tenant_id, list(ids))
    found: dict[uuid.UUID, Schedule] = {}
    for row in rows:
        try:
            found[row["id"]] = schedule_of(row["rotations"], row["overrides"], zone)
        except ValueError:
            continue
    return found


# ------------------------------------------------------------------------------------------- chains


async def insert_chain(conn: Executor, tenant_id: str, *, name: str, steps: list[dict[str, Any]], repeat: int,
                       created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO escalation_chains (tenant_id, name, steps, repeat, created_by) VALUES ($1, $2, $3, $4, $5)"
        f" RETURNING {CHAIN_COLUMNS}", tenant_id, name, steps, repeat, created_by)


async def get_chain(conn: Executor, tenant_id: str, chain_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {CHAIN_COLUMNS} FROM escalation_chains WHERE tenant_id = $1 AND id = $2"
                               " AND deleted_at IS NULL", tenant_id, chain_id)


async def update_chain(conn: Executor, tenant_id: str, chain_id: uuid.UUID, *, name: str,
                       steps: list[dict[str, Any]], repeat: int) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE escalation_chains SET name = $3, steps = $4, repeat = $5, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {CHAIN_COLUMNS}",
        tenant_id, chain_id, name, steps, repeat)


async def delete_chain(conn: Executor, tenant_id: str, chain_id: uuid.UUID) -> bool:
    """Soft delete; its running escalations stop."""
    deleted = await conn.fetchval("UPDATE escalation_chains SET deleted_at = now() WHERE tenant_id = $1 AND id = $2"
                                  " AND deleted_at IS NULL RETURNING true", tenant_id, chain_id) is not None
    if deleted:
        await conn.execute("UPDATE escalations SET next_at = NULL, stopped = 'chain deleted' WHERE tenant_id = $1"
                           " AND chain_id = $2 AND next_at IS NOT NULL", tenant_id, chain_id)
    return deleted


async def live_chain_ids(conn: Executor, tenant_id: str) -> set[str]:
    return {str(c) for c in await conn.fetchval(
        "SELECT coalesce(array_agg(id), '{}') FROM escalation_chains WHERE tenant_id = $1 AND deleted_at IS NULL",
        tenant_id)}


async def live_schedule_ids(conn: Executor, tenant_id: str, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    return set(await conn.fetchval(
        "SELECT coalesce(array_agg(id), '{}') FROM oncall_schedules WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
        " AND deleted_at IS NULL", tenant_id, list(ids)))


SCHEDULES = ResourceSpec(
    name="oncall_schedules", from_sql="oncall_schedules", default_sort="name", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("name", "name"),
        FieldSpec("rotations", "rotations", filterable=False, sortable=False),
        FieldSpec("overrides", "overrides", filterable=False, sortable=False),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)
CHAINS = ResourceSpec(
    name="escalation_chains", from_sql="escalation_chains", default_sort="name", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("name", "name"),
        FieldSpec("steps", "steps", filterable=False, sortable=False),
        FieldSpec("repeat", "repeat", "int"),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)
