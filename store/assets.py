"""The asset registry's SQL: wells, equipment (with its wells and sensors), maintenance records, and the
registry as the actors read and extend it (`list_equipment`, `register_seen_equipment`).

The API's functions take a connection inside a tenant transaction (``store.db.tenant_tx``), the actors'
their tenant-bound pool; every statement filters on the tenant anyway. The list endpoints' resources are
described once here as :class:`~store.listing.ResourceSpec` and read through ``store.listing.fetch_page``;
single rows use the same column expressions, so a row reads the same in a list and alone.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schema.errors import InvalidInput
from store.db import Executor
from store.listing import FieldSpec, ResourceSpec

WELL_STATUSES = ("active", "inactive", "plugged_and_abandoned", "drilling")
EQUIPMENT_TYPES = ("pump_jack", "compressor", "separator", "tank_battery", "meter", "other")
EQUIPMENT_STATUSES = ("operational", "maintenance", "failed", "decommissioned")
MAINTENANCE_KINDS = ("preventive", "corrective", "inspection", "failure_repair")


def _no_dashes(text: str) -> str:
    return text.replace("-", "")


# ---------------------------------------------------------------- list specs

WELLS = ResourceSpec(
    name="wells", from_sql="wells w", tenant_column="w.tenant_id", deleted_column="w.deleted_at",
    default_sort="name",
    fields=(
        FieldSpec("id", "w.id"),
        # Stored as digits; a filter may be written with the dashes (42-501-20130).
        FieldSpec("api_number", "w.api_number", normalize=_no_dashes),
        FieldSpec("name", "w.name"),
        FieldSpec("lease", "w.lease"),
        FieldSpec("operator", "w.operator"),
        FieldSpec("field", "w.field"),
        FieldSpec("status", "w.status", "enum", enum=WELL_STATUSES),
        FieldSpec("latitude", "w.latitude", "float"),
        FieldSpec("longitude", "w.longitude", "float"),
        FieldSpec("spud_date", "w.spud_date", "date"),
        FieldSpec("metadata", "w.metadata", filterable=False, sortable=False),
        FieldSpec("equipment_ids", "ARRAY(SELECT ew.equipment_id FROM equipment_wells ew JOIN equipment e"
                  " ON e.tenant_id = ew.tenant_id AND e.id = ew.equipment_id WHERE ew.tenant_id = w.tenant_id"
                  " AND ew.well_id = w.id AND e.deleted_at IS NULL ORDER BY ew.equipment_id)",
                  filterable=False, sortable=False),
        FieldSpec("created_at", "w.created_at", "timestamp"),
        FieldSpec("updated_at", "w.updated_at", "timestamp"),
    ),
)

_SENSORS_JSON = (
    "coalesce((SELECT jsonb_agg(jsonb_build_object('name', s.name, 'unit', s.unit, 'min_value', s.min_value,"
    " 'max_value', s.max_value, 'expected_interval_seconds', s.expected_interval_seconds,"
    " 'created_at', s.created_at, 'updated_at', s.updated_at) ORDER BY s.name)"
    " FROM equipment_sensors s WHERE s.tenant_id = e.tenant_id AND s.equipment_id = e.id), '[]'::jsonb)"
)
EQUIPMENT = ResourceSpec(
    name="equipment", from_sql="equipment e", tenant_column="e.tenant_id", deleted_column="e.deleted_at",
    default_sort="id",
    fields=(
        FieldSpec("id", "e.id"),
        FieldSpec("name", "e.name"),
        FieldSpec("type", "e.type", "enum", enum=EQUIPMENT_TYPES),
        FieldSpec("status", "e.status", "enum", enum=EQUIPMENT_STATUSES),
        FieldSpec("serial", "e.serial"),
        FieldSpec("manufacturer", "e.manufacturer"),
        FieldSpec("install_date", "e.install_date", "date"),
        FieldSpec("maintenance_interval_days", "e.maintenance_interval_days", "int"),
        FieldSpec("anomaly_sensitivity", "e.anomaly_sensitivity", "enum", enum=("low", "medium", "high")),
        FieldSpec("well_ids", "ARRAY(SELECT ew.well_id FROM equipment_wells ew JOIN wells w"
                  " ON w.tenant_id = ew.tenant_id AND w.id = ew.well_id WHERE ew.tenant_id = e.tenant_id"
                  " AND ew.equipment_id = e.id AND w.deleted_at IS NULL ORDER BY ew.well_id)",
                  filterable=False, sortable=False),
        FieldSpec("sensors", _SENSORS_JSON, filterable=False, sortable=False),
        FieldSpec("metadata", "e.metadata", filterable=False, sortable=False),
        FieldSpec("created_at", "e.created_at", "timestamp"),
        FieldSpec("updated_at", "e.updated_at", "timestamp"),
    ),
)
# The equipment serving one well ($1): extra_where of a list over EQUIPMENT.
SERVES_WELL = ("EXISTS (SELECT 1 FROM equipment_wells ew WHERE ew.tenant_id = e.tenant_id"
               " AND ew.equipment_id = e.id AND ew.well_id = $1)")

# Started and not ended: the equipment's alerts are silenced (the alert pipeline reads the same).
_ACTIVE = "(m.started_at <= now() AND (m.ended_at IS NULL OR m.ended_at > now()))"
MAINTENANCE = ResourceSpec(
    name="maintenance", from_sql="maintenance_records m", tenant_column="m.tenant_id",
    deleted_column="m.deleted_at", default_sort="-started_at",
    fields=(
        FieldSpec("id", "m.id", "uuid"),
        FieldSpec("equipment_id", "m.equipment_id"),
        FieldSpec("kind", "m.kind", "enum", enum=MAINTENANCE_KINDS),
        FieldSpec("description", "m.description"),
        FieldSpec("started_at", "m.started_at", "timestamp"),
        FieldSpec("ended_at", "m.ended_at", "timestamp"),
        FieldSpec("performed_by", "m.performed_by"),
        FieldSpec("created_by", "m.created_by"),
        FieldSpec("source", "m.source", "enum", enum=("api", "sync")),
        FieldSpec("version", "m.version", "int"),
        FieldSpec("active", _ACTIVE, "bool"),
        FieldSpec("created_at", "m.created_at", "timestamp"),
        FieldSpec("updated_at", "m.updated_at", "timestamp"),
    ),
)

# Next preventive maintenance: the end of the last finished job (else the install date) plus
# the interval. Equipment without an interval, or with neither a finished job nor an install
# date, has no due date and is left out; so is decommissioned equipment.
_DUE_FROM = (
    "(SELECT d.*, d.due_at < now() AS overdue,"
    " round((extract(epoch FROM d.due_at - now()) / 86400)::numeric, 2)::float8 AS days_until_due"
    " FROM (SELECT e.tenant_id, e.id, e.name, e.type, e.status, e.maintenance_interval_days, e.install_date,"
    " lm.last_at AS last_maintenance_at,"
    " coalesce(lm.last_at, e.install_date::timestamp AT TIME ZONE 'UTC')"
    " + make_interval(days => e.maintenance_interval_days) AS due_at"
    " FROM equipment e LEFT JOIN LATERAL (SELECT max(m.ended_at) AS last_at FROM maintenance_records m"
    " WHERE m.tenant_id = e.tenant_id AND m.equipment_id = e.id AND m.deleted_at IS NULL"
    " AND m.ended_at IS NOT NULL AND m.ended_at <= now()) lm ON true"
    " WHERE e.deleted_at IS NULL AND e.status <> 'decommissioned' AND e.maintenance_interval_days IS NOT NULL) d"
    " WHERE d.due_at IS NOT NULL) due"
)
DUE_MAINTENANCE = ResourceSpec(
    name="due_maintenance", from_sql=_DUE_FROM, tenant_column="due.tenant_id", default_sort="due_at",
    fields=(
        FieldSpec("id", "due.id"),
        FieldSpec("name", "due.name"),
        FieldSpec("type", "due.type", "enum", enum=EQUIPMENT_TYPES),
        FieldSpec("status", "due.status", "enum", enum=EQUIPMENT_STATUSES),
        FieldSpec("maintenance_interval_days", "due.maintenance_interval_days", "int"),
        FieldSpec("install_date", "due.install_date", "date"),
        FieldSpec("last_maintenance_at", "due.last_maintenance_at", "timestamp"),
        FieldSpec("due_at", "due.due_at", "timestamp"),
        FieldSpec("overdue", "due.overdue", "bool"),
        FieldSpec("days_until_due", "due.days_until_due", "float"),
    ),
)
DUE_WITHIN_DAYS = "due.due_at <= now() + make_interval(days => $1)"

# A well's timeline: one row per maintenance job or alert of the equipment serving it, per
# production record of the well, per audit entry about the well. The outer filters
# (tenant, well) reach each branch of the UNION ALL, so each uses its own index.
_ACTIVITIES_FROM = (
    "(SELECT m.tenant_id, ew.well_id, 'maintenance:' || m.id::text AS id, 'maintenance' AS kind,"
    " m.started_at AS at, m.equipment_id,"
    " m.kind || ' maintenance' || CASE WHEN m.ended_at IS NULL THEN ' (in progress)' ELSE '' END"
    " || CASE WHEN m.description <> '' THEN ': ' || m.description ELSE '' END AS summary,"
    " jsonb_build_object('maintenance_id', m.id, 'kind', m.kind, 'started_at', m.started_at,"
    " 'ended_at', m.ended_at, 'performed_by', m.performed_by, 'version', m.version) AS details"
    " FROM maintenance_records m JOIN equipment_wells ew"
    " ON ew.tenant_id = m.tenant_id AND ew.equipment_id = m.equipment_id WHERE m.deleted_at IS NULL"
    " UNION ALL"
    " SELECT a.tenant_id, ew.well_id, 'alert:' || a.id::text, 'alert', a.opened_at, a.equipment_id,"
    " a.severity || ' alert: ' || a.message,"
    " jsonb_build_object('alert_id', a.id, 'rule_id', a.rule_id, 'state', a.state, 'severity', a.severity,"
    " 'acknowledged_at', a.acknowledged_at, 'resolved_at', a.resolved_at)"
    " FROM alerts a JOIN equipment_wells ew ON ew.tenant_id = a.tenant_id AND ew.equipment_id = a.equipment_id"
    " UNION ALL"
    " SELECT p.tenant_id, p.well_id, 'production:' || p.id::text, 'production',"
    " p.day::timestamp AT TIME ZONE 'UTC', NULL::text,"
    " 'production ' || p.day::text || ': ' || p.oil_bbl::text || ' bbl oil, ' || p.gas_mcf::text"
    " || ' mcf gas, ' || p.water_bbl::text || ' bbl water',"
    " jsonb_build_object('production_id', p.id, 'day', p.day, 'oil_bbl', p.oil_bbl, 'gas_mcf', p.gas_mcf,"
    " 'water_bbl', p.water_bbl, 'runtime_hours', p.runtime_hours, 'source', p.source,"
    " 'entered_at', p.created_at)"
    " FROM production_records p WHERE p.deleted_at IS NULL"
    " UNION ALL"
    " SELECT l.tenant_id, l.entity_id, 'audit:' || l.id::text, 'audit', l.at, NULL::text,"
    " l.action || ' well (' || l.actor_type || ' ' || l.actor_id || ')',"
    " jsonb_build_object('audit_id', l.id, 'action', l.action, 'actor_type', l.actor_type,"
    " 'actor_id', l.actor_id, 'request_id', l.request_id, 'old', l.old_values, 'new', l.new_values)"
    " FROM audit_log l WHERE l.entity_type = 'well') act"
)
ACTIVITIES = ResourceSpec(
    name="activities", from_sql=_ACTIVITIES_FROM, tenant_column="act.tenant_id", default_sort="-at",
    fields=(
        FieldSpec("id", "act.id"),
        FieldSpec("kind", "act.kind", "enum", enum=("maintenance", "alert", "production", "audit")),
        FieldSpec("at", "act.at", "timestamp"),
        FieldSpec("equipment_id", "act.equipment_id"),
        FieldSpec("summary", "act.summary"),
        FieldSpec("details", "act.details", filterable=False, sortable=False),
    ),
)
OF_WELL = "act.well_id = $1"


def _select(spec: ResourceSpec) -> str:
    return ", ".join(f'({f.column}) AS "{f.name}"' for f in spec.fields)


def _sets(changes: dict[str, Any], allowed: frozenset[str], first: int) -> str:
    """``a = $3, b = $4`` for column names of ours (``allowed``), never the caller's."""
    if not changes or not set(changes) <= allowed:
        raise ValueError(f"cannot update {sorted(set(changes) - allowed)}")
    return ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=first))


