"""Machine credentials of the caller's tenant (admins): shown once, stored hashed, revocable."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter

from schema.api import Envelope, ErrorEnvelope
from schema.identity import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from serve import identity
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list, tenant_page
from store.identity import API_KEYS
from store.listing import ListQuery

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Admin = Annotated[Principal, require("api_keys:manage")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
API_KEY_PAGE = Envelope.__class_getitem__(sparse_list(ApiKeyPublic))


@router.get("", response_model=API_KEY_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_keys(services: ServicesDep, principal: Admin,
                    q: Annotated[ListQuery, list_params(API_KEYS)]) -> dict[str, Any]:
    """Newest first; revoked keys too (`?revoked_at=` filters, e.g. `?sort=-last_used_at`)."""
    rows, total = await tenant_page(services, principal.tenant_id, API_KEYS, q)
    return page_envelope(rows, total, q)


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
