"""On-call schedules of the caller's tenant: list, create, read, update, delete, and who is on call at an instant.
`serve.oncall` checks them whole (`notify.oncall`: rotations in order, overrides that do not overlap; members that
are the tenant's users) and names the offending field."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Response

from schema.api import Envelope, ErrorEnvelope
from schema.oncall import OnCallNow, ScheduleCreate, SchedulePublic, ScheduleUpdate
from serve import oncall as service
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.oncall import SCHEDULES

router = APIRouter(prefix="/v1/oncall-schedules", tags=["notifications"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
SCHEDULE_PAGE = Envelope.__class_getitem__(sparse_list(SchedulePublic))
Manager = Annotated[Principal, require("notifications:manage")]
Reader = Annotated[Principal, require("alerts:read")]


@router.get("", response_model=SCHEDULE_PAGE, response_model_exclude_unset=True, responses=ERRORS)
async def list_schedules(services: ServicesDep, principal: Manager,
                         q: Annotated[ListQuery, list_params(SCHEDULES)]) -> dict[str, Any]:
    rows, total = await service.list_schedules(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[SchedulePublic], responses=ERRORS)
async def create_schedule(body: Annotated[ScheduleCreate, Body()], services: ServicesDep, principal: Manager,
                          audit: Audit) -> Envelope[SchedulePublic]:
    """Rotations in the order they take effect (each until the next starts), overrides that do not overlap."""
    return Envelope(data=SchedulePublic(**await service.create_schedule(services, principal, audit, body)))


@router.get("/{schedule_id}", response_model=Envelope[SchedulePublic], responses=ERRORS)
async def get_schedule(schedule_id: UUID, services: ServicesDep, principal: Manager) -> Envelope[SchedulePublic]:
    return Envelope(data=SchedulePublic(**await service.get_schedule(services, principal.tenant_id, schedule_id)))


@router.patch("/{schedule_id}", response_model=Envelope[SchedulePublic], responses=ERRORS)
async def update_schedule(schedule_id: UUID, body: ScheduleUpdate, services: ServicesDep, principal: Manager,
                          audit: Audit) -> Envelope[SchedulePublic]:
    """Each field given replaces the stored one (`overrides: []` removes them all)."""
    row = await service.update_schedule(services, principal, audit, schedule_id, body)
    return Envelope(data=SchedulePublic(**row))


@router.delete("/{schedule_id}", status_code=204, responses=ERRORS)
async def delete_schedule(schedule_id: UUID, services: ServicesDep, principal: Manager, audit: Audit) -> Response:
    """409 while an escalation chain's step targets it."""
    await service.delete_schedule(services, principal, audit, schedule_id)
    return Response(status_code=204)


@router.get("/{schedule_id}/on-call", response_model=Envelope[OnCallNow], responses=ERRORS)
async def on_call(schedule_id: UUID, services: ServicesDep, principal: Reader,
                  at: Annotated[datetime | None, Query(description="An instant with offset; now if left out")] = None,
                  ) -> Envelope[OnCallNow]:
    """Who holds the pager at `at`, by override or rotation, and until when; `user_id` null before the first
    rotation starts (the one gap a schedule can have)."""
    return Envelope(data=OnCallNow(**await service.on_call(services, principal.tenant_id, schedule_id, at)))
