"""The caller's notification preferences (channels per severity, quiet hours, SMS number): read and replace;
an admin may read another user's. `serve.oncall` checks and stores them; the notifier applies them."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body

from schema.api import Envelope, ErrorEnvelope
from schema.oncall import PreferencesBody, PreferencesPublic
from serve import oncall as service
from serve.auth import Principal
from serve.deps import Audit, CurrentUser, ServicesDep, require

router = APIRouter(prefix="/v1/notification-preferences", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Admin = Annotated[Principal, require("users:write")]


@router.get("", response_model=Envelope[PreferencesPublic], responses=ERRORS)
async def get_own(services: ServicesDep, principal: CurrentUser) -> Envelope[PreferencesPublic]:
    """Yours, with the defaults filled in for what you never set."""
    return Envelope(data=PreferencesPublic(**await service.get_preferences(services, principal)))


@router.put("", response_model=Envelope[PreferencesPublic], responses=ERRORS)
async def put_own(body: Annotated[PreferencesBody, Body()], services: ServicesDep, principal: CurrentUser,
                  audit: Audit) -> Envelope[PreferencesPublic]:
    """Replace yours: `channels` per severity (of `email`, `sms`, `in_app`), `quiet_hours` in the tenant's time
    zone (critical alerts come through), `phone` for SMS."""
    return Envelope(data=PreferencesPublic(**await service.put_preferences(services, principal, audit, body)))


@router.get("/{user_id}", response_model=Envelope[PreferencesPublic], responses=ERRORS)
async def get_user(user_id: UUID, services: ServicesDep, principal: Admin) -> Envelope[PreferencesPublic]:
    """Another user's (admins)."""
    return Envelope(data=PreferencesPublic(**await service.get_preferences(services, principal, user_id)))
