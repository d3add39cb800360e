"""The audit trail: one row per mutation, written in the mutation's own transaction.

The database keeps ``audit_log`` append-only (a trigger refuses UPDATE, DELETE and
TRUNCATE, and the app role holds no such privilege), so a row, once committed, stays.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from store.listing import FieldSpec, ResourceSpec

AUDIT_LOG = ResourceSpec(
    name="audit_log", from_sql="audit_log", default_sort="-at",
    fields=(
        FieldSpec("id", "id", "int"),
        FieldSpec("at", "at", "timestamp"),
        FieldSpec("actor_type", "actor_type", "enum", enum=("user", "api_key", "system", "cli")),
        FieldSpec("actor_id", "actor_id"),
        FieldSpec("action", "action"),
        FieldSpec("entity_type", "entity_type"),
        FieldSpec("entity_id", "entity_id"),
        FieldSpec("old_values", "old_values", filterable=False, sortable=False),
        FieldSpec("new_values", "new_values", filterable=False, sortable=False),
        FieldSpec("ip", "ip"),
        FieldSpec("request_id", "request_id"),
    ),
)


@dataclass(frozen=True)
class AuditContext:
    """Who acts, and from where: built once per request from the principal and the request."""

    tenant_id: str
    actor_type: str  # user | api_key | system | cli
    actor_id: str
    ip: str | None = None
    request_id: str | None = None


def _json_safe(values: Any) -> Any:
    """Records and dicts with datetimes, UUIDs and the like, as plain JSON values."""
    if values is None:
        return None
    return json.loads(json.dumps(dict(values), default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | bytes):
        return str(value) if isinstance(value, UUID) else value.hex()
    return str(value)


async def record(conn: asyncpg.Connection, ctx: AuditContext, *, action: str, entity_type: str,
                 entity_id: str | None, old: Any = None, new: Any = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, old_values,"
        " new_values, ip, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ctx.tenant_id, ctx.actor_type, ctx.actor_id, action, entity_type, entity_id, _json_safe(old),
        _json_safe(new), ctx.ip, ctx.request_id)


@dataclass(frozen=True)
class AuditEntry:
    """One row of a batch written by `record_many`."""

    action: str
    entity_type: str
    entity_id: str | None
    old: Any = None
    new: Any = None


async def record_many(conn: asyncpg.Connection, ctx: AuditContext, entries: Sequence[AuditEntry], *,
                      default: Callable[[Any], Any] = _default) -> None:
    """Rows for many changes by one actor, in one statement (a sync chunk: the chunk and each conflict).

    `default` turns what JSON lacks into JSON values (sync keeps its own form: UTC times ending in Z).
    """
    if not entries:
        return
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, old_values,"
        " new_values, ip, request_id)"
        " SELECT $1, $2, $3, x.action, x.entity_type, x.entity_id, x.old_values, x.new_values, $4, $5"
        " FROM jsonb_to_recordset($6::text::jsonb)"  # text: the pool's jsonb codec is not involved
        " AS x(action text, entity_type text, entity_id text, old_values jsonb, new_values jsonb)",
        ctx.tenant_id, ctx.actor_type, ctx.actor_id, ctx.ip, ctx.request_id,
        json.dumps([{"action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
                     "old_values": e.old, "new_values": e.new} for e in entries], default=default))
