"""Offline sync for field devices: chunks of changes, upload sessions, conflicts, device status, attachments.

A chunk is applied in one transaction (store/sync.py) by `serve.sync.run_chunk`. Its answer is stored with it: a
retry after a dropped connection (the same ``Idempotency-Key``, the same upload chunk, or the same body) gets that
answer again (``Idempotent-Replayed: true``) and applies nothing twice. After the commit, its field events go to
``field.<tenant>.<equipment>``, its alert events to the ALERTS stream, and the tenant's actors are told when
silences (maintenance) or the registry (equipment status) changed.
"""

import hashlib
import time
from collections.abc import Awaitable
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, ValidationError

from schema.api import Envelope, ErrorEnvelope
from schema.errors import ChunkOutOfOrder, Conflict, InvalidInput
from schema.field_events import parse_events
from schema.sync import (
    ATTACHMENT_CONTENT_TYPES,
    AttachmentContentStored,
    ConflictPublic,
    DeviceId,
    DeviceStatus,
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
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse
from serve.services import Services
from serve.sync import ChunkAnswer, after_commit, run_chunk
from store import audit as audit_log
from store import sync as store
from store.attachments import AttachmentStorage, build_storage, sha256_hex
from store.listing import ListQuery, fetch_page

router = APIRouter(prefix="/v1/sync", tags=["sync"])
Writer = Annotated[Principal, require("sync:write")]
BatchWriter = Annotated[Principal, require("sync:write", batch=True)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope, "description": "A record, equipment or well the chunk names does not exist"},
    409: {"model": ErrorEnvelope, "description": "An event id or Idempotency-Key reused with other content"},
    413: {"model": ErrorEnvelope, "description": "The chunk is larger than the server takes"},
    422: {"model": ErrorEnvelope},
}
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


