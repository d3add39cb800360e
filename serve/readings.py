"""Reading services: one equipment's series (raw with a cursor, or in buckets), the latest values of many, and
the CSV export, for the readings and telemetry routers.

Reads only: each runs in the tenant's transaction and raises `NotFound` for an equipment the tenant does not
have (live). Bucketed reads widen the range to whole buckets, so both storage paths answer the same.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from schema.errors import NotFound
from serve.services import Services
from store import assets as asset_store
from store import readings as store

__all__ = ["BUCKET_ORIGIN", "align_down", "align_up", "export_csv", "latest_values", "series"]

BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a midnight, as time_bucket and date_bin align


def align_down(ts: datetime, size: timedelta) -> datetime:
    return ts - (ts - BUCKET_ORIGIN) % size


def align_up(ts: datetime, size: timedelta) -> datetime:
    down = align_down(ts, size)
    return down if down == ts else down + size


async def series(services: Services, tenant_id: str, equipment_id: str, *, sensors: list[str] | None,
                 start: datetime, end: datetime, bucket: timedelta | None, after: tuple[datetime, str] | None,
                 limit: int, quality: bool = False) -> list[asyncpg.Record]:
    """Raw readings after the cursor ``after`` (with ``quality``, each with its value's quality and historical
    flag), or with
    ``bucket`` the buckets of the range widened to whole buckets (``after`` is then ignored)."""
    async with services.tenant_tx(tenant_id) as conn:
        await _require_equipment(conn, tenant_id, equipment_id)
        if bucket is not None:
            return await store.fetch_readings_bucketed(
                conn, tenant_id, equipment_id, sensors=sensors, start=align_down(start, bucket),
                end=align_up(end, bucket), bucket=bucket, flavour=services.flavour, limit=limit)
        return await store.fetch_readings(conn, tenant_id, equipment_id, sensors=sensors, start=start, end=end,
                                          after=after, limit=limit, quality=quality)


async def latest_values(services: Services, tenant_id: str, equipment_ids: list[str], *,
                        sensors: list[str] | None) -> dict[str, list[dict[str, Any]]]:
    """The newest value of each sensor, by live equipment id (unknown ids are absent)."""
    async with services.tenant_tx(tenant_id) as conn:
        return await store.latest_values(conn, tenant_id, equipment_ids, sensors=sensors)


async def export_csv(services: Services, tenant_id: str, equipment_id: str, *, sensors: list[str] | None,
                     start: datetime, end: datetime) -> AsyncIterator[str]:
    """The CSV of [start, end), checked first (`NotFound` before the response starts), then streamed from a
    transaction of its own that lasts as long as the download."""
    async with services.tenant_tx(tenant_id) as conn:
        await _require_equipment(conn, tenant_id, equipment_id)

    async def chunks() -> AsyncIterator[str]:
        async with services.tenant_tx(tenant_id) as conn:
            async for chunk in store.export_readings_csv(conn, tenant_id, equipment_id, sensors=sensors,
                                                         start=start, end=end):
                yield chunk

    return chunks()


async def _require_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> None:
    if not await asset_store.equipment_exists(conn, tenant_id, equipment_id):
        raise NotFound(f"equipment {equipment_id} not found")
