"""Machine credentials of the caller's tenant (admins): shown once, stored hashed, revocable."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from schema.api import Envelope, ErrorEnvelope, Meta, Pagination
from schema.identity import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from serve import identity
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from store import identity as identity_store

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])
ERRORS = {403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Admin = Annotated[Principal, require("api_keys:manage")]


@router.get("", response_model=Envelope[list[ApiKeyPublic]], responses=ERRORS)
async def list_keys(services: ServicesDep, principal: Admin, page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Envelope[list[ApiKeyPublic]]:
    async with services.tenant_tx(principal.tenant_id) as conn:
        rows, total = await identity_store.list_api_keys(conn, principal.tenant_id, limit=limit,
                                                         offset=(page - 1) * limit)
    return Envelope(data=[ApiKeyPublic(**dict(r)) for r in rows],
                    meta=Meta(pagination=Pagination(page=page, limit=limit, total=total)))


@router.post("", status_code=201, response_model=Envelope[ApiKeyCreated], responses=ERRORS)
async def create_key(body: ApiKeyCreate, services: ServicesDep, principal: Admin, audit: Audit,
                     ) -> Envelope[ApiKeyCreated]:
    """The key is in this answer only; it is stored as a SHA-256 digest. Use it as `Authorization: Bearer <key>`."""
    row, key = await identity.create_api_key(services, audit, body)
    return Envelope(data=ApiKeyCreated(**row, key=key))


@router.delete("/{key_id}", response_model=Envelope[ApiKeyPublic], responses=ERRORS)
async def revoke_key(key_id: UUID, services: ServicesDep, principal: Admin, audit: Audit) -> Envelope[ApiKeyPublic]:
    """Revokes the key at once, on every replica."""
    return Envelope(data=ApiKeyPublic(**await identity.revoke_api_key(services, audit, str(key_id))))
