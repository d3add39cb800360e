"""The tenant's notification policy tree: read, replace, remove. The routes parse and answer;
`serve.notification_policies` checks the tree and stores it with the audit row. With no policy every enabled
channel hears of every alert."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from schema.api import Envelope, ErrorEnvelope
from schema.notification_policies import PolicyDocument, PolicyPublic
from serve import notification_policies as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require

router = APIRouter(prefix="/v1/notification-policies", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Manager = Annotated[Principal, require("notifications:manage")]


@router.get("", response_model=Envelope[PolicyPublic], responses=ERRORS)
async def get_policy(services: ServicesDep, principal: Manager) -> Envelope[PolicyPublic]:
    """The tree; 404 when the tenant has none."""
    return Envelope(data=PolicyPublic(**await service.get_policy(services, principal.tenant_id)))


@router.put("", response_model=Envelope[PolicyPublic], responses=ERRORS)
async def put_policy(body: Annotated[PolicyDocument, Body()], services: ServicesDep, principal: Manager,
                     audit: Audit) -> Envelope[PolicyPublic]:
    """Replace the whole tree: routes (one root without `parent`), their matchers, channels, grouping and mute
    timings. A cycle, an unknown matcher field or channel: 422 naming the field (`routes[2].parent`)."""
    row = await service.put_policy(services, principal, audit, body)
    return Envelope(data=PolicyPublic(**row))


@router.delete("", status_code=204, responses=ERRORS)
async def delete_policy(services: ServicesDep, principal: Manager, audit: Audit) -> Response:
    """Back to every enabled channel hearing of every alert."""
    await service.delete_policy(services, principal, audit)
    return Response(status_code=204)
