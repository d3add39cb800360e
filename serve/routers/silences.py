"""Silences: no alert opens (or pages anyone) for an equipment, a rule, or a rule on one equipment, for a
while. The routes parse and answer; `serve.silences` checks, commits with the audit row and tells the actors.

Equipment in maintenance is silenced the same way, without a silence row (``wellpulse_silenced``).
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter

from schema.alerts import Silence, SilenceCreate
from schema.api import Envelope, ErrorEnvelope
from serve import silences as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.alerts import SILENCES
from store.listing import ListQuery

router = APIRouter(prefix="/v1/silences", tags=["silences"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("alerts:read")]
Silencer = Annotated[Principal, require("alerts:silence")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
SILENCE_PAGE = Envelope.__class_getitem__(sparse_list(Silence))


@router.get("", response_model=SILENCE_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_silences(services: ServicesDep, principal: Reader,
                        q: Annotated[ListQuery, list_params(SILENCES)]) -> dict[str, Any]:
    """Newest first; `?state=active` for those in force now."""
    rows, total = await service.list_silences(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[Silence], responses=ERRORS)
async def create_silence(body: SilenceCreate, services: ServicesDep, principal: Silencer, audit: Audit,
                         ) -> Envelope[Silence]:
    """Takes effect within seconds in the running actors."""
    row = await service.create_silence(services, principal, audit, body)
    return Envelope(data=Silence(**row))


@router.get("/{silence_id}", response_model=Envelope[Silence], responses=ERRORS)
async def get_silence(silence_id: UUID, services: ServicesDep, principal: Reader) -> Envelope[Silence]:
    row = await service.get_silence(services, principal.tenant_id, silence_id)
    return Envelope(data=Silence(**row))


@router.delete("/{silence_id}", response_model=Envelope[Silence], responses=ERRORS)
async def end_silence(silence_id: UUID, services: ServicesDep, principal: Silencer, audit: Audit,
                      ) -> Envelope[Silence]:
    """End the silence now (the row stays, `cancelled_at`/`cancelled_by` set). Alerts it held back whose
    condition still holds open within seconds. A silence already over is answered as it is."""
    row = await service.end_silence(services, principal, audit, silence_id)
    return Envelope(data=Silence(**row))