# ---------------------------------------------------------------- wells

WELL_COLUMNS = frozenset({"api_number", "name", "lease", "operator", "field", "status", "latitude", "longitude",
                          "spud_date", "metadata"})


async def get_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_select(WELLS)} FROM wells w"
                              f" WHERE w.tenant_id = $1 AND w.id = $2 AND w.deleted_at IS NULL", tenant_id, well_id)
    return dict(row) if row else None


async def lock_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> asyncpg.Record | None:
    """The live well's row, locked until the transaction ends."""
    return await conn.fetchrow("SELECT * FROM wells WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
                               " FOR UPDATE", tenant_id, well_id)


async def well_id_used(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> bool:
    """Whether a well, live or deleted, holds this id (ids are never reused)."""
    return bool(await conn.fetchval("SELECT 1 FROM wells WHERE tenant_id = $1 AND id = $2", tenant_id, well_id))


async def api_number_holder(conn: asyncpg.Connection, tenant_id: str, digits: str,
                            except_id: str | None = None) -> str | None:
    """The live well with this API number, other than ``except_id``."""
    return await conn.fetchval(
        "SELECT id FROM wells WHERE tenant_id = $1 AND api_number = $2 AND deleted_at IS NULL"
        " AND id IS DISTINCT FROM $3", tenant_id, digits, except_id)


async def insert_well(conn: asyncpg.Connection, tenant_id: str, well_id: str, values: dict[str, Any]) -> None:
    columns = [c for c in values if c in WELL_COLUMNS]
    placeholders = ", ".join(f"${i}" for i in range(3, len(columns) + 3))
    await conn.execute(
        f"INSERT INTO wells (tenant_id, id, {', '.join(columns)}) VALUES ($1, $2, {placeholders})",
        tenant_id, well_id, *(values[c] for c in columns))


async def update_well(conn: asyncpg.Connection, tenant_id: str, well_id: str, changes: dict[str, Any]) -> None:
    await conn.execute(
        f"UPDATE wells SET {_sets(changes, WELL_COLUMNS, 3)}, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL", tenant_id, well_id, *changes.values())


async def delete_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> None:
    await conn.execute("UPDATE wells SET deleted_at = now(), updated_at = now()"
                       " WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL", tenant_id, well_id)


async def live_equipment_of_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT ew.equipment_id FROM equipment_wells ew JOIN equipment e"
        " ON e.tenant_id = ew.tenant_id AND e.id = ew.equipment_id"
        " WHERE ew.tenant_id = $1 AND ew.well_id = $2 AND e.deleted_at IS NULL ORDER BY ew.equipment_id",
        tenant_id, well_id)
    return [r["equipment_id"] for r in rows]


