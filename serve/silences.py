"""Silence services: no alert opens (or pages anyone) for an equipment, a rule, or a rule on one equipment, for a
while. A condition that holds when the silence ends opens its alert then (see `store.alerts.persist_changes`).

Creating and ending one commit with the audit row in a unit of work (`serve.uow`), which tells the tenant's actors
after the commit; they apply it within seconds. Refusals are `schema.errors` classes naming the field at fault.
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from schema.alerts import MAX_SILENCE_DAYS, SilenceCreate
from schema.errors import InvalidInput, NotFound
from serve.auth import Principal
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import alerts as store
from store import assets as asset_store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = ["create_silence", "end_silence", "get_silence", "list_silences"]


async def list_silences(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.SILENCES, q)


async def get_silence(services: Services, tenant_id: str, silence_id: UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_silence(conn, tenant_id, silence_id)
    if row is None:
        raise _not_found(silence_id)
    return row


async def create_silence(services: Services, principal: Principal, audit: AuditContext, body: SilenceCreate,
                         ) -> asyncpg.Record:
    """A silence from ``body.starts_at`` (default now) to ``body.ends_at``, at most `MAX_SILENCE_DAYS`."""
    now = datetime.now(UTC)
    starts_at = body.starts_at or now
    _check_window(starts_at, body.ends_at, now)
    if body.equipment_id is None and body.rule_id is None:
        raise InvalidInput("a silence needs equipment_id, rule_id or both",
                           [{"field": "equipment_id", "message": "give equipment_id and/or rule_id"}])
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        await asset_store.check_equipment_named(uow.conn, principal.tenant_id, body.equipment_id)
        row = await store.insert_silence(uow.conn, principal.tenant_id, equipment_id=body.equipment_id,
                                         rule_id=body.rule_id, starts_at=starts_at, ends_at=body.ends_at,
                                         reason=body.reason, created_by=principal.actor)
        await uow.record(action="create", entity_type="silence", entity_id=str(row["id"]), new=row)
        uow.notify_actors("silences")
    return row


async def end_silence(services: Services, principal: Principal, audit: AuditContext, silence_id: UUID,
                      ) -> asyncpg.Record:
    """End the silence now (the row stays, ``cancelled_at``/``cancelled_by`` set); one already over is
    answered as it is, and changes nothing."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        row = await store.cancel_silence(uow.conn, principal.tenant_id, silence_id, actor=principal.actor)
        if row is None:
            row = await store.get_silence(uow.conn, principal.tenant_id, silence_id)
            if row is None:
                raise _not_found(silence_id)
            return row
        await uow.record(action="cancel", entity_type="silence", entity_id=str(silence_id),
                         new={"cancelled_at": row["cancelled_at"], "cancelled_by": row["cancelled_by"]})
        uow.notify_actors("silences")
    return row


def _not_found(silence_id: UUID) -> NotFound:
    return NotFound(f"silence {silence_id} not found")


def _check_window(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone", [{"field": name, "message": "naive timestamp"}])
    problems = []
    if ends_at <= now:
        problems.append("must be in the future")
    if ends_at <= starts_at:
        problems.append("must be after starts_at")
    if ends_at - starts_at > timedelta(days=MAX_SILENCE_DAYS):
        problems.append(f"at most {MAX_SILENCE_DAYS} days after starts_at")
    if problems:
        raise InvalidInput("invalid silence window", [{"field": "ends_at", "message": p} for p in problems])
