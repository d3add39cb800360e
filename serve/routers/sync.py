"""Offline sync for field devices: chunks of changes, upload sessions, conflicts, device status, attachments.

The routes parse and answer; `serve.sync` applies a chunk (in one transaction, its answer stored with it: a retry
after a dropped connection, with the same ``Idempotency-Key``, the same upload chunk or the same body, gets that
answer again, ``Idempotent-Replayed: true``, and applies nothing twice) and settles conflicts; `serve.uploads`
keeps upload sessions and attachment content.
"""

import hashlib
import time
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ValidationError

from schema.api import Envelope, ErrorEnvelope
from schema.field_events import ParsedEvent, parse_events
from schema.sync import (
    ATTACHMENT_CONTENT_TYPES,
    AttachmentContentStored,
    ConflictPublic,
    DeviceId,
    DeviceStatus,
    ParsedChange,
    ResolveRequest,
    SyncRequestBody,
    SyncResult,
    UploadChunkBody,
    UploadCompleted,
    UploadCreate,
    UploadPublic,
    error_path,
    parse_changes,
)
from serve import sync as service
from serve import uploads
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse
from serve.services import Services
from serve.sync import ChunkAnswer
from store.listing import ListQuery
from store.sync import CONFLICTS

router = APIRouter(prefix="/v1/sync", tags=["sync"])
Writer = Annotated[Principal, require("sync:write")]
BatchWriter = Annotated[Principal, require("sync:write", batch=True)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope, "description": "A record, equipment or well the chunk names does not exist"},
    409: {"model": ErrorEnvelope, "description": "An event id or Idempotency-Key reused with other content"},
    413: {"model": ErrorEnvelope, "description": "The chunk is larger than the server takes"},
    422: {"model": ErrorEnvelope},
}
Body = TypeVar("Body", bound=BaseModel)
IdempotencyKey = Annotated[str | None, Header(max_length=255, description="a retry with it gets the first answer")]


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by hand (so that errors name ``changes[3].version``, not ``changes.3.version``)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _json_body(request: Request, limit: int) -> tuple[Any, str]:
    """The parsed body and a hash of its content (whitespace and key order do not matter)."""
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, f"chunk larger than {limit} bytes",
                       details=[{"field": "changes", "message": f"send at most {limit} bytes per chunk"}])
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError as exc:
        raise ApiError(422, "body is not JSON", details=[{"field": "body", "message": str(exc)}]) from exc
    return body, hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _model(model: type[Body], body: Any) -> Body:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [{"field": error_path("", e.get("loc", ())).lstrip(".") or "body", "message": str(e.get("msg"))}
                   for e in exc.errors()]
        raise ApiError(422, "request is invalid", details=details[:100]) from exc


def _parse_chunk(services: Services, changes: list[Any], events: list[Any],
                 ) -> tuple[list[ParsedChange], list[ParsedEvent]]:
    limit = services.settings.sync_max_changes_per_chunk
    if len(changes) + len(events) > limit:
        raise ApiError(413, f"chunk of {len(changes) + len(events)} changes; at most {limit} per chunk",
                       details=[{"field": "changes", "message": f"at most {limit} changes and events per chunk;"
                                 " use an upload session for more"}])
    parsed, errors = parse_changes(changes)
    parsed_events, event_errors = parse_events(events)
    if errors or event_errors:
        raise ApiError(422, "no change of the chunk was applied: some are invalid",
                       details=(errors + event_errors)[:100])
    return parsed, parsed_events


def _answer(answer: ChunkAnswer, started: float) -> Response:
    """The envelope of a chunk's answer (its shape is `SyncResult`): a thousand applied changes and the changes
    pulled back would otherwise be validated and encoded again by the response model. ``Server-Timing``
    says how long the server took, apart from the network and the proxy."""
    headers = {"Server-Timing": f"sync;dur={(time.perf_counter() - started) * 1000:.1f}"}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(b'{"data":' + answer.json + b',"meta":{"pagination":null}}', media_type="application/json",
                    headers=headers)


