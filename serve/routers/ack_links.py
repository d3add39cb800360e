"""Acknowledge an alert from its notification, without logging in: the signed, single-use, expiring link every
notification carries (`serve.ack_links`). GET only shows what the link names (a mail scanner that follows links
acknowledges nothing); POST acknowledges. A malformed, forged or expired token: 422; a used one: 409."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from schema.ack_links import AckLinkPublic
from schema.api import Envelope, ErrorEnvelope
from serve import ack_links as service
from serve.deps import ServicesDep, client_ip, request_id

router = APIRouter(prefix="/v1/ack-links", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Token = Annotated[str, Path(min_length=1, max_length=300)]


@router.get("/{token}", response_model=Envelope[AckLinkPublic], responses=ERRORS)
async def describe_link(token: Token, services: ServicesDep) -> Envelope[AckLinkPublic]:
    """The alert the link names and whether the link was used; changes nothing."""
    return Envelope(data=AckLinkPublic(**await service.describe(services, token)))


@router.post("/{token}", response_model=Envelope[AckLinkPublic], responses=ERRORS)
async def acknowledge_with_link(token: Token, request: Request, services: ServicesDep) -> Envelope[AckLinkPublic]:
    """Acknowledge the alert (once per link); a webhook receiver may POST the token it was sent."""
    row = await service.acknowledge(services, token, ip=client_ip(request), request_id=request_id(request))
    return Envelope(data=AckLinkPublic(**row))
