"""Asset registry services: wells, equipment and its sensors, maintenance jobs.

Routes parse and call these; the changes run in a unit of work (`serve.uow`) that writes the
audit row in the same transaction and tells the tenant's actors after the commit. Errors are `ApiError`s naming
the field that failed.

Decisions worth knowing:

- **Deleting a well** is refused (409 naming ``equipment_ids``) while live equipment is
  assigned to it; ``detach=True`` removes those assignments in the same transaction. A deleted
  well's id is never reused (409); its API number is free again.
- **Deleting an equipment** decommissions it: ``status`` becomes ``decommissioned``,
  ``deleted_at`` is set, the actors drop it from their registry. Its well assignments stay so
  the wells' timelines keep its history. A new equipment may take the id again (a feed's id
  outlives the hardware): POST with that id starts a fresh row under it.
- **Maintenance and status.** Starting a job (a record that has started and has no
  ``ended_at``) moves an ``operational`` or ``failed`` equipment to ``maintenance`` and
  remembers the previous status; finishing its last such job (setting ``ended_at``) restores
  that status. A job with a planned end, one starting in the future, or one recorded after the
  fact changes no status: the alert pipeline silences by the record's own window
  (``started_at <= now < ended_at``) as well as by the status. Setting the status by hand
  (PATCH) takes it over: a later finish restores nothing.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schema.assets import (
    EquipmentCreate,
    EquipmentUpdate,
    MaintenanceCreate,
    MaintenanceUpdate,
    SensorIn,
    WellCreate,
    WellUpdate,
    format_api_number,
)
from serve.auth import Principal
from serve.errors import ApiError
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import assets
from store.audit import AuditContext
from store.listing import ListQuery, fetch_page

# Path segments of /v1/equipment that are routes, not equipment ids.
RESERVED_EQUIPMENT_IDS = frozenset({"due-maintenance"})


def _error(status: int, field: str, message: str) -> ApiError:
    return ApiError(status, f"{field}: {message}", details=[{"field": field, "message": message}])


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def well_out(row: dict[str, Any]) -> dict[str, Any]:
    """A well as the API shows it: the API number with its dashes."""
    if row.get("api_number"):
        row = {**row, "api_number": format_api_number(row["api_number"])}
    return row


def _diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [k for k in new if k not in ("updated_at", "created_at") and old.get(k) != new.get(k)]
    return {k: old.get(k) for k in keys}, {k: new[k] for k in keys}


# ---------------------------------------------------------------------- wells


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``min_lon,min_lat,max_lon,max_lat`` in degrees; ``min_lon > max_lon`` crosses the antimeridian.

    >>> parse_bbox("-103.1,31.5,-101.9,32.6")
    (-103.1, 31.5, -101.9, 32.6)
    """
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(parts) != 4 or len(values) != 4 or any(v != v for v in values):
        raise _error(422, "bbox", "expected four numbers: min_lon,min_lat,max_lon,max_lat")
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise _error(422, "bbox", "longitudes must be between -180 and 180")
    if not (-90 <= min_lat <= max_lat <= 90):
        raise _error(422, "bbox", "latitudes must be between -90 and 90, min_lat <= max_lat")
    return min_lon, min_lat, max_lon, max_lat


def _bbox_where(bbox: tuple[float, float, float, float]) -> tuple[str, list[float]]:
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon <= max_lon:
        return "w.latitude BETWEEN $1 AND $2 AND w.longitude BETWEEN $3 AND $4", [min_lat, max_lat, min_lon, max_lon]
    return "w.latitude BETWEEN $1 AND $2 AND (w.longitude >= $3 OR w.longitude <= $4)", [
        min_lat, max_lat, min_lon, max_lon]


async def list_wells(services: Services, tenant_id: str, q: ListQuery, bbox: str | None,
                     ) -> tuple[list[dict[str, Any]], int]:
    extra = [_bbox_where(parse_bbox(bbox))] if bbox is not None else []
    rows, total = await tenant_page(services, tenant_id, assets.WELLS, q, extra_where=extra)
    return [well_out(r) for r in rows], total


