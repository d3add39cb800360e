"""Time series of one equipment: raw with a cursor, or bucketed (avg/min/max/last/count)."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from schema.api import BucketedReading, Envelope, ErrorEnvelope, Meta, Pagination, RawReading
from schema.ids import EQUIPMENT_ID_PATTERN, InvalidIdentifier, check_sensor
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError
from store import db

router = APIRouter(prefix="/v1/equipment", tags=["telemetry"])
BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
           "1h": timedelta(hours=1), "1d": timedelta(days=1)}
MAX_RANGE = timedelta(days=366)


BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a midnight, as time_bucket and date_bin align


def align_down(ts: datetime, size: timedelta) -> datetime:
    return ts - (ts - BUCKET_ORIGIN) % size


def align_up(ts: datetime, size: timedelta) -> datetime:
    down = align_down(ts, size)
    return down if down == ts else down + size


def encode_cursor(ts: datetime, sensor: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts.isoformat(), sensor]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts, sensor = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        parsed = datetime.fromisoformat(ts)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, check_sensor(sensor)
    except (ValueError, TypeError, InvalidIdentifier) as exc:
        raise ApiError(400, "bad cursor", details=[{"field": "cursor", "message": "not a cursor we issued"}]) from exc


def parse_sensors(sensor: str | None) -> list[str] | None:
    if not sensor:
        return None
    try:
        return [check_sensor(s.strip()) for s in sensor.split(",") if s.strip()]
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid sensor", details=[{"field": "sensor", "message": str(exc)}]) from exc


def aware(value: datetime | None, name: str, default: datetime) -> datetime:
    if value is None:
        return default
    if value.tzinfo is None:
        raise ApiError(422, f"{name} needs a time zone", details=[{"field": name, "message": "naive timestamp"}])
    return value.astimezone(UTC)


@router.get("/{equipment_id}/readings", response_model=Envelope[list[RawReading] | list[BucketedReading]],
            responses={404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def readings(
    services: ServicesDep,
    principal: Annotated[Principal, require("telemetry:read")],
    equipment_id: Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN)],
    sensor: Annotated[str | None, Query(description="comma-separated sensor names")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    bucket: Literal["1m", "5m", "15m", "1h", "1d"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: str | None = None,
) -> Envelope:
    now = datetime.now(UTC)
    end = aware(to, "to", now + timedelta(minutes=5))
    start = aware(from_, "from", end - timedelta(hours=1))
    if start >= end or end - start > MAX_RANGE:
        raise ApiError(422, "bad time range", details=[{"field": "from", "message": "from must be before to, "
                                                         "and the range at most 366 days"}])
    sensors = parse_sensors(sensor)
    after = decode_cursor(cursor) if cursor else None
    async with services.tenant_tx(principal.tenant_id) as conn:
        if not await db.equipment_exists(conn, principal.tenant_id, equipment_id):
            raise ApiError(404, f"equipment {equipment_id} not found")
        if bucket:
            # Whole buckets only, the same on both storage paths: the range widens to bucket edges.
            start, end = align_down(start, BUCKETS[bucket]), align_up(end, BUCKETS[bucket])
            rows = await db.fetch_readings_bucketed(
                conn, principal.tenant_id, equipment_id, sensors=sensors, start=start, end=end,
                bucket=BUCKETS[bucket], flavour=services.flavour, limit=limit)
            data = [BucketedReading(**dict(r)) for r in rows]
            return Envelope(data=data, meta=Meta(pagination=Pagination(limit=limit)))
        rows = await db.fetch_readings(
            conn, principal.tenant_id, equipment_id, sensors=sensors, start=start, end=end, after=after, limit=limit)
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["sensor"]) if len(rows) == limit else None
    return Envelope(data=[RawReading(**dict(r)) for r in rows],
                    meta=Meta(pagination=Pagination(limit=limit, next_cursor=next_cursor)))
