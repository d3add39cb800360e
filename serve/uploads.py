"""What devices upload beyond one chunk: upload sessions (many chunks, each applied once and in order) and the
bytes of attachments whose metadata was synced.

An upload session's chunk runs as every chunk does (`serve.sync.run_chunk`: once, its answer stored, its effects
after the commit), checked against the session inside the chunk's transaction. Creating and completing a session
and storing attachment content each commit with their audit row in a unit of work (`serve.uow`). Refusals are
`schema.errors` classes.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from schema.errors import ChunkOutOfOrder, Conflict, InvalidInput, NotFound
from schema.field_events import ParsedEvent
from schema.sync import ParsedChange, UploadCompleted, UploadCreate, UploadPublic
from serve.auth import Principal
from serve.services import Services
from serve.sync import ChunkAnswer, run_chunk, sync_context
from serve.uow import tenant_work
from store import sync as store
from store.attachments import AttachmentStorage, build_storage, sha256_hex
from store.audit import AuditContext

__all__ = ["AttachmentContent", "apply_upload_chunk", "complete_upload", "create_upload", "get_attachment_content",
           "get_upload", "put_attachment_content"]

UPLOAD = "sync_upload"  # the audit log's name for an upload session


# ---------------------------------------------------------------- upload sessions


async def create_upload(services: Services, principal: Principal, audit: AuditContext, body: UploadCreate,
                        ) -> asyncpg.Record:
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        row = await store.create_upload(uow.conn, principal.tenant_id, body.device_id, body.cursor, body.total_chunks,
                                        principal.actor)
        await uow.record(action="create", entity_type=UPLOAD, entity_id=str(row["id"]), new=dict(row))
    return row


async def get_upload(services: Services, tenant_id: str, upload_id: str) -> asyncpg.Record:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_upload(conn, tenant_id, upload_id)
    if row is None:
        raise _not_found(upload_id)
    return row


async def apply_upload_chunk(services: Services, principal: Principal, audit: AuditContext, upload_id: str, n: int,
                             *, changes: Sequence[ParsedChange], events: Sequence[ParsedEvent], body_hash: str,
                             ) -> ChunkAnswer:
    """Chunk ``n`` of the session, in one transaction. Chunks go in order (`ChunkOutOfOrder`); the same chunk
    again (after a drop) is answered as the first time and applies nothing twice."""
    tenant = principal.tenant_id
    upload = await get_upload(services, tenant, upload_id)
    ctx = sync_context(principal, audit, upload["device_id"], upload_id)

    async def apply(conn: asyncpg.Connection) -> store.ChunkOutcome:
        current = await store.get_upload(conn, tenant, upload_id, for_update=True)
        assert current is not None  # noqa: S101  narrows a type; not a check of input
        _check_next_chunk(current, n)
        outcome = await store.apply_chunk(conn, ctx, changes, events, pull=False)
        advanced = await store.advance_upload(conn, tenant, upload_id, outcome.applied, outcome.conflicts)
        outcome.result.update(upload_id=upload_id, chunk=n, cursor=advanced["cursor"])
        return outcome

    return await run_chunk(services, ctx, key=f"upload:{upload_id}:{n}", body_hash=body_hash, apply=apply)


def _check_next_chunk(upload: asyncpg.Record, n: int) -> None:
    if upload["status"] != "open":
        raise Conflict("the upload is completed", [{"field": "upload_id", "message": "completed"}])
    if upload["total_chunks"] is not None and n >= upload["total_chunks"]:
        raise InvalidInput(f"the upload has {upload['total_chunks']} chunks",
                           [{"field": "n", "message": f"at most {upload['total_chunks'] - 1}"}])
    if n != upload["next_chunk"]:
        raise ChunkOutOfOrder(f"send chunk {upload['next_chunk']} next", [
            {"field": "n", "message": f"expected chunk {upload['next_chunk']}"}])


async def complete_upload(services: Services, principal: Principal, audit: AuditContext, upload_id: str,
                          ) -> UploadCompleted:
    """Close the session (again: no change) and answer with the server changes after the cursor it started
    from; `Conflict` while chunks are missing."""
    tenant = principal.tenant_id
    async with tenant_work(services, tenant, audit) as uow:
        upload = await store.get_upload(uow.conn, tenant, upload_id, for_update=True)
        if upload is None:
            raise _not_found(upload_id)
        if upload["total_chunks"] is not None and upload["next_chunk"] < upload["total_chunks"]:
            raise Conflict(f"chunks {upload['next_chunk']} to {upload['total_chunks'] - 1} are missing",
                           [{"field": "upload_id", "message": f"send chunk {upload['next_chunk']} next"}])
        if upload["status"] == "open":
            upload = await store.complete_upload(uow.conn, tenant, upload_id)
            await uow.record(action="complete", entity_type=UPLOAD, entity_id=upload_id, new=dict(upload))
        changes, cursor, has_more = await store.changes_since(uow.conn, tenant, upload["device_id"], upload["cursor"],
                                                              services.settings.sync_pull_limit)
        await store.touch_device(uow.conn, tenant, upload["device_id"], principal.actor, cursor)
        completed = UploadCompleted(upload=UploadPublic(**dict(upload)), changes=changes, cursor=cursor,
                                    has_more=has_more)
    return completed


def _not_found(upload_id: str) -> NotFound:
    return NotFound(f"upload {upload_id} not found")


# ---------------------------------------------------------------- attachment content


@dataclass(frozen=True)
class AttachmentContent:
    """An attachment's stored bytes and what its metadata says of them."""

    data: bytes
    sha256: str
    content_type: str