async def detach_well(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> None:
    await conn.execute("DELETE FROM equipment_wells WHERE tenant_id = $1 AND well_id = $2", tenant_id, well_id)


async def live_well_ids(conn: asyncpg.Connection, tenant_id: str, well_ids: Sequence[str], *,
                        share_lock: bool = False) -> set[str]:
    """Which of these wells are live. A writer that attaches something to them (equipment, production records)
    takes ``share_lock``: a concurrent delete of the well then waits for the writer's commit."""
    rows = await conn.fetch("SELECT id FROM wells WHERE tenant_id = $1 AND id = ANY($2::text[]) AND deleted_at IS NULL"
                            + (" FOR SHARE" if share_lock else ""), tenant_id, list(set(well_ids)))
    return {r["id"] for r in rows}


# ---------------------------------------------------------------- equipment

EQUIPMENT_COLUMNS = frozenset({"name", "type", "status", "serial", "manufacturer", "install_date",
                               "maintenance_interval_days", "anomaly_sensitivity", "metadata",
                               "status_before_maintenance"})


async def get_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {_select(EQUIPMENT)} FROM equipment e"
                              f" WHERE e.tenant_id = $1 AND e.id = $2 AND e.deleted_at IS NULL",
                              tenant_id, equipment_id)
    return dict(row) if row else None