def _model(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [{"field": error_path("", e.get("loc", ())).lstrip(".") or "body", "message": str(e.get("msg"))}
                   for e in exc.errors()]
        raise ApiError(422, "request is invalid", details=details[:100]) from exc


def _parse_chunk(services: Services, changes: list[Any], events: list[Any]) -> tuple[list[Any], list[Any]]:
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


def _context(principal: Principal, audit: Any, device_id: str, upload_id: str | None = None) -> store.SyncContext:
    return store.SyncContext(tenant_id=principal.tenant_id, device_id=device_id, actor=principal.actor, audit=audit,
                             upload_id=upload_id)


# ---------------------------------------------------------------------- POST /v1/sync


@router.post("", response_model=Envelope[SyncResult], responses=ERRORS, openapi_extra=_body_doc(SyncRequestBody))
async def sync(request: Request, services: ServicesDep, principal: BatchWriter, audit: Audit,
               idempotency_key: IdempotencyKey = None) -> Response:
    """Apply a chunk of a device's changes (all or nothing) and answer with what was applied, the conflicts and
    how each was settled, the server changes after the device's cursor, and the new cursor."""
    started = time.perf_counter()
    body, body_hash = await _json_body(request, services.settings.sync_max_chunk_bytes)
    req: SyncRequestBody = _model(SyncRequestBody, body)
    changes, events = _parse_chunk(services, req.changes, req.events)
    if idempotency_key:
        key: str | None = "key:" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    else:
        # Without a key, a chunk that changes something is known by its content (event ids make it unique).
        key = f"body:{req.device_id}:{body_hash}" if changes or events else None
    ctx = _context(principal, audit, req.device_id)

    def apply(conn: asyncpg.Connection) -> Awaitable[store.ChunkOutcome]:
        return store.apply_chunk(conn, ctx, changes, events, cursor=req.cursor, pull=req.pull,
                                 pull_limit=services.settings.sync_pull_limit)

    return _answer(await run_chunk(services, ctx, key=key, body_hash=body_hash, apply=apply), started)


# ---------------------------------------------------------------------- upload sessions


@router.post("/uploads", status_code=201, response_model=Envelope[UploadPublic], responses=ERRORS)
async def create_upload(body: UploadCreate, services: ServicesDep, principal: Writer, audit: Audit,
                        ) -> Envelope[UploadPublic]:
    """Start a large upload: send its chunks to ``PUT /v1/sync/uploads/{id}/chunks/{n}`` from 0 on; after a
    dropped connection, ``GET /v1/sync/uploads/{id}`` says which chunk to send next."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.create_upload(conn, principal.tenant_id, body.device_id, body.cursor, body.total_chunks,
                                        principal.actor)
        await audit_log.record(conn, audit, action="create", entity_type="sync_upload", entity_id=str(row["id"]),
                               new=dict(row))
    return Envelope(data=UploadPublic(**dict(row)))


@router.get("/uploads/{upload_id}", response_model=Envelope[UploadPublic], responses=ERRORS)
async def get_upload(upload_id: UUID, services: ServicesDep, principal: Writer) -> Envelope[UploadPublic]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.get_upload(conn, principal.tenant_id, str(upload_id))
    if row is None:
        raise ApiError(404, f"upload {upload_id} not found")
    return Envelope(data=UploadPublic(**dict(row)))


@router.put("/uploads/{upload_id}/chunks/{n}", response_model=Envelope[SyncResult], responses=ERRORS,
            openapi_extra=_body_doc(UploadChunkBody))
async def put_chunk(request: Request, upload_id: UUID, n: Annotated[int, Path(ge=0, le=100_000)],
                    services: ServicesDep, principal: BatchWriter, audit: Audit) -> Response:
    """Apply chunk ``n`` of the upload in one transaction. Chunks go in order; sending one again (after a drop)
    returns its first answer and applies nothing twice."""
    started = time.perf_counter()
    body, body_hash = await _json_body(request, services.settings.sync_max_chunk_bytes)
    req: UploadChunkBody = _model(UploadChunkBody, body)
    changes, events = _parse_chunk(services, req.changes, req.events)
    tenant = principal.tenant_id
    async with services.tenant_tx(tenant) as conn:
        upload = await store.get_upload(conn, tenant, str(upload_id))
    if upload is None:
        raise ApiError(404, f"upload {upload_id} not found")
    ctx = _context(principal, audit, upload["device_id"], str(upload_id))

    async def apply(conn: asyncpg.Connection) -> store.ChunkOutcome:
        current = await store.get_upload(conn, tenant, str(upload_id), for_update=True)
        assert current is not None  # noqa: S101  narrows a type; not a check of input
        if current["status"] != "open":
            raise Conflict("the upload is completed", [{"field": "upload_id", "message": "completed"}])
        if current["total_chunks"] is not None and n >= current["total_chunks"]:
            raise InvalidInput(f"the upload has {current['total_chunks']} chunks",
                               [{"field": "n", "message": f"at most {current['total_chunks'] - 1}"}])
        if n != current["next_chunk"]:
            raise ChunkOutOfOrder(f"send chunk {current['next_chunk']} next", [
                {"field": "n", "message": f"expected chunk {current['next_chunk']}"}])
        outcome = await store.apply_chunk(conn, ctx, changes, events, pull=False)
        advanced = await store.advance_upload(conn, tenant, str(upload_id), outcome.applied, outcome.conflicts)
        outcome.result.update(upload_id=str(upload_id), chunk=n, cursor=advanced["cursor"])
        return outcome

    return _answer(await run_chunk(services, ctx, key=f"upload:{upload_id}:{n}", body_hash=body_hash, apply=apply),
                   started)


@router.post("/uploads/{upload_id}/complete", response_model=Envelope[UploadCompleted], responses=ERRORS)
async def complete_upload(upload_id: UUID, services: ServicesDep, principal: Writer, audit: Audit,
                          ) -> Envelope[UploadCompleted]:
    """Close the upload and answer with the server changes after the cursor it started from."""
    tenant = principal.tenant_id
    async with services.tenant_tx(tenant) as conn:
        upload = await store.get_upload(conn, tenant, str(upload_id), for_update=True)
        if upload is None:
            raise ApiError(404, f"upload {upload_id} not found")
        if upload["total_chunks"] is not None and upload["next_chunk"] < upload["total_chunks"]:
            raise ApiError(409, f"chunks {upload['next_chunk']} to {upload['total_chunks'] - 1} are missing",
                           details=[{"field": "upload_id", "message": f"send chunk {upload['next_chunk']} next"}])
        if upload["status"] == "open":
            upload = await store.complete_upload(conn, tenant, str(upload_id))
            await audit_log.record(conn, audit, action="complete", entity_type="sync_upload",
                                   entity_id=str(upload_id), new=dict(upload))
        changes, cursor, has_more = await store.changes_since(conn, tenant, upload["device_id"], upload["cursor"],
                                                              services.settings.sync_pull_limit)
        await store.touch_device(conn, tenant, upload["device_id"], principal.actor, cursor)
    return Envelope(data=UploadCompleted(upload=UploadPublic(**dict(upload)), changes=changes, cursor=cursor,
                                         has_more=has_more))


# ---------------------------------------------------------------------- conflicts and status


@router.get("/conflicts", response_model=Envelope[list[sparse(ConflictPublic)]], response_model_exclude_unset=True,
            responses={422: {"model": ErrorEnvelope}})
async def list_conflicts(services: ServicesDep, principal: Writer,
                         q: Annotated[ListQuery, list_params(store.CONFLICTS)]) -> dict[str, Any]:
    """Conflicts, settled and pending (``?status=pending``): every version involved, and the result."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await fetch_page(conn, store.CONFLICTS, q, principal.tenant_id)
    return page_envelope(rows, total, q)


@router.get("/conflicts/{conflict_id}", response_model=Envelope[ConflictPublic], responses=ERRORS)
async def get_conflict(conflict_id: UUID, services: ServicesDep, principal: Writer) -> Envelope[ConflictPublic]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.get_conflict(conn, principal.tenant_id, str(conflict_id))
    if row is None:
        raise ApiError(404, f"conflict {conflict_id} not found")
    return Envelope(data=ConflictPublic(**row))


@router.post("/conflicts/{conflict_id}/resolve", response_model=Envelope[ConflictPublic], responses=ERRORS)
async def resolve_conflict(conflict_id: UUID, body: ResolveRequest, services: ServicesDep,
                           principal: Annotated[Principal, require("sync:review")], audit: Audit,
                           ) -> Envelope[ConflictPublic]:
    """Settle a conflict held for review: ``{"choose": "<event id>"}`` takes that version, ``{"choose":
    "server"}`` keeps the record as it is, ``{"data": {...}}`` sets the merged fields. The record gets a new
    version that flows to every device."""
    ctx = _context(principal, audit, f"review:{principal.subject}")
    choose = str(body.choose) if body.choose is not None else None
    async with services.tenant_tx(principal.tenant_id) as conn:
        outcome = await store.resolve_conflict(conn, ctx, str(conflict_id), choose=choose, data=body.data,
                                               comment=body.comment)
    await after_commit(services, principal.tenant_id, outcome)
    return Envelope(data=ConflictPublic(**outcome.result))


@router.get("/status/{device_id}", response_model=Envelope[DeviceStatus], responses=ERRORS)
async def device_status(device_id: Annotated[DeviceId, Path()], services: ServicesDep,
                        principal: Writer) -> Envelope[DeviceStatus]:
    """Last sync, last cursor, conflicts waiting for review that involve the device, and its last error."""
    async with services.tenant_tx(principal.tenant_id) as conn:
        row = await store.device_status(conn, principal.tenant_id, device_id)
    if row is None:
        raise ApiError(404, f"device {device_id} has never synced")
    return Envelope(data=DeviceStatus(**row))


# ---------------------------------------------------------------------- attachment content


def _storage(services: Services) -> AttachmentStorage:
    if services.attachment_storage is None:
        services.attachment_storage = build_storage(services.settings)
    return services.attachment_storage


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
    sha = sha256_hex(data)
    tenant = principal.tenant_id
    async with services.tenant_tx(tenant) as conn:
        row = await store.get_attachment(conn, tenant, str(attachment_id), for_update=True)
        if row is None or row["deleted_at"] is not None:
            raise ApiError(404, f"attachment {attachment_id} not found")
        allowed = await store.attachment_hashes(conn, tenant, str(attachment_id))
        if allowed and sha not in allowed:
            raise ApiError(409, "content does not match the attachment's sha256",
                           details=[{"field": "body", "message": f"sha256 of the body is {sha}"}])
        await _storage(services).put(tenant, sha, data)
        await store.mark_content_stored(conn, tenant, sha, len(data), str(attachment_id))
        await audit_log.record(conn, audit, action="upload_content", entity_type="attachment",
                               entity_id=str(attachment_id), new={"sha256": sha, "size_bytes": len(data)})
    return Envelope(data=AttachmentContentStored(id=attachment_id, sha256=sha, size_bytes=len(data),
                                                 content_type=row["content_type"]))


@router.get("/attachments/{attachment_id}/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the attachment's bytes"},
                       404: {"model": ErrorEnvelope}})
async def get_attachment_content(attachment_id: UUID, services: ServicesDep,
                                 principal: Annotated[Principal, require("assets:read")]) -> Response:
    tenant = principal.tenant_id
    async with services.tenant_tx(tenant) as conn:
        row = await store.get_attachment(conn, tenant, str(attachment_id))
    if row is None or row["deleted_at"] is not None:
        raise ApiError(404, f"attachment {attachment_id} not found")
    data = await _storage(services).get(tenant, row["sha256"]) if row["sha256"] and row["content_stored"] else None
    if data is None:
        raise ApiError(404, f"attachment {attachment_id} has no content yet")
    # Always a download, never rendered in our origin: a type from before the allow-list becomes opaque bytes.
    media_type = row["content_type"] if row["content_type"] in ATTACHMENT_CONTENT_TYPES else "application/octet-stream"
    return Response(content=data, media_type=media_type, headers={
        "ETag": f'"{row["sha256"]}"', "Cache-Control": "private, max-age=86400",
        "Content-Disposition": f'attachment; filename="{attachment_id}"',
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