# ---------------------------------------------------------------------- POST /v1/sync


@router.post("", response_model=Envelope[SyncResult], responses=ERRORS, openapi_extra=_body_doc(SyncRequestBody))
async def sync(request: Request, services: ServicesDep, principal: BatchWriter, audit: Audit,
               idempotency_key: IdempotencyKey = None) -> Response:
    """Apply a chunk of a device's changes (all or nothing) and answer with what was applied, the conflicts and
    how each was settled, the server changes after the device's cursor, and the new cursor."""
    started = time.perf_counter()
    body, body_hash = await _json_body(request, services.settings.sync_max_chunk_bytes)
    req = _model(SyncRequestBody, body)
    changes, events = _parse_chunk(services, req.changes, req.events)
    answer = await service.sync_chunk(services, principal, audit, device_id=req.device_id, changes=changes,
                                      events=events, cursor=req.cursor, pull=req.pull,
                                      idempotency_key=idempotency_key, body_hash=body_hash)
    return _answer(answer, started)


# ---------------------------------------------------------------------- upload sessions


@router.post("/uploads", status_code=201, response_model=Envelope[UploadPublic], responses=ERRORS)
async def create_upload(body: UploadCreate, services: ServicesDep, principal: Writer, audit: Audit,
                        ) -> Envelope[UploadPublic]:
    """Start a large upload: send its chunks to ``PUT /v1/sync/uploads/{id}/chunks/{n}`` from 0 on; after a
    dropped connection, ``GET /v1/sync/uploads/{id}`` says which chunk to send next."""
    row = await uploads.create_upload(services, principal, audit, body)
    return Envelope(data=UploadPublic(**dict(row)))


@router.get("/uploads/{upload_id}", response_model=Envelope[UploadPublic], responses=ERRORS)
async def get_upload(upload_id: UUID, services: ServicesDep, principal: Writer) -> Envelope[UploadPublic]:
    row = await uploads.get_upload(services, principal.tenant_id, str(upload_id))
    return Envelope(data=UploadPublic(**dict(row)))


@router.put("/uploads/{upload_id}/chunks/{n}", response_model=Envelope[SyncResult], responses=ERRORS,
            openapi_extra=_body_doc(UploadChunkBody))
async def put_chunk(request: Request, upload_id: UUID, n: Annotated[int, Path(ge=0, le=100_000)],
                    services: ServicesDep, principal: BatchWriter, audit: Audit) -> Response:
    """Apply chunk ``n`` of the upload in one transaction. Chunks go in order; sending one again (after a drop)
    returns its first answer and applies nothing twice."""
    started = time.perf_counter()
    body, body_hash = await _json_body(request, services.settings.sync_max_chunk_bytes)
    req = _model(UploadChunkBody, body)
    changes, events = _parse_chunk(services, req.changes, req.events)
    answer = await uploads.apply_upload_chunk(services, principal, audit, str(upload_id), n, changes=changes,
                                              events=events, body_hash=body_hash)
    return _answer(answer, started)


@router.post("/uploads/{upload_id}/complete", response_model=Envelope[UploadCompleted], responses=ERRORS)
async def complete_upload(upload_id: UUID, services: ServicesDep, principal: Writer, audit: Audit,
                          ) -> Envelope[UploadCompleted]:
    """Close the upload and answer with the server changes after the cursor it started from."""
    return Envelope(data=await uploads.complete_upload(services, principal, audit, str(upload_id)))


# ---------------------------------------------------------------------- conflicts and status


# A model made at run time: FastAPI reads it as the list's item type; to mypy it is a value (Any), not a type.
SparseConflict: Any = sparse(ConflictPublic)


@router.get("/conflicts", response_model=Envelope[list[SparseConflict]], response_model_exclude_unset=True,
            responses={422: {"model": ErrorEnvelope}})
