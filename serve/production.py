"""Production services: daily records of each well (create one, a batch, a CSV import; update, soft delete),
their listing, CSV export and period summaries.

Writes run in a unit of work (`serve.uow`) that writes the audit row with the change: the record itself when
one is created, one entry with the new ids for a batch or an import. Refusals are `schema.errors` classes
naming the field (or CSV line) at fault; the store checks the records all or nothing.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from schema.errors import InvalidInput, NotFound
from schema.production import ProductionCreate
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import production as store
from store.assets import live_well_ids
from store.audit import AuditContext
from store.listing import ListQuery, fetch_page

__all__ = ["create_records", "delete_record", "export_csv", "get_record", "list_records", "summary",
           "summary_range", "update_record"]

ENTITY = store.ENTITY
MAX_SUMMARY_PERIODS = 1000
EARLIEST_DAY = date(1900, 1, 1)  # a summary from year 1 would start its first week in 1 BC, which Python lacks


async def list_records(services: Services, tenant_id: str, q: ListQuery, *, well_id: str | None = None,
                       ) -> tuple[list[dict[str, Any]], int]:
    """A page of the tenant's records, or of one live well's (`NotFound` for another well)."""
    if well_id is None:
        return await tenant_page(services, tenant_id, store.PRODUCTION, q)
    async with services.tenant_tx(tenant_id) as conn:
        await _require_well(conn, tenant_id, well_id)
        return await fetch_page(conn, store.PRODUCTION, q, tenant_id, extra_where=[("well_id = $1", [well_id])])


async def create_records(services: Services, audit: AuditContext, records: Sequence[ProductionCreate], *,
                         source: str, label: store.Label) -> list[asyncpg.Record]:
    """Store the records all or nothing, in input order (``source``: ``api`` or ``import``)."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        rows = await store.insert_records(uow.conn, audit.tenant_id, records, created_by=audit.actor_id,
                                          source=source, label=label)
        if len(rows) == 1 and source != "import":
            await uow.record(action="create", entity_type=ENTITY, entity_id=str(rows[0]["id"]), new=rows[0])
        else:
            await uow.record(action="import" if source == "import" else "batch_create", entity_type=ENTITY,
                             entity_id=None, new={"count": len(rows), "ids": [str(r["id"]) for r in rows]})
    return rows


async def get_record(services: Services, tenant_id: str, record_id: UUID) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_record(conn, tenant_id, record_id)
    if row is None:
        raise _not_found(record_id)
    return row


async def update_record(services: Services, audit: AuditContext, record_id: UUID, changes: dict[str, Any],
                        expected_version: int | None) -> asyncpg.Record:
    """A partial update (version + 1, audited with what changed); an update that changes nothing is answered
    with the record as it is."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        found = await store.update_record(uow.conn, audit.tenant_id, record_id, changes, expected_version)
        if found is None:
            raise _not_found(record_id)
        current, row = found
        changed = [k for k in changes if current[k] != changes[k]]
        if changed:
            await uow.record(action="update", entity_type=ENTITY, entity_id=str(record_id),
                             old={k: current[k] for k in changed} | {"version": current["version"]},
                             new={k: row[k] for k in changed} | {"version": row["version"]})
    return row


async def delete_record(services: Services, audit: AuditContext, record_id: UUID) -> None:
    """Soft delete: the well and day may be recorded again."""
    async with tenant_work(services, audit.tenant_id, audit) as uow:
        row = await store.delete_record(uow.conn, audit.tenant_id, record_id)
        if row is None:
            raise _not_found(record_id)
        await uow.record(action="delete", entity_type=ENTITY, entity_id=str(record_id), old=row)


async def export_csv(services: Services, tenant_id: str, *, well_id: str | None, start: date | None,
                     end: date | None) -> AsyncIterator[str]:
    """The CSV, checked first (`NotFound` for a well that is not live, before the response starts), then
    streamed from a transaction of its own that lasts as long as the download."""
    if well_id is not None:
        async with services.tenant_tx(tenant_id) as conn:
            await _require_well(conn, tenant_id, well_id)

    async def chunks() -> AsyncIterator[str]:
        async with services.tenant_tx(tenant_id) as conn:
            async for chunk in store.export_csv(conn, tenant_id, well_id=well_id, start=start, end=end):
                yield chunk

    return chunks()


async def summary(services: Services, tenant_id: str, *, period: str, start: date | None, end: date | None,
                  well_id: str | None) -> list[asyncpg.Record]:
    """Sums per period of [start, end] (defaults and limits in `summary_range`, ``today`` in the tenant's time
    zone), for one live well or the whole tenant."""
    async with services.tenant_tx(tenant_id) as conn:
        first, last = summary_range(start, end, period=period, today=await store.tenant_today(conn, tenant_id))
        if well_id is not None:
            await _require_well(conn, tenant_id, well_id)
        return await store.summary(conn, tenant_id, period=period, start=first, end=last, well_id=well_id)


def summary_range(start: date | None, end: date | None, *, period: str, today: date) -> tuple[date, date]:
    """[start, end] of a summary: ``end`` defaults to today, ``start`` to 30 days (a day's period) or a year
    before; at most `MAX_SUMMARY_PERIODS` periods, from `EARLIEST_DAY` on.

    >>> summary_range(None, date(2026, 3, 31), period="day", today=date(2026, 4, 1))
    (datetime.date(2026, 3, 2), datetime.date(2026, 3, 31))
    """
    max_days = MAX_SUMMARY_PERIODS * {"day": 1, "week": 7, "month": 28}[period] - 1
    default_days = 29 if period == "day" else 365
    end = end or today
    start = start or max(date.min + timedelta(days=default_days), end) - timedelta(days=default_days)
    if start > end:
        raise InvalidInput("from is after to", [{"field": "from", "message": "must not be after to"}])
    if start < EARLIEST_DAY:
        raise InvalidInput("from is too early", [{"field": "from", "message": f"from {EARLIEST_DAY} on"}])
    if (end - start).days > max_days:
        raise InvalidInput("range too long", [{"field": "from", "message": f"at most {max_days} days"}])
    return start, end


async def _require_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> None:
    if not await live_well_ids(conn, tenant_id, [well_id]):
        raise NotFound(f"well {well_id} not found")


def _not_found(record_id: UUID) -> NotFound:
    return NotFound(f"production record {record_id} not found")
