"""Equipment: the registry (CRUD, type, status, well assignment) and its sensor list.

Readings live in ``serve/routers/readings.py``; maintenance in ``serve/routers/maintenance.py``
(included first, so that ``/v1/equipment/due-maintenance`` is not read as an equipment id).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from schema.api import Envelope, ErrorEnvelope
from schema.assets import EquipmentCreate, EquipmentPublic, EquipmentUpdate, SensorList, SensorPublic
from schema.ids import EQUIPMENT_ID_PATTERN
from serve import assets
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.listing import list_params, page_envelope, sparse
from store.assets import EQUIPMENT
from store.listing import ListQuery

router = APIRouter(prefix="/v1/equipment", tags=["equipment"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("assets:read")]
Writer = Annotated[Principal, require("assets:write")]
EquipmentId = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, description="the equipment's id")]


@router.get("", response_model=Envelope[list[sparse(EquipmentPublic)]], response_model_exclude_unset=True,
            responses=ERRORS)
async def list_equipment(
    services: ServicesDep, principal: Reader, q: Annotated[ListQuery, list_params(EQUIPMENT)],
    well_id: Annotated[str | None, Query(pattern=EQUIPMENT_ID_PATTERN, description="serving this well")] = None,
) -> dict[str, Any]:
    rows, total = await assets.list_equipment(services, principal.tenant_id, q, well_id)
    return page_envelope(rows, total, q)


@router.post("", status_code=201, response_model=Envelope[EquipmentPublic], responses=ERRORS)
async def create_equipment(body: EquipmentCreate, services: ServicesDep, principal: Writer, audit: Audit,
                           ) -> Envelope[EquipmentPublic]:
    """Its actor starts within seconds: readings published for it are stored and learned. Unknown wells
    in `well_ids`: 422 naming `well_ids`."""
    return Envelope(data=EquipmentPublic(**await assets.create_equipment(services, audit, body)))


@router.get("/{equipment_id}", response_model=Envelope[EquipmentPublic], responses=ERRORS)
async def get_equipment(equipment_id: EquipmentId, services: ServicesDep, principal: Reader,
                        ) -> Envelope[EquipmentPublic]:
    return Envelope(data=EquipmentPublic(**await assets.get_equipment(services, principal.tenant_id, equipment_id)))


@router.patch("/{equipment_id}", response_model=Envelope[EquipmentPublic], responses=ERRORS)
async def update_equipment(equipment_id: EquipmentId, body: EquipmentUpdate, services: ServicesDep,
                           principal: Writer, audit: Audit) -> Envelope[EquipmentPublic]:
    """A status set here is the operator's: a maintenance job finishing later does not change it back."""
    return Envelope(data=EquipmentPublic(**await assets.update_equipment(services, audit, equipment_id, body)))


@router.delete("/{equipment_id}", status_code=204, responses=ERRORS)
async def delete_equipment(equipment_id: EquipmentId, services: ServicesDep, principal: Writer, audit: Audit,
                           ) -> Response:
    """Decommission: soft delete (`deleted_at`, status `decommissioned`); its actor drops it."""
    await assets.delete_equipment(services, audit, equipment_id)
    return Response(status_code=204)


@router.get("/{equipment_id}/sensors", response_model=Envelope[list[SensorPublic]], responses=ERRORS)
async def get_sensors(equipment_id: EquipmentId, services: ServicesDep, principal: Reader,
                      ) -> Envelope[list[SensorPublic]]:
    sensors = await assets.get_sensors(services, principal.tenant_id, equipment_id)
    return Envelope(data=[SensorPublic(**s) for s in sensors])


@router.put("/{equipment_id}/sensors", response_model=Envelope[list[SensorPublic]], responses=ERRORS)
async def put_sensors(equipment_id: EquipmentId, body: SensorList, services: ServicesDep, principal: Writer,
                      audit: Audit) -> Envelope[list[SensorPublic]]:
    """Replace the sensor list (a sensor kept keeps its `created_at`)."""
    sensors = await assets.put_sensors(services, audit, equipment_id, body.sensors)
    return Envelope(data=[SensorPublic(**s) for s in sensors])
