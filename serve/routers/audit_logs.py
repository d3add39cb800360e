"""The audit trail of the caller's tenant (admins): who changed what, when, from where."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from schema.api import Envelope
from schema.identity import AuditEntry
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse_list, tenant_page
from store.audit import AUDIT_LOG
from store.listing import ListQuery

router = APIRouter(prefix="/v1/audit-logs", tags=["audit"])
# List pages, parametrised at module level (see serve.listing.sparse_list).
AUDIT_ENTRY_PAGE = Envelope.__class_getitem__(sparse_list(AuditEntry))


@router.get("", response_model=AUDIT_ENTRY_PAGE, response_model_exclude_unset=True)
async def list_audit_logs(
    services: ServicesDep,
    principal: Annotated[Principal, require("audit:read")],
    q: Annotated[ListQuery, list_params(AUDIT_LOG, reserved={"from", "to", "user"})],
    from_: Annotated[datetime | None, Query(alias="from", description="inclusive, RFC 3339")] = None,
    to: Annotated[datetime | None, Query(description="exclusive, RFC 3339")] = None,
    user: Annotated[str | None, Query(max_length=100, description="the acting user's or API key's id")] = None,
) -> dict[str, Any]:
    """Newest first. Besides the shared filters (`?entity_type=user&action=in:create,update&at=gte:...`),
    `from`/`to` bound the time and `user` is the actor."""
    extra: list[tuple[str, list[Any]]] = []
    for name, value, op in (("from", from_, ">="), ("to", to, "<")):
        if value is None:
            continue
        if value.tzinfo is None:
            raise ApiError(422, f"{name} needs a time zone", details=[{"field": name, "message": "naive timestamp"}])
        extra.append((f"at {op} $1", [value]))
    if user is not None:
        extra.append(("actor_id = $1", [user]))
    rows, total = await tenant_page(services, principal.tenant_id, AUDIT_LOG, q, extra_where=extra)
    return page_envelope(rows, total, q)
