"""HTTP ingest for feeds that cannot speak NATS: the same subject, the same consumer, 202."""

import hashlib
import json
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from schema.api import Envelope, ErrorEnvelope, IngestAccepted
from schema.subjects import tele_subject
from schema.telemetry import parse_telemetry
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError, validation_details
from serve.services import Services

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
        batch = parse_telemetry(body, max_future_skew=services.settings.max_future_skew)
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
