"""Equipment: the registry (CRUD, type, status, well assignment), its sensor list, and sensors out of service.

Readings live in ``serve/routers/readings.py``; maintenance in ``serve/routers/maintenance.py``
(included first, so that ``/v1/equipment/due-maintenance`` is not read as an equipment id).
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from schema.alerts import OutOfService, OutOfServiceRequest
from schema.api import Envelope, ErrorEnvelope
from schema.assets import EquipmentCreate, EquipmentPublic, EquipmentUpdate, SensorList, SensorPublic
from schema.ids import EQUIPMENT_ID_PATTERN
from serve import alerts as alert_service
from serve import assets
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require
from serve.errors import ApiError
from serve.listing import list_params, page_envelope, sparse_list
from store.assets import EQUIPMENT
from store.listing import ListQuery

router = APIRouter(prefix="/v1/equipment", tags=["equipment"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("assets:read")]
Writer = Annotated[Principal, require("assets:write")]
EquipmentId = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, description="the equipment's id")]
SensorName = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$", description="the sensor's name")]
Silencer = Annotated[Principal, require("alerts:silence")]
# List pages, parametrised at module level (see serve.listing.sparse_list).
EQUIPMENT_PAGE = Envelope.__class_getitem__(sparse_list(EquipmentPublic))


@router.get("", response_model=EQUIPMENT_PAGE, response_model_exclude_unset=True,
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


@router.post("/{equipment_id}/sensors/{sensor}/out-of-service", response_model=Envelope[OutOfService],
             responses=ERRORS)
async def take_out_of_service(equipment_id: EquipmentId, sensor: SensorName, body: OutOfServiceRequest,
                              services: ServicesDep, principal: Silencer, audit: Audit) -> Envelope[OutOfService]:
    """Take a sensor out of service (under repair, known bad) with a reason, until `until` or DELETE: the alerts
    about it (every sensor of the alert out of service) are suppressed now and while it lasts. Again on a sensor
    out of service: the new reason and end."""
    if body.until is not None and body.until <= datetime.now(UTC):
        raise ApiError(422, "until must be in the future", details=[{"field": "until", "message": "in the past"}])
    row = await alert_service.take_out_of_service(services, principal, audit, equipment_id, sensor,
                                                  reason=body.reason, until=body.until)
    return Envelope(data=OutOfService(**dict(row)))


@router.delete("/{equipment_id}/sensors/{sensor}/out-of-service", status_code=204, responses=ERRORS)
async def return_to_service(equipment_id: EquipmentId, sensor: SensorName, services: ServicesDep,
                            principal: Silencer, audit: Audit) -> Response:
    """Return a sensor to service: its suppressed alerts whose condition still holds come back now. A sensor
    that is not out of service: 404."""
    await alert_service.return_to_service(services, principal, audit, equipment_id, sensor)
    return Response(status_code=204)
