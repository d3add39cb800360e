"""Wells: the registry (CRUD, search by name, API number, lease, status and bounding box), the
equipment serving a well, and its timeline."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from schema.api import Envelope, ErrorEnvelope
from schema.assets import ActivityPublic, EquipmentPublic, WellCreate, WellPublic, WellUpdate
from schema.ids import EQUIPMENT_ID_PATTERN
from serve import assets
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.assets import ACTIVITIES, EQUIPMENT, WELLS
from store.listing import ListQuery

router = APIRouter(prefix="/v1/wells", tags=["wells"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("assets:read")]
Writer = Annotated[Principal, require("assets:write")]
WellId = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, description="the well's id")]
Bbox = Annotated[str | None, Query(max_length=200, description=(
    "Wells located inside `min_lon,min_lat,max_lon,max_lat` (degrees, WGS 84); min_lon > max_lon crosses the"
    " antimeridian. Wells without a location are left out."), examples=["-103.1,31.5,-101.9,32.6"])]
# List pages, parametrised at module level (see serve.listing.sparse_list).
WELL_PAGE = Envelope.__class_getitem__(sparse_list(WellPublic))
EQUIPMENT_PAGE = Envelope.__class_getitem__(sparse_list(EquipmentPublic))
ACTIVITY_PAGE = Envelope.__class_getitem__(sparse_list(ActivityPublic))


@router.get("", response_model=WELL_PAGE, response_model_exclude_unset=True,
            responses=ERRORS)
async def list_wells(services: ServicesDep, principal: Reader, q: Annotated[ListQuery, list_params(WELLS)],
                     bbox: Bbox = None) -> dict[str, Any]:
    """Search wells: `?name=like:*7*`, `?api_number=42-501-20130` (dashes optional), `?lease=`,
    `?status=in:active,drilling`, `?bbox=`."""
    rows, total = await assets.list_wells(services, principal.tenant_id, q, bbox)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[WellPublic], responses=ERRORS)
async def create_well(body: WellCreate, services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[WellPublic]:
    """A live well's API number is unique in the tenant (409 naming `api_number`)."""
    return Envelope(data=WellPublic(**await assets.create_well(services, audit, body)))


@router.get("/{well_id}", response_model=Envelope[WellPublic], responses=ERRORS)
async def get_well(well_id: WellId, services: ServicesDep, principal: Reader) -> Envelope[WellPublic]:
    return Envelope(data=WellPublic(**await assets.get_well(services, principal.tenant_id, well_id)))


@router.patch("/{well_id}", response_model=Envelope[WellPublic], responses=ERRORS)
async def update_well(well_id: WellId, body: WellUpdate, services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[WellPublic]:
    return Envelope(data=WellPublic(**await assets.update_well(services, audit, well_id, body)))


@router.delete("/{well_id}", status_code=204, responses=ERRORS)
async def delete_well(well_id: WellId, services: ServicesDep, principal: Writer, audit: Audit,
                      detach: Annotated[bool, Query(description="remove the assignments of equipment still"
                                                    " serving the well (otherwise: 409)")] = False) -> Response:
    """Soft delete (the row stays, `deleted_at` set; its API number is free again). Refused with 409 naming
    `equipment_ids` while live equipment serves the well, unless `?detach=true`."""
    await assets.delete_well(services, audit, well_id, detach=detach)
    return Response(status_code=204)


@router.get("/{well_id}/equipment", response_model=EQUIPMENT_PAGE,
            response_model_exclude_unset=True, responses=ERRORS)
async def well_equipment(well_id: WellId, services: ServicesDep, principal: Reader,
                         q: Annotated[ListQuery, list_params(EQUIPMENT)]) -> dict[str, Any]:
    """The live equipment assigned to the well."""
    rows, total = await assets.well_equipment(services, principal.tenant_id, well_id, q)
    return page_envelope(rows, total, q)


@router.get("/{well_id}/activities", response_model=ACTIVITY_PAGE,
            response_model_exclude_unset=True, responses=ERRORS)
async def well_activities(well_id: WellId, services: ServicesDep, principal: Reader,
                          q: Annotated[ListQuery, list_params(ACTIVITIES)]) -> dict[str, Any]:
    """The well's timeline, newest first: maintenance jobs and alerts of the equipment serving it,
    its production records, and audit entries about it. Filter with `?kind=in:alert,maintenance`, `?at=gte:`."""
    rows, total = await assets.well_activities(services, principal.tenant_id, well_id, q)
    return page_envelope(rows, total, q)
