"""Maintenance jobs of an equipment, and the equipment due for preventive maintenance.

Starting a job moves the equipment to status `maintenance` and finishing it restores the
previous status (the rules are in ``serve/assets.py``); while a job runs, the equipment's
alerts are silenced.
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query

from schema.api import Envelope, ErrorEnvelope
from schema.assets import DueMaintenancePublic, MaintenanceCreate, MaintenancePublic, MaintenanceUpdate
from schema.ids import EQUIPMENT_ID_PATTERN
from serve import assets
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require, require_silence_for_open_job
from serve.listing import list_params, page_envelope, sparse_list
from store.assets import DUE_MAINTENANCE, MAINTENANCE
from store.listing import ListQuery

router = APIRouter(prefix="/v1/equipment", tags=["maintenance"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("assets:read")]
FieldCrew = Annotated[Principal, require("field_data:write")]
EquipmentId = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, description="the equipment's id")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
DUE_MAINTENANCE_PAGE = Envelope.__class_getitem__(sparse_list(DueMaintenancePublic))
MAINTENANCE_PAGE = Envelope.__class_getitem__(sparse_list(MaintenancePublic))


# Declared before any /{equipment_id} route (and this router is included before the equipment router).
@router.get("/due-maintenance", response_model=DUE_MAINTENANCE_PAGE,
            response_model_exclude_unset=True, responses=ERRORS)
async def due_maintenance(
    services: ServicesDep, principal: Reader, q: Annotated[ListQuery, list_params(DUE_MAINTENANCE)],
    within_days: Annotated[int, Query(ge=0, le=3650, description="due within this many days from now")] = 7,
) -> dict[str, Any]:
    """Equipment whose next preventive maintenance (end of its last finished job, else its install date,
    plus `maintenance_interval_days`) is due within `within_days`, overdue first."""
    rows, total = await assets.due_maintenance(services, principal.tenant_id, q, within_days)
    return page_envelope(rows, total, q)


@router.get("/{equipment_id}/maintenance", response_model=MAINTENANCE_PAGE,
            response_model_exclude_unset=True, responses=ERRORS)
async def list_maintenance(equipment_id: EquipmentId, services: ServicesDep, principal: Reader,
                           q: Annotated[ListQuery, list_params(MAINTENANCE)]) -> dict[str, Any]:
    """Newest first; `?active=true` for the jobs silencing the equipment now."""
    rows, total = await assets.list_maintenance(services, principal.tenant_id, equipment_id, q)
    return page_envelope(rows, total, q)


@router.post("/{equipment_id}/maintenance", status_code=201, response_model=Envelope[MaintenancePublic],
             responses=ERRORS)
async def start_maintenance(equipment_id: EquipmentId, body: MaintenanceCreate, services: ServicesDep,
                            principal: FieldCrew, audit: Audit) -> Envelope[MaintenancePublic]:
    """Start a job (or record a past one with `ended_at`). A job that has started and has no `ended_at`
    puts an operational or failed equipment into status `maintenance`. A job in progress holds the
    equipment's alerts, so it also needs `alerts:silence` (API keys may only record finished jobs)."""
    require_silence_for_open_job(principal, open_job=body.ended_at is None)
    record = await assets.start_maintenance(services, audit, principal, equipment_id, body)
    return Envelope(data=MaintenancePublic(**record))


@router.patch("/{equipment_id}/maintenance/{maintenance_id}", response_model=Envelope[MaintenancePublic],
              responses=ERRORS)
async def update_maintenance(equipment_id: EquipmentId, maintenance_id: Annotated[UUID, Path()],
                             body: MaintenanceUpdate, services: ServicesDep, principal: FieldCrew, audit: Audit,
                             ) -> Envelope[MaintenancePublic]:
    """Finish the job (`ended_at`) or edit it; each change bumps `version`. Finishing the equipment's last
    open job restores the status it had before."""
    record = await assets.update_maintenance(services, audit, equipment_id, str(maintenance_id), body)
    return Envelope(data=MaintenancePublic(**record))
