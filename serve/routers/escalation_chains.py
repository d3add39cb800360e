"""Escalation chains of the caller's tenant: list, create, read, update, delete. A policy route names one
(`escalation_chain`); the notifier runs it for each alert the route takes until the alert is acknowledged."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from schema.api import Envelope, ErrorEnvelope
from schema.oncall import ChainCreate, ChainPublic, ChainUpdate
from serve import oncall as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.oncall import CHAINS

router = APIRouter(prefix="/v1/escalation-chains", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
CHAIN_PAGE = Envelope.__class_getitem__(sparse_list(ChainPublic))
Manager = Annotated[Principal, require("notifications:manage")]


@router.get("", response_model=CHAIN_PAGE, response_model_exclude_unset=True, responses=ERRORS)
async def list_chains(services: ServicesDep, principal: Manager,
                      q: Annotated[ListQuery, list_params(CHAINS)]) -> dict[str, Any]:
    rows, total = await service.list_chains(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[ChainPublic], responses=ERRORS)
async def create_chain(body: Annotated[ChainCreate, Body()], services: ServicesDep, principal: Manager,
                       audit: Audit) -> Envelope[ChainPublic]:
    """Steps (after `after_seconds` unacknowledged: users, on-call schedules, channels), then `repeat` more
    rounds. Unknown users, schedules or channels: 422 naming the field."""
    return Envelope(data=ChainPublic(**await service.create_chain(services, principal, audit, body)))


@router.get("/{chain_id}", response_model=Envelope[ChainPublic], responses=ERRORS)
async def get_chain(chain_id: UUID, services: ServicesDep, principal: Manager) -> Envelope[ChainPublic]:
    return Envelope(data=ChainPublic(**await service.get_chain(services, principal.tenant_id, chain_id)))


@router.patch("/{chain_id}", response_model=Envelope[ChainPublic], responses=ERRORS)
async def update_chain(chain_id: UUID, body: ChainUpdate, services: ServicesDep, principal: Manager,
                       audit: Audit) -> Envelope[ChainPublic]:
    return Envelope(data=ChainPublic(**await service.update_chain(services, principal, audit, chain_id, body)))


@router.delete("/{chain_id}", status_code=204, responses=ERRORS)
async def delete_chain(chain_id: UUID, services: ServicesDep, principal: Manager, audit: Audit) -> Response:
    """409 while a policy route names it; escalations running it stop."""
    await service.delete_chain(services, principal, audit, chain_id)
    return Response(status_code=204)