async def lock_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, *,
                         include_deleted: bool = False) -> asyncpg.Record | None:
    """The equipment's row (live, unless ``include_deleted``), locked until the transaction ends."""
    return await conn.fetchrow(
        "SELECT * FROM equipment WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL) FOR UPDATE",
        tenant_id, equipment_id, include_deleted)


async def insert_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                           values: dict[str, Any]) -> None:
    columns = [c for c in values if c in EQUIPMENT_COLUMNS]
    placeholders = ", ".join(f"${i}" for i in range(3, len(columns) + 3))
    await conn.execute(
        f"INSERT INTO equipment (tenant_id, id, {', '.join(columns)}) VALUES ($1, $2, {placeholders})",
        tenant_id, equipment_id, *(values[c] for c in columns))


async def revive_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                           values: dict[str, Any]) -> None:
    """A deleted equipment's row taken over by a new equipment with the same id."""
    fresh: dict[str, Any] = {c: None for c in ("serial", "manufacturer", "install_date", "maintenance_interval_days",
                               "anomaly_sensitivity", "status_before_maintenance")}
    fresh.update({"name": equipment_id, "type": "other", "status": "operational", "metadata": {}})
    fresh.update({c: v for c, v in values.items() if c in EQUIPMENT_COLUMNS})
    await conn.execute(
        f"UPDATE equipment SET {_sets(fresh, EQUIPMENT_COLUMNS, 3)}, dedicated = false, created_at = now(),"
        f" updated_at = now(), deleted_at = NULL WHERE tenant_id = $1 AND id = $2",
        tenant_id, equipment_id, *fresh.values())


