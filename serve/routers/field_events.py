"""Field events one at a time: ``POST /v1/field-events`` appends a domain event without a sync chunk.

The same path as a chunk's ``events`` (store/sync.py): stored append-only, projected (a maintenance
record opens or closes, a finding opens the equipment's ``inspection`` alert), published to
``field.<tenant>.<equipment>`` after the commit. Sending the same event again is answered with the
first outcome (200, ``duplicate``); its id with other content is a 409.
"""

from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response

from schema.api import Envelope, ErrorEnvelope
from schema.errors import DomainError
from schema.field_events import FieldEventIn, FieldEventStored, parse_event
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require, require_silence_for_open_job
from serve.errors import ApiError
from serve.sync import run_chunk
from store import field_events as fe
from store import sync as store

router = APIRouter(prefix="/v1/field-events", tags=["field events"])
MAX_EVENT_BYTES = 64 * 1024


@router.post("", status_code=201, response_model=Envelope[FieldEventStored],
             responses={200: {"model": Envelope[FieldEventStored], "description": "Received before: its first answer"},
                        404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope},
                        413: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": FieldEventIn.model_json_schema()}}}})
async def post_field_event(request: Request, response: Response, services: ServicesDep,
                           principal: Annotated[Principal, require("field_data:write")], audit: Audit,
                           ) -> Envelope[FieldEventStored]:
    """Append one event: ``maintenance_started``, ``maintenance_finished``, ``failure_reported`` or
    ``inspection_finding`` (schema/field_events.py says what each carries and causes)."""
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        raise ApiError(413, f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        body: Any = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, "body is not JSON", details=[{"field": "body", "message": str(exc)}]) from exc
    event, errors = parse_event(body, "body")
    if event is None:
        raise ApiError(422, "the event is invalid", details=[{**e, "field": e["field"].removeprefix("body.")}
                                                            for e in errors])
    require_silence_for_open_job(principal, open_job=event.type == "maintenance_started")
    device = event.device_id or f"{principal.kind.value}:{principal.subject}"
    ctx = store.SyncContext(tenant_id=principal.tenant_id, device_id=device, actor=principal.actor, audit=audit)

    async def apply(conn: asyncpg.Connection) -> store.ChunkOutcome:
        return await store.apply_chunk(conn, ctx, [], [event], pull=False, track_device=event.device_id is not None)

    try:
        result = (await run_chunk(services, ctx, key=None, body_hash=event.content_hash, apply=apply,
                                  track_device=event.device_id is not None)).data
    except DomainError as exc:  # details name the event's own fields, as for a 422
        exc.details = [{**d, "field": d["field"].removeprefix("body.")} for d in exc.details]
        raise
    answer = result["applied"][0]
    duplicate = answer["outcome"] == "duplicate"
    if duplicate:
        response.status_code = 200
    async with services.tenant_tx(principal.tenant_id) as conn:
        stored = (await fe.events_by_id(conn, principal.tenant_id, [event.event_id]))[event.event_id]
    effects = stored["effects"] if isinstance(stored["effects"], list) else orjson.loads(stored["effects"])
    return Envelope(data=FieldEventStored(
        event_id=event.event_id, type=event.type, equipment_id=event.equipment_id,
        record_id=answer.get("record_id", answer["id"]), version=answer["version"], outcome=stored["outcome"],
        effects=effects, duplicate=duplicate))
