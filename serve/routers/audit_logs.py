"""The audit trail of the caller's tenant (admins): who changed what, when, from where."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from schema.api import Envelope, ErrorEnvelope, Meta, Pagination
from schema.identity import AuditEntry
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError
from store import audit

router = APIRouter(prefix="/v1/audit-logs", tags=["audit"])
Name = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.get("", response_model=Envelope[list[AuditEntry]],
            responses={403: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}})
async def list_audit_logs(
    services: ServicesDep,
    principal: Annotated[Principal, require("audit:read")],
    from_: Annotated[datetime | None, Query(alias="from", description="inclusive, RFC 3339")] = None,
    to: Annotated[datetime | None, Query(description="exclusive, RFC 3339")] = None,
    user: Name = None,
    entity_type: Name = None,
    action: Name = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Envelope[list[AuditEntry]]:
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, f"{name} needs a time zone", details=[{"field": name, "message": "naive timestamp"}])
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await audit.list_entries(conn, principal.tenant_id, start=from_, end=to, actor_id=user,
                                               entity_type=entity_type, action=action, limit=limit,
                                               offset=(page - 1) * limit)
    return Envelope(data=[AuditEntry(**dict(r)) for r in rows],
                    meta=Meta(pagination=Pagination(page=page, limit=limit, total=total)))