def _storage(services: Services) -> AttachmentStorage:
    if services.attachment_storage is None:
        services.attachment_storage = build_storage(services.settings)
    return services.attachment_storage


async def put_attachment_content(services: Services, principal: Principal, audit: AuditContext, attachment_id: str,
                                 data: bytes) -> AttachmentContent:
    """Store the bytes of a synced attachment: its ``sha256`` (when the metadata gave one, or a version kept
    beside it) must match (`Conflict`); the same content again changes nothing."""
    sha = sha256_hex(data)
    tenant = principal.tenant_id
    async with tenant_work(services, tenant, audit) as uow:
        row = await store.get_attachment(uow.conn, tenant, attachment_id, for_update=True)
        if row is None or row["deleted_at"] is not None:
            raise NotFound(f"attachment {attachment_id} not found")
        allowed = await store.attachment_hashes(uow.conn, tenant, attachment_id)
        if allowed and sha not in allowed:
            raise Conflict("content does not match the attachment's sha256",
                           [{"field": "body", "message": f"sha256 of the body is {sha}"}])
        # Stored before the row says so: content-addressed, a write whose transaction then rolls back is harmless.
        await _storage(services).put(tenant, sha, data)
        await store.mark_content_stored(uow.conn, tenant, sha, len(data), attachment_id)
        await uow.record(action="upload_content", entity_type="attachment", entity_id=attachment_id,
                         new={"sha256": sha, "size_bytes": len(data)})
        stored = AttachmentContent(data, sha, row["content_type"])
    return stored


async def get_attachment_content(services: Services, tenant_id: str, attachment_id: str) -> AttachmentContent:
    """The bytes of a live attachment; `NotFound` when there is no such attachment or its bytes are not here yet."""
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_attachment(conn, tenant_id, attachment_id)
    if row is None or row["deleted_at"] is not None:
        raise NotFound(f"attachment {attachment_id} not found")
    data = await _storage(services).get(tenant_id, row["sha256"]) if row["sha256"] and row["content_stored"] else None
    if data is None:
        raise NotFound(f"attachment {attachment_id} has no content yet")
    return AttachmentContent(data, row["sha256"], row["content_type"])
