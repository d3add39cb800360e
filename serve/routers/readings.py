"""Time series of one equipment: raw with a cursor, or bucketed (avg/min/max/last/count), its latest values and
its CSV export. The routes parse the range, sensors and cursor, and call `serve.readings`."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from schema.api import BucketedReading, Envelope, ErrorEnvelope, Pagination, RawReading, RawReadingWithQuality
from schema.ids import EQUIPMENT_ID_PATTERN, InvalidIdentifier, check_sensor
from schema.telemetry import LatestValue
from serve import readings as service
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError
from serve.listing import json_envelope
from store.readings import csv_filename

router = APIRouter(prefix="/v1/equipment", tags=["telemetry"])
BUCKETS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
           "1h": timedelta(hours=1), "1d": timedelta(days=1)}
MAX_RANGE = timedelta(days=366)


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


EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)  # no overflow in between


def aware(value: datetime | None, name: str, default: datetime) -> datetime:
    if value is None:
        return default
    if value.tzinfo is None:
        raise ApiError(422, f"{name} needs a time zone", details=[{"field": name, "message": "naive timestamp"}])
    if not EARLIEST <= value <= LATEST:
        raise ApiError(422, f"{name} is out of range", details=[{"field": name, "message": "years 1900 to 9000"}])
    return value.astimezone(UTC)


@router.get("/{equipment_id}/readings",
            response_model=Envelope[list[RawReading] | list[RawReadingWithQuality] | list[BucketedReading]],
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
    include_quality: Annotated[bool, Query(description="raw readings only: each with its value's quality "
                                                       "(good, uncertain or bad) and whether it is historical "
                                                       "(forwarded late)")] = False,
) -> Response:
    if include_quality and bucket:
        raise ApiError(422, "include_quality is for raw readings", details=[
            {"field": "include_quality", "message": "not with bucket: buckets aggregate values of every quality"}])
    start, end = _range(from_, to, timedelta(hours=1))
    sensors = parse_sensors(sensor)
    after = decode_cursor(cursor) if cursor else None
    rows = await service.series(services, principal.tenant_id, equipment_id, sensors=sensors, start=start, end=end,
                                bucket=BUCKETS[bucket] if bucket else None, after=after, limit=limit,
                                quality=include_quality)
    if bucket:
        return json_envelope([dict(r) for r in rows], Pagination(limit=limit))
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["sensor"]) if len(rows) == limit else None
    return json_envelope([dict(r) for r in rows], Pagination(limit=limit, next_cursor=next_cursor))


def _range(from_: datetime | None, to: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    end = aware(to, "to", datetime.now(UTC) + timedelta(minutes=5))
    start = aware(from_, "from", end - default)
    if start >= end or end - start > MAX_RANGE:
        raise ApiError(422, "bad time range", details=[{"field": "from", "message": "from must be before to, "
                                                         "and the range at most 366 days"}])
    return start, end


@router.get("/{equipment_id}/latest", response_model=Envelope[list[LatestValue]],
            responses={404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def latest(
    services: ServicesDep,
    principal: Annotated[Principal, require("telemetry:read")],
    equipment_id: Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN)],
    sensor: Annotated[str | None, Query(description="comma-separated sensor names; default: all")] = None,
) -> Response:
    """The newest value and its time for each sensor of the equipment, by sensor name (empty: no readings yet)."""
    sensors = parse_sensors(sensor)
    found = await service.latest_values(services, principal.tenant_id, [equipment_id], sensors=sensors)
    if equipment_id not in found:
        raise ApiError(404, f"equipment {equipment_id} not found")
    return json_envelope(found[equipment_id])


@router.get("/{equipment_id}/readings/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "CSV `ts,sensor,value` with a header row, streamed"},
                       404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def export_readings(
    services: ServicesDep,
    principal: Annotated[Principal, require("telemetry:read")],
    equipment_id: Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN)],
    sensor: Annotated[str | None, Query(description="comma-separated sensor names; default: all")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="default: 24 hours before `to`")] = None,
    to: Annotated[datetime | None, Query(description="default: now")] = None,
) -> StreamingResponse:
    """Raw readings of [from, to) as CSV in (ts, sensor) order, up to 366 days, streamed in chunks from a
    server-side cursor: memory stays flat however long the range."""
    start, end = _range(from_, to, timedelta(hours=24))
    sensors = parse_sensors(sensor)
    chunks = await service.export_csv(services, principal.tenant_id, equipment_id, sensors=sensors, start=start,
                                      end=end)
    filename = csv_filename(equipment_id, start.strftime("%Y%m%dT%H%M%SZ"), end.strftime("%Y%m%dT%H%M%SZ"))
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
