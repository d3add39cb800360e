"""Notification channels of the caller's tenant: list, create, read, update, delete, and send a test. The routes
parse and answer; `serve.notifications` checks the settings, seals the write-only ones and commits with the audit
row. The notifier (`actors.notifier`) delivers alert openings and escalations to the enabled channels.
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from schema.api import Envelope, ErrorEnvelope
from schema.notifications import ChannelCreate, ChannelPublic, ChannelTestResult, ChannelUpdate
from serve import notifications as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.notifications import CHANNELS

router = APIRouter(prefix="/v1/notification-channels", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
# The list page, parametrised at module level (see serve.listing.sparse_list).
CHANNEL_PAGE = Envelope.__class_getitem__(sparse_list(ChannelPublic))
Manager = Annotated[Principal, require("notifications:manage")]


@router.get("", response_model=CHANNEL_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_channels(services: ServicesDep, principal: Manager,
                        q: Annotated[ListQuery, list_params(CHANNELS)]) -> dict[str, Any]:
    """By name; write-only settings are never shown (`secret_set` says whether they are stored)."""
    rows, total = await service.list_channels(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[ChannelPublic], responses=ERRORS)
async def create_channel(body: Annotated[ChannelCreate, Body()], services: ServicesDep, principal: Manager,
                         audit: Audit) -> Envelope[ChannelPublic]:
    """An `email`, `webhook`, `slack` or `teams` channel. It hears of alerts opened or escalated after its
    creation whose severity is at least `min_severity`."""
    row = await service.create_channel(services, principal, audit, body)
    return Envelope(data=ChannelPublic(**row))


@router.get("/{channel_id}", response_model=Envelope[ChannelPublic], responses=ERRORS)
async def get_channel(channel_id: UUID, services: ServicesDep, principal: Manager) -> Envelope[ChannelPublic]:
    row = await service.get_channel(services, principal.tenant_id, channel_id)
    return Envelope(data=ChannelPublic(**row))


@router.patch("/{channel_id}", response_model=Envelope[ChannelPublic], responses=ERRORS)
async def update_channel(channel_id: UUID, body: ChannelUpdate, services: ServicesDep, principal: Manager,
                         audit: Audit) -> Envelope[ChannelPublic]:
    """Partial update; `config` replaces the settings, keeping the write-only ones it leaves out."""
    row = await service.update_channel(services, principal, audit, channel_id, body)
    return Envelope(data=ChannelPublic(**row))


@router.delete("/{channel_id}", status_code=204, responses=ERRORS)
async def delete_channel(channel_id: UUID, services: ServicesDep, principal: Manager, audit: Audit) -> Response:
    """Its deliveries stay listed under their alerts; pending ones are marked failed."""
    await service.delete_channel(services, principal, audit, channel_id)
    return Response(status_code=204)


@router.post("/{channel_id}/test", response_model=Envelope[ChannelTestResult], responses=ERRORS)
async def test_channel(channel_id: UUID, services: ServicesDep, principal: Manager,
                       ) -> Envelope[ChannelTestResult]:
    """Send a test message now and answer how it went (`ok`, or the `error` the channel gave); 200 either way."""
    return Envelope(data=await service.test_channel(services, principal, channel_id))
