"""Field events one at a time: ``POST /v1/field-events`` appends a domain event without a sync chunk.

The route parses the event and answers; `serve.field_events` applies it the way a chunk's ``events`` are
applied (stored append-only, projected, published to ``field.<tenant>.<equipment>`` after the commit). Sending
the same event again is answered with the first outcome (200, ``duplicate``); its id with other content is a 409.
"""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response

from schema.api import Envelope, ErrorEnvelope
from schema.errors import DomainError
from schema.field_events import FieldEventIn, FieldEventStored, parse_event
from serve import field_events as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require, require_silence_for_open_job
from serve.errors import ApiError

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
    try:
        stored = await service.append_event(services, principal, audit, event)
    except DomainError as exc:  # details name the event's own fields, as for a 422
        exc.details = [{**d, "field": d["field"].removeprefix("body.")} for d in exc.details]
        raise
    if stored.duplicate:
        response.status_code = 200
    return Envelope(data=stored)
