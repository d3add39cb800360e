"""HTTP ingest for feeds that cannot speak NATS: the same subject, the same consumer, 202."""

import hashlib
import json
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from schema.api import Envelope, ErrorEnvelope, IngestAccepted
from schema.ids import InvalidIdentifier, check_equipment_id, check_sensor
from schema.subjects import tele_subject
from schema.telemetry import EquipmentLatest, parse_telemetry
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError, validation_details
from serve.listing import json_envelope
from serve.services import Services
from store import readings as reading_store

router = APIRouter(prefix="/v1/telemetry", tags=["telemetry"])
MAX_BODY_BYTES = 4 * 1024 * 1024
IDEMPOTENCY_BUCKET = "idempotency"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


async def idempotency_store(services: Services):
    try:
        return await services.js.key_value(IDEMPOTENCY_BUCKET)
    except Exception:
        from nats.js.api import KeyValueConfig

        return await services.js.create_key_value(
            KeyValueConfig(bucket=IDEMPOTENCY_BUCKET, ttl=IDEMPOTENCY_TTL_SECONDS, history=1))


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
    body_hash = hashlib.sha256(body).hexdigest()
    kv, kv_key = None, None
    if idempotency_key:
        kv = await idempotency_store(services)
        kv_key = f"{principal.tenant_id}.{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
        try:
            entry = await kv.get(kv_key)
            stored = json.loads(entry.value)
            if stored["body_hash"] != body_hash:
                raise ApiError(409, "Idempotency-Key was already used with a different body",
                               code="IDEMPOTENCY_KEY_REUSED")
            response.headers["Idempotent-Replayed"] = "true"
            return Envelope(data=IngestAccepted(**{**stored["result"], "idempotent_replay": True}))
        except KeyNotFoundError:
            pass
    by_equipment: dict[str, list[dict]] = defaultdict(list)
    for reading in batch.readings:
        by_equipment[reading.equipment_id].append(reading.model_dump(mode="json"))
    for equipment_id, readings in by_equipment.items():
        # Same key (or same body) -> same Nats-Msg-Id: JetStream drops a concurrent retry.
        msg_id = f"http:{kv_key or body_hash}:{equipment_id}"
        await services.js.publish(tele_subject(principal.tenant_id, equipment_id),
                                  json.dumps({"readings": readings}).encode(), headers={"Nats-Msg-Id": msg_id})
    result = IngestAccepted(messages=len(by_equipment), readings=sum(len(r["values"]) for r in
                            (x for v in by_equipment.values() for x in v)), equipment=sorted(by_equipment))
    if kv is not None:
        await kv.put(kv_key, json.dumps({"body_hash": body_hash, "result": result.model_dump()}).encode())
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
    ids = _id_list(equipment, "equipment", check_equipment_id, reading_store.MAX_LATEST_EQUIPMENT)
    sensors = _id_list(sensor, "sensor", check_sensor, 256) if sensor else None
    async with services.tenant_tx(principal.tenant_id) as conn:
        found = await reading_store.latest_values(conn, principal.tenant_id, ids, sensors=sensors,
                                                    flavour=services.flavour)
    return json_envelope([{"equipment_id": e, "sensors": found[e]} for e in ids if e in found])
