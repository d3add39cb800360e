"""Users of the caller's tenant: invite, roles, deactivate, delete (admins); list and read (managers too)."""

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Response

from schema.api import Envelope, ErrorEnvelope
from schema.identity import InvitationSent, RoleChange, UserCreate, UserPublic, UserUpdate
from serve import identity
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list, tenant_page
from store.identity import USERS
from store.listing import ListQuery

router = APIRouter(prefix="/v1/users", tags=["users"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope},
    422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("users:read")]
Admin = Annotated[Principal, require("users:write")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
USER_PAGE = Envelope.__class_getitem__(sparse_list(UserPublic))


@router.get("", response_model=USER_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_users(services: ServicesDep, principal: Reader,
                     q: Annotated[ListQuery, list_params(USERS)]) -> dict[str, Any]:
    """`?role=in:admin,manager&status=active&email=like:*@example.com&sort=-last_login_at`."""
    rows, total = await tenant_page(services, principal.tenant_id, USERS, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[InvitationSent], responses=ERRORS)
async def create_user(body: UserCreate, services: ServicesDep, principal: Admin, audit: Audit,
                      ) -> Envelope[InvitationSent]:
    """With `password`, the account is created active; without, an invitation is sent (registration is
    invite-only) and the account stays `invited` until it is accepted."""
    user, expires_at = await identity.create_user(services, audit, body)
    return Envelope(data=InvitationSent(user=UserPublic(**user), invitation_expires_at=expires_at))


@router.get("/{user_id}", response_model=Envelope[UserPublic], responses=ERRORS)
async def get_user(user_id: UUID, services: ServicesDep, principal: Reader) -> Envelope[UserPublic]:
    return Envelope(data=UserPublic(**await identity.get_user(services, principal.tenant_id, str(user_id))))


@router.patch("/{user_id}", response_model=Envelope[UserPublic], responses=ERRORS)
async def update_user(user_id: UUID, body: UserUpdate, services: ServicesDep, principal: Admin, audit: Audit,
                      ) -> Envelope[UserPublic]:
    user = await identity.update_user(services, audit, str(user_id), action="update", name=body.name)
    return Envelope(data=UserPublic(**user))


@router.patch("/{user_id}/role", response_model=Envelope[UserPublic], responses=ERRORS)
async def change_role(user_id: UUID, body: RoleChange, services: ServicesDep, principal: Admin, audit: Audit,
                      ) -> Envelope[UserPublic]:
    """Takes effect on the user's next request, in every session."""
    user = await identity.update_user(services, audit, str(user_id), action="change_role", role=body.role)
    return Envelope(data=UserPublic(**user))


@router.post("/{user_id}/deactivate", response_model=Envelope[UserPublic], responses=ERRORS)
async def deactivate(user_id: UUID, services: ServicesDep, principal: Admin, audit: Audit) -> Envelope[UserPublic]:
    """Every session of the user stops working on its next request."""
    user = await identity.update_user(services, audit, str(user_id), action="deactivate", end_sessions=True,
                                      status="deactivated")
    return Envelope(data=UserPublic(**user))


@router.post("/{user_id}/activate", response_model=Envelope[UserPublic], responses=ERRORS)
async def activate(user_id: UUID, services: ServicesDep, principal: Admin, audit: Audit) -> Envelope[UserPublic]:
    user = await identity.update_user(services, audit, str(user_id), action="activate", status="active")
    return Envelope(data=UserPublic(**user))


@router.delete("/{user_id}", status_code=204, responses=ERRORS)
async def delete_user(user_id: UUID, services: ServicesDep, principal: Admin, audit: Audit) -> Response:
    """Soft delete: the row stays for the audit trail; the email is free again; sessions end."""
    await identity.update_user(services, audit, str(user_id), action="delete", end_sessions=True,
                               deleted_at=datetime.now(UTC))
    return Response(status_code=204)