async def list_conflicts(services: ServicesDep, principal: Writer,
                         q: Annotated[ListQuery, list_params(CONFLICTS)]) -> dict[str, Any]:
    """Conflicts, settled and pending (``?status=pending``): every version involved, and the result."""
    rows, total = await service.list_conflicts(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.get("/conflicts/{conflict_id}", response_model=Envelope[ConflictPublic], responses=ERRORS)
async def get_conflict(conflict_id: UUID, services: ServicesDep, principal: Writer) -> Envelope[ConflictPublic]:
    return Envelope(data=ConflictPublic(**await service.get_conflict(services, principal.tenant_id,
                                                                     str(conflict_id))))


@router.post("/conflicts/{conflict_id}/resolve", response_model=Envelope[ConflictPublic], responses=ERRORS)
async def resolve_conflict(conflict_id: UUID, body: ResolveRequest, services: ServicesDep,
                           principal: Annotated[Principal, require("sync:review")], audit: Audit,
                           ) -> Envelope[ConflictPublic]:
    """Settle a conflict held for review: ``{"choose": "<event id>"}`` takes that version, ``{"choose":
    "server"}`` keeps the record as it is, ``{"data": {...}}`` sets the merged fields. The record gets a new
    version that flows to every device."""
    settled = await service.resolve_conflict(services, principal, audit, str(conflict_id),
                                             choose=str(body.choose) if body.choose is not None else None,
                                             data=body.data, comment=body.comment)
    return Envelope(data=ConflictPublic(**settled))


@router.get("/status/{device_id}", response_model=Envelope[DeviceStatus], responses=ERRORS)
async def device_status(device_id: Annotated[DeviceId, Path()], services: ServicesDep,
                        principal: Writer) -> Envelope[DeviceStatus]:
    """Last sync, last cursor, conflicts waiting for review that involve the device, and its last error."""
    return Envelope(data=DeviceStatus(**await service.device_status(services, principal.tenant_id, device_id)))


# ---------------------------------------------------------------------- attachment content


@router.put("/attachments/{attachment_id}/content", response_model=Envelope[AttachmentContentStored],
            responses={**ERRORS, 409: {"model": ErrorEnvelope, "description": "Content other than the metadata says"}},
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}})
async def put_attachment_content(request: Request, attachment_id: UUID, services: ServicesDep, principal: Writer,
                                 audit: Audit) -> Envelope[AttachmentContentStored]:
    """The bytes of an attachment whose metadata was synced. Its ``sha256`` (when the metadata gave one) must
    match; sending the same content again changes nothing."""
    limit = services.settings.attachment_max_bytes
    data = await request.body()
    if len(data) > limit:
        raise ApiError(413, f"attachment larger than {limit} bytes", details=[{"field": "body", "message": "too big"}])
    stored = await uploads.put_attachment_content(services, principal, audit, str(attachment_id), data)
    return Envelope(data=AttachmentContentStored(id=attachment_id, sha256=stored.sha256, size_bytes=len(data),
                                                 content_type=stored.content_type))


@router.get("/attachments/{attachment_id}/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the attachment's bytes"},
                       404: {"model": ErrorEnvelope}})
async def get_attachment_content(attachment_id: UUID, services: ServicesDep,
                                 principal: Annotated[Principal, require("assets:read")]) -> Response:
    content = await uploads.get_attachment_content(services, principal.tenant_id, str(attachment_id))
    # Always a download, never rendered in our origin: a type from before the allow-list becomes opaque bytes.
    allowed = content.content_type in ATTACHMENT_CONTENT_TYPES
    media_type = content.content_type if allowed else "application/octet-stream"
    return Response(content=content.data, media_type=media_type, headers={
        "ETag": f'"{content.sha256}"', "Cache-Control": "private, max-age=86400",
        "Content-Disposition": f'attachment; filename="{attachment_id}"',
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