async def update_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                           changes: dict[str, Any]) -> None:
    await conn.execute(
        f"UPDATE equipment SET {_sets(changes, EQUIPMENT_COLUMNS, 3)}, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2", tenant_id, equipment_id, *changes.values())


async def delete_equipment(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> None:
    """Soft delete: decommissioned and gone from the registry the actors load. Its well
    assignments stay, so the wells' timelines keep its history."""
    await conn.execute(
        "UPDATE equipment SET deleted_at = now(), status = 'decommissioned', status_before_maintenance = NULL,"
        " updated_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL", tenant_id, equipment_id)


async def set_equipment_wells(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                              well_ids: Sequence[str]) -> None:
    await conn.execute("DELETE FROM equipment_wells WHERE tenant_id = $1 AND equipment_id = $2"
                       " AND NOT (well_id = ANY($3))", tenant_id, equipment_id, list(well_ids))
    await conn.execute(
        "INSERT INTO equipment_wells (tenant_id, equipment_id, well_id) SELECT $1, $2, unnest($3::text[])"
        " ON CONFLICT DO NOTHING", tenant_id, equipment_id, list(well_ids))


async def list_sensors(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT name, unit, min_value, max_value, expected_interval_seconds, created_at, updated_at"
        " FROM equipment_sensors WHERE tenant_id = $1 AND equipment_id = $2 ORDER BY name", tenant_id, equipment_id)
    return [dict(r) for r in rows]


async def replace_sensors(conn: asyncpg.Connection, tenant_id: str, equipment_id: str,
                          sensors: Iterable[dict[str, Any]]) -> None:
    """The equipment's sensor list becomes ``sensors``; a sensor kept keeps its ``created_at``."""
    items = list(sensors)
    await conn.execute("DELETE FROM equipment_sensors WHERE tenant_id = $1 AND equipment_id = $2"
                       " AND NOT (name = ANY($3))", tenant_id, equipment_id, [s["name"] for s in items])
    await conn.executemany(
        "INSERT INTO equipment_sensors AS s (tenant_id, equipment_id, name, unit, min_value, max_value,"
        " expected_interval_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (tenant_id, equipment_id, name) DO UPDATE SET unit = EXCLUDED.unit,"
        " min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value,"
        " expected_interval_seconds = EXCLUDED.expected_interval_seconds, updated_at = now()"
        " WHERE (s.unit, s.min_value, s.max_value, s.expected_interval_seconds) IS DISTINCT FROM"
        " (EXCLUDED.unit, EXCLUDED.min_value, EXCLUDED.max_value, EXCLUDED.expected_interval_seconds)",
        [(tenant_id, equipment_id, s["name"], s["unit"], s["min_value"], s["max_value"],
          s["expected_interval_seconds"]) for s in items])


# ---------------------------------------------------------------- maintenance

MAINTENANCE_COLUMNS = frozenset({"kind", "description", "started_at", "ended_at", "performed_by"})


async def get_maintenance(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, maintenance_id: str,
                          *, for_update: bool = False) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_select(MAINTENANCE)} FROM maintenance_records m WHERE m.tenant_id = $1 AND m.equipment_id = $2"
        f" AND m.id = $3::uuid AND m.deleted_at IS NULL{' FOR UPDATE' if for_update else ''}",
        tenant_id, equipment_id, maintenance_id)
    return dict(row) if row else None


