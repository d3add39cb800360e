"""HTTP ingest for feeds that cannot speak NATS: the same subject, the same consumer, 202 (`serve.telemetry`);
and the latest values of many equipment for dashboards (`serve.readings`)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError

from schema.api import Envelope, ErrorEnvelope, IngestAccepted
from schema.ids import InvalidIdentifier, check_equipment_id, check_sensor
from schema.telemetry import EquipmentLatest, parse_telemetry
from serve import readings as reading_service
from serve import telemetry as ingest_service
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError, validation_details
from serve.listing import json_envelope
from store.readings import MAX_LATEST_EQUIPMENT

router = APIRouter(prefix="/v1/telemetry", tags=["telemetry"])
MAX_BODY_BYTES = 4 * 1024 * 1024


@router.post("", status_code=202, response_model=Envelope[IngestAccepted],
             responses={413: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope},
                        409: {"model": ErrorEnvelope}})
async def ingest(
    request: Request,
    response: Response,
    services: ServicesDep,
    principal: Annotated[Principal, require("telemetry:write", batch=True)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Envelope[IngestAccepted]:
    """Accepts one snapshot or ``{"readings": [...]}``; publishes to ``tele.<tenant>.<equipment>``."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        batch = parse_telemetry(body, max_future_skew=services.settings.max_future_skew,
                                max_age=services.settings.max_reading_age)
    except ValidationError as exc:
        raise ApiError(422, "telemetry is invalid", details=validation_details(exc.errors())) from exc
    result, replayed = await ingest_service.ingest(services, principal.tenant_id, batch, body=body,
                                                   idempotency_key=idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return Envelope(data=result)


def _id_list(raw: str, name: str, check: Any, limit: int) -> list[str]:
    try:
        values = list(dict.fromkeys(check(v.strip()) for v in raw.split(",") if v.strip()))
    except InvalidIdentifier as exc:
        raise ApiError(422, f"invalid {name}", details=[{"field": name, "message": str(exc)}]) from exc
    if not values:
        raise ApiError(422, f"no {name} given", details=[{"field": name, "message": "a comma list of ids"}])
    if len(values) > limit:
        raise ApiError(422, f"too many {name}", details=[{"field": name, "message": f"at most {limit}"}])
    return values


@router.get("/latest", response_model=Envelope[list[EquipmentLatest]], responses={422: {"model": ErrorEnvelope}})
async def latest(
    services: ServicesDep,
    principal: Annotated[Principal, require("telemetry:read")],
    equipment: Annotated[str, Query(description="comma-separated equipment ids, at most 100")],
    sensor: Annotated[str | None, Query(description="comma-separated sensor names; default: all")] = None,
) -> Response:
    """For dashboards: the newest value of each sensor of up to 100 equipment, in one query.

    Ids that are unknown, deleted or another tenant's are simply absent from the answer (a
    dashboard keeps working when one of its tiles is removed); an equipment with no readings
    yet is present with an empty `sensors` list. Answers follow the order of `equipment`."""
    ids = _id_list(equipment, "equipment", check_equipment_id, MAX_LATEST_EQUIPMENT)
    sensors = _id_list(sensor, "sensor", check_sensor, 256) if sensor else None
    found = await reading_service.latest_values(services, principal.tenant_id, ids, sensors=sensors)
    return json_envelope([{"equipment_id": e, "sensors": found[e]} for e in ids if e in found])