async def _live_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> dict[str, Any]:
    well = await assets.get_well(conn, tenant_id, well_id)
    if well is None:
        raise ApiError(404, f"well {well_id} not found")
    return well


async def get_well(services: Services, tenant_id: str, well_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        return well_out(await _live_well(conn, tenant_id, well_id))


async def _check_api_number(conn: asyncpg.Connection, tenant_id: str, digits: str, except_id: str | None) -> None:
    holder = await assets.api_number_holder(conn, tenant_id, digits, except_id)
    if holder is not None:
        raise _error(409, "api_number", f"{format_api_number(digits)} already belongs to well {holder}")


def _unique_violation(exc: asyncpg.UniqueViolationError, entity: str, entity_id: str) -> ApiError:
    if exc.constraint_name == "wells_api_number":
        return _error(409, "api_number", "already belongs to another live well")
    return _error(409, "id", f"{entity} {entity_id} already exists")


async def create_well(services: Services, audit: AuditContext, body: WellCreate) -> dict[str, Any]:
    tenant_id, well_id = audit.tenant_id, body.id or _new_id("W")
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        if body.id is not None and await assets.well_id_used(conn, tenant_id, well_id):
            raise _error(409, "id", f"well {well_id} exists or existed (ids of deleted wells are not reused)")
        await _check_api_number(conn, tenant_id, body.api_number, None)
        try:
            async with conn.transaction():  # a concurrent create of the same id or number: 409, not 500
                await assets.insert_well(conn, tenant_id, well_id, body.model_dump(exclude={"id"}))
        except asyncpg.UniqueViolationError as exc:
            raise _unique_violation(exc, "well", well_id) from exc
        well = well_out(await _live_well(conn, tenant_id, well_id))
        await uow.record(action="create", entity_type="well", entity_id=well_id, new=well)
    return well


async def update_well(services: Services, audit: AuditContext, well_id: str, body: WellUpdate) -> dict[str, Any]:
    tenant_id, changes = audit.tenant_id, body.changes()
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        row = await assets.lock_well(conn, tenant_id, well_id)
        if row is None:
            raise ApiError(404, f"well {well_id} not found")
        if not changes:
            return well_out(await _live_well(conn, tenant_id, well_id))
        latitude, longitude = changes.get("latitude", row["latitude"]), changes.get("longitude", row["longitude"])
        if (latitude is None) != (longitude is None):
            field = "longitude" if "longitude" in changes else "latitude"
            raise _error(422, field, "latitude and longitude go together: both set or both null")
        if "api_number" in changes and changes["api_number"] != row["api_number"]:
            await _check_api_number(conn, tenant_id, changes["api_number"], well_id)
        old = well_out(await _live_well(conn, tenant_id, well_id))
        try:
            async with conn.transaction():
                await assets.update_well(conn, tenant_id, well_id, changes)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_violation(exc, "well", well_id) from exc
        well = well_out(await _live_well(conn, tenant_id, well_id))
        before, after = _diff(old, well)
        await uow.record(action="update", entity_type="well", entity_id=well_id,
                         old=before, new=after)
    return well


async def delete_well(services: Services, audit: AuditContext, well_id: str, *, detach: bool) -> None:
    tenant_id = audit.tenant_id
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        if await assets.lock_well(conn, tenant_id, well_id) is None:
            raise ApiError(404, f"well {well_id} not found")
        equipment = await assets.live_equipment_of_well(conn, tenant_id, well_id)
        if equipment and not detach:
            raise _error(409, "equipment_ids", f"still assigned: {', '.join(equipment[:20])}; reassign them,"
                         " or delete with ?detach=true to remove the assignments")
        old = well_out(await _live_well(conn, tenant_id, well_id))
        if detach:
            await assets.detach_well(conn, tenant_id, well_id)
        await assets.delete_well(conn, tenant_id, well_id)
        await uow.record(action="delete", entity_type="well", entity_id=well_id, old=old,
                         new={"deleted": True, "detached_equipment_ids": equipment if detach else []})


async def well_equipment(services: Services, tenant_id: str, well_id: str, q: ListQuery,
                         ) -> tuple[list[dict[str, Any]], int]:
    async with services.tenant_tx(tenant_id) as conn:
        await _live_well(conn, tenant_id, well_id)
        return await fetch_page(conn, assets.EQUIPMENT, q, tenant_id, extra_where=[(assets.SERVES_WELL, [well_id])])


async def well_activities(services: Services, tenant_id: str, well_id: str, q: ListQuery,
                          ) -> tuple[list[dict[str, Any]], int]:
    async with services.tenant_tx(tenant_id) as conn:
        await _live_well(conn, tenant_id, well_id)
        return await fetch_page(conn, assets.ACTIVITIES, q, tenant_id, extra_where=[(assets.OF_WELL, [well_id])])


# ---------------------------------------------------------------------- equipment


async def list_equipment(services: Services, tenant_id: str, q: ListQuery, well_id: str | None,
                         ) -> tuple[list[dict[str, Any]], int]:
    extra = [(assets.SERVES_WELL, [well_id])] if well_id is not None else []
    return await tenant_page(services, tenant_id, assets.EQUIPMENT, q, extra_where=extra)


async def _live_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> dict[str, Any]:
    equipment = await assets.get_equipment(conn, tenant_id, equipment_id)
    if equipment is None:
        raise ApiError(404, f"equipment {equipment_id} not found")
    return equipment


async def _locked_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> asyncpg.Record:
    row = await assets.lock_equipment(conn, tenant_id, equipment_id)
    if row is None:
        raise ApiError(404, f"equipment {equipment_id} not found")
    return row


async def get_equipment(services: Services, tenant_id: str, equipment_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        return await _live_equipment(conn, tenant_id, equipment_id)


async def _check_wells(conn: asyncpg.Connection, tenant_id: str, well_ids: list[str]) -> None:
    live = await assets.live_well_ids(conn, tenant_id, well_ids, share_lock=True)
    unknown = [w for w in well_ids if w not in live]
    if unknown:
        raise _error(422, "well_ids", f"no such well: {', '.join(unknown[:20])}")


def _sensor_rows(sensors: list[SensorIn]) -> list[dict[str, Any]]:
    return [s.model_dump() for s in sensors]


async def create_equipment(services: Services, audit: AuditContext, body: EquipmentCreate) -> dict[str, Any]:
    tenant_id, equipment_id = audit.tenant_id, body.id or _new_id("EQ")
    if equipment_id in RESERVED_EQUIPMENT_IDS:
        raise _error(422, "id", f"{equipment_id!r} is reserved (a route under /v1/equipment)")
    values = body.model_dump(exclude={"id", "well_ids", "sensors"})
    values["name"] = body.name or equipment_id
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        existing = await assets.lock_equipment(conn, tenant_id, equipment_id, include_deleted=True)
        if existing is not None and existing["deleted_at"] is None:
            raise _error(409, "id", f"equipment {equipment_id} already exists (a feed may have registered it"
                         " on its first reading): PATCH it instead")
        await _check_wells(conn, tenant_id, body.well_ids)
        if existing is not None:
            await assets.revive_equipment(conn, tenant_id, equipment_id, values)
        else:
            try:
                async with conn.transaction():
                    await assets.insert_equipment(conn, tenant_id, equipment_id, values)
            except asyncpg.UniqueViolationError as exc:
                raise _unique_violation(exc, "equipment", equipment_id) from exc
        await assets.set_equipment_wells(conn, tenant_id, equipment_id, body.well_ids)
        await assets.replace_sensors(conn, tenant_id, equipment_id, _sensor_rows(body.sensors))
        equipment = await _live_equipment(conn, tenant_id, equipment_id)
        await uow.record(action="create", entity_type="equipment", entity_id=equipment_id,
                         new=equipment)
        uow.notify_actors("registry", *(["silences"] if body.status == "maintenance" else []))
    return equipment


async def update_equipment(services: Services, audit: AuditContext, equipment_id: str, body: EquipmentUpdate,
                           ) -> dict[str, Any]:
    tenant_id, changes = audit.tenant_id, body.changes()
    well_ids, sensors = changes.pop("well_ids", None), changes.pop("sensors", None)
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        row = await _locked_equipment(conn, tenant_id, equipment_id)
        old = await _live_equipment(conn, tenant_id, equipment_id)
        if well_ids is None and sensors is None and not changes:
            return old
        if well_ids is not None:
            await _check_wells(conn, tenant_id, well_ids)
            await assets.set_equipment_wells(conn, tenant_id, equipment_id, well_ids)
        if sensors is not None:
            await assets.replace_sensors(conn, tenant_id, equipment_id, _sensor_rows(body.sensors or []))
        if "status" in changes and changes["status"] != row["status"]:
            changes["status_before_maintenance"] = None  # set by hand: a finished job restores nothing
        if changes:
            await assets.update_equipment(conn, tenant_id, equipment_id, changes)
        equipment = await _live_equipment(conn, tenant_id, equipment_id)
        before, after = _diff(old, equipment)
        await uow.record(action="update", entity_type="equipment", entity_id=equipment_id,
                         old=before, new=after)
        uow.notify_actors("registry", *(["silences"] if "status" in after else []))
    return equipment


async def delete_equipment(services: Services, audit: AuditContext, equipment_id: str) -> None:
    tenant_id = audit.tenant_id
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        await _locked_equipment(conn, tenant_id, equipment_id)
        old = await _live_equipment(conn, tenant_id, equipment_id)
        await assets.delete_equipment(conn, tenant_id, equipment_id)
        await uow.record(action="delete", entity_type="equipment", entity_id=equipment_id,
                         old=old, new={"status": "decommissioned", "deleted": True})
        uow.notify_actors("registry", "silences")


async def get_sensors(services: Services, tenant_id: str, equipment_id: str) -> list[dict[str, Any]]:
    async with services.tenant_tx(tenant_id) as conn:
        if not await assets.equipment_exists(conn, tenant_id, equipment_id):
            raise ApiError(404, f"equipment {equipment_id} not found")
        return await assets.list_sensors(conn, tenant_id, equipment_id)


async def put_sensors(services: Services, audit: AuditContext, equipment_id: str, sensors: list[SensorIn],
                      ) -> list[dict[str, Any]]:
    tenant_id = audit.tenant_id
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        await _locked_equipment(conn, tenant_id, equipment_id)
        old = await assets.list_sensors(conn, tenant_id, equipment_id)
        await assets.replace_sensors(conn, tenant_id, equipment_id, _sensor_rows(sensors))
        new = await assets.list_sensors(conn, tenant_id, equipment_id)
        await uow.record(action="replace_sensors", entity_type="equipment",
                         entity_id=equipment_id, old={"sensors": old}, new={"sensors": new})
        uow.notify_actors("registry")
    return new


# ---------------------------------------------------------------------- maintenance


def _open(started_at: datetime, ended_at: datetime | None, now: datetime) -> bool:
    """Holds the equipment's status: started, and no end given (not even a planned one)."""
    return ended_at is None and started_at <= now


async def _follow_jobs(conn: asyncpg.Connection, tenant_id: str, equipment: asyncpg.Record, *,
                       was_open: bool, is_open: bool) -> dict[str, str] | None:
    """The equipment's status after one of its jobs opened or closed (module docstring)."""
    status, before = equipment["status"], equipment["status_before_maintenance"]
    if is_open and not was_open and status in ("operational", "failed"):
        await assets.update_equipment(conn, tenant_id, equipment["id"],
                                      {"status": "maintenance", "status_before_maintenance": status})
        return {"from": status, "to": "maintenance"}
    if was_open and not is_open and status == "maintenance" and before is not None \
            and not await assets.has_open_job(conn, tenant_id, equipment["id"]):
        await assets.update_equipment(conn, tenant_id, equipment["id"],
                                      {"status": before, "status_before_maintenance": None})
        return {"from": "maintenance", "to": before}
    return None


async def list_maintenance(services: Services, tenant_id: str, equipment_id: str, q: ListQuery,
                           ) -> tuple[list[dict[str, Any]], int]:
    async with services.tenant_tx(tenant_id) as conn:
        if not await assets.equipment_exists(conn, tenant_id, equipment_id):
            raise ApiError(404, f"equipment {equipment_id} not found")
        return await fetch_page(conn, assets.MAINTENANCE, q, tenant_id,
                                extra_where=[("m.equipment_id = $1", [equipment_id])])


async def start_maintenance(services: Services, audit: AuditContext, principal: Principal, equipment_id: str,
                            body: MaintenanceCreate) -> dict[str, Any]:
    tenant_id, now = audit.tenant_id, datetime.now(UTC)
    started_at = body.started_at or now
    if body.ended_at is not None and body.ended_at < started_at:
        raise _error(422, "ended_at", "must not be before started_at")
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        equipment = await _locked_equipment(conn, tenant_id, equipment_id)
        if equipment["status"] == "decommissioned":
            raise _error(409, "equipment_id", f"equipment {equipment_id} is decommissioned")
        maintenance_id = await assets.insert_maintenance(
            conn, tenant_id, equipment_id, kind=body.kind, description=body.description, started_at=started_at,
            ended_at=body.ended_at, performed_by=body.performed_by, created_by=principal.actor)
        status = await _follow_jobs(conn, tenant_id, equipment, was_open=False,
                                    is_open=_open(started_at, body.ended_at, now))
        record = await _written_maintenance(conn, tenant_id, equipment_id, maintenance_id)
        await uow.record(action="create", entity_type="maintenance", entity_id=maintenance_id,
                         new={**record, "equipment_status": status})
        uow.notify_actors("silences", *(["registry"] if status else []))
    return record


async def update_maintenance(services: Services, audit: AuditContext, equipment_id: str, maintenance_id: str,
                             body: MaintenanceUpdate) -> dict[str, Any]:
    tenant_id, now, changes = audit.tenant_id, datetime.now(UTC), body.changes()
    version = changes.pop("version", None)
    async with tenant_work(services, tenant_id, audit) as uow:
        conn = uow.conn
        equipment = await _locked_equipment(conn, tenant_id, equipment_id)
        record = await assets.get_maintenance(conn, tenant_id, equipment_id, maintenance_id, for_update=True)
        if record is None:
            raise ApiError(404, f"maintenance record {maintenance_id} of equipment {equipment_id} not found")
        if version is not None and version != record["version"]:
            raise _error(409, "version", f"is {record['version']}, not {version}: reload the record and retry")
        started_at = changes.get("started_at", record["started_at"])
        ended_at = changes.get("ended_at", record["ended_at"])
        if ended_at is not None and ended_at < started_at:
            raise _error(422, "ended_at" if "ended_at" in changes else "started_at", "ended_at is before started_at")
        if not changes:
            return record
        await assets.update_maintenance(conn, tenant_id, maintenance_id, changes)
        status = await _follow_jobs(conn, tenant_id, equipment,
                                    was_open=_open(record["started_at"], record["ended_at"], now),
                                    is_open=_open(started_at, ended_at, now))
        new = await _written_maintenance(conn, tenant_id, equipment_id, maintenance_id)
        before, after = _diff(record, new)
        await uow.record(action="update", entity_type="maintenance", entity_id=maintenance_id,
                         old=before, new={**after, "equipment_status": status})
        uow.notify_actors("silences", *(["registry"] if status else []))
    return new


async def due_maintenance(services: Services, tenant_id: str, q: ListQuery, within_days: int,
                          ) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, assets.DUE_MAINTENANCE, q,
                             extra_where=[(assets.DUE_WITHIN_DAYS, [within_days])])


async def _written_maintenance(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                               maintenance_id: str) -> dict[str, Any]:
    """A maintenance record this transaction has just written (so it is there to read back)."""
    record = await assets.get_maintenance(conn, tenant_id, equipment_id, maintenance_id)
    if record is None:
        raise RuntimeError(f"maintenance {maintenance_id} not found in the transaction that wrote it")
    return record