async def insert_maintenance(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, *, kind: str,
                             description: str, started_at: datetime, ended_at: datetime | None,
                             performed_by: str | None, created_by: str) -> str:
    return str(await conn.fetchval(
        "INSERT INTO maintenance_records (tenant_id, equipment_id, kind, description, started_at, ended_at,"
        " performed_by, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        tenant_id, equipment_id, kind, description, started_at, ended_at, performed_by, created_by))


async def update_maintenance(conn: asyncpg.Connection, tenant_id: str, maintenance_id: str,
                             changes: dict[str, Any]) -> None:
    await conn.execute(
        f"UPDATE maintenance_records SET {_sets(changes, MAINTENANCE_COLUMNS, 3)}, version = version + 1,"
        f" updated_at = now() WHERE tenant_id = $1 AND id = $2::uuid", tenant_id, maintenance_id, *changes.values())


async def has_open_job(conn: asyncpg.Connection, tenant_id: str, equipment_id: str) -> bool:
    """A job that has started and has no end yet (one with a planned end does not hold the status)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM maintenance_records WHERE tenant_id = $1 AND equipment_id = $2"
        " AND deleted_at IS NULL AND ended_at IS NULL AND started_at <= now())", tenant_id, equipment_id))


# ---------------------------------------------------------------- the registry the actors run


@dataclass(frozen=True)
class EquipmentInfo:
    """One live equipment as the actors place and model it."""

    equipment_id: str
    type: str
    status: str
    dedicated: bool
    anomaly_sensitivity: str | None = None  # None: the tenant's choice (see `tenant_sensitivity`)


async def upsert_equipment(
    pool: Executor, tenant_id: str, items: Iterable[tuple[str, str, str]], *, dedicated: bool = False
) -> None:
    """``items``: (equipment_id, type, name)."""
    await pool.executemany(
        "INSERT INTO equipment (tenant_id, id, type, name, dedicated) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET type = EXCLUDED.type, name = EXCLUDED.name,"
        " updated_at = now(), deleted_at = NULL",
        [(tenant_id, eid, etype, name, dedicated) for eid, etype, name in items],
    )


async def register_seen_equipment(pool: Executor, tenant_id: str, equipment_ids: Sequence[str]) -> None:
    """Equipment a feed reported before anyone registered it, as type ``other``. One that exists,
    deleted or not, is left alone: the API's details are not overwritten, a deleted one stays deleted."""
    await pool.execute(
        "INSERT INTO equipment (tenant_id, id, type, name) SELECT $1, e, 'other', e FROM unnest($2::text[]) AS e"
        " ON CONFLICT (tenant_id, id) DO NOTHING",
        tenant_id, list(equipment_ids),
    )


async def register_seen_sensors(pool: Executor, tenant_id: str, sensors: Sequence[tuple[str, str, str]]) -> None:
    """Sensors a feed declared (a Sparkplug birth): (equipment id, sensor, unit). A sensor already registered keeps
    its details (the API's, or an earlier birth's)."""
    await pool.executemany(
        "INSERT INTO equipment_sensors (tenant_id, equipment_id, name, unit) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id, equipment_id, name) DO NOTHING",
        [(tenant_id, e, s, u) for e, s, u in sensors])


async def list_equipment(pool: Executor, tenant_id: str) -> list[EquipmentInfo]:
    """Live equipment as the actors need it (the API lists through `EQUIPMENT` and `store.listing`)."""
    rows = await pool.fetch(
        "SELECT id, type, status, dedicated, anomaly_sensitivity FROM equipment"
        " WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id",
        tenant_id,
    )
    return [EquipmentInfo(r["id"], r["type"], r["status"], r["dedicated"], r["anomaly_sensitivity"]) for r in rows]


async def equipment_exists(pool: Executor, tenant_id: str, equipment_id: str) -> bool:
    """Whether a live equipment has this id: what a rule, a silence or a reading query may name."""
    return bool(await pool.fetchval(
        "SELECT 1 FROM equipment WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant_id, equipment_id,
    ))


async def check_equipment_named(conn: Executor, tenant_id: str, equipment_id: str | None) -> None:
    """A rule or silence that names an equipment (``equipment_id``) must name a live one: `InvalidInput`."""
    if equipment_id is not None and not await equipment_exists(conn, tenant_id, equipment_id):
        raise InvalidInput(f"unknown equipment {equipment_id}",
                           [{"field": "equipment_id", "message": "no such equipment in this tenant"}])
