"""Emissions in PostgreSQL: the tenant's factor versions, a day's emission activity, a well's emitting equipment,
the calculation's records (superseded, never overwritten), thresholds and the alerts they open, and the
compliance reports (immutable: the database refuses an edit or a delete).

The numbers come from `models.emissions` (pure), as `store.sync` takes its merge from `models.sync`: the store
reads what a calculation needs, hands it over, and writes what comes back in the caller's transaction. Every
statement filters on the tenant; the caller runs them inside ``tenant_tx`` so row-level security backs the filter.
"""

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from models.emissions import (
    DEFAULT_FACTORS,
    DayActivity,
    Emission,
    EmissionFactor,
    FactorSet,
    Gap,
    WellEquipment,
    calculate_day,
    flare_from_telemetry,
    missing_activity,
)
from schema.errors import InvalidInput, NotFound
from store import alerts as alert_store
from store.assets import live_well_ids
from store.listing import FieldSpec, ResourceSpec

MAX_CALC_DAYS = 366
MAX_CALC_WELL_DAYS = 400_000
DAILY_LOOKBACK_DAYS = 7  # the daily job recalculates a week: late and corrected production records are caught
AMOUNT_TOLERANCE = 1e-9  # kg: a recalculation this close to the stored amount keeps the stored record
THRESHOLD_RULE_PREFIX = "emissions_threshold:"
THRESHOLD_EQUIPMENT_PREFIX = "esg-"
PROJECTION_DAYS = 30  # a rolling window's "current rate": the mean of its last 30 days

EMISSION_COLUMNS = ("id, well_id, day, source, gas, kg, co2e_kg, factors, inputs, calculated_at, calculated_by,"
                    " superseded_by, superseded_at")
EMISSIONS = ResourceSpec(
    name="emissions", from_sql="emissions", default_sort="-day", deleted_column="superseded_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("well_id", "well_id"),
        FieldSpec("day", "day", "date"),
        FieldSpec("source", "source", "enum", enum=("flaring", "venting", "combustion", "tank_flashing",
                                                    "pneumatic_devices", "fugitive_components")),
        FieldSpec("gas", "gas", "enum", enum=("CO2", "CH4", "N2O", "VOC")),
        FieldSpec("kg", "kg", "float"),
        FieldSpec("co2e_kg", "co2e_kg", "float"),
        FieldSpec("factors", "factors", filterable=False, sortable=False),
        FieldSpec("inputs", "inputs", filterable=False, sortable=False),
        FieldSpec("calculated_at", "calculated_at", "timestamp"),
        FieldSpec("calculated_by", "calculated_by"),
        FieldSpec("superseded_by", "superseded_by", "uuid"),
        FieldSpec("superseded_at", "superseded_at", "timestamp"),
    ),
)
FACTOR_COLUMNS = "id, key, version, source, gas, value, unit, citation, valid_from, valid_to, created_by, created_at"
THRESHOLD_COLUMNS = ("id, name, well_id, field, gas, period, limit_tonnes, version, created_by, created_at,"
                     " updated_at")
REPORT_META_COLUMNS = ("id, title, period_start, period_end, well_ids, factor_versions, totals, sha256, size_bytes,"
                       " supersedes, superseded_by, superseded_at, created_by, created_at")
REPORTS = ResourceSpec(
    name="emission_reports", from_sql="emission_reports", default_sort="-created_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("title", "title"),
        FieldSpec("period_start", "period_start", "date"),
        FieldSpec("period_end", "period_end", "date"),
        FieldSpec("well_ids", "well_ids", filterable=False, sortable=False),
        FieldSpec("factor_versions", "factor_versions", filterable=False, sortable=False),
        FieldSpec("totals", "totals", filterable=False, sortable=False),
        FieldSpec("sha256", "sha256"),
        FieldSpec("size_bytes", "size_bytes", "int"),
        FieldSpec("supersedes", "supersedes", "uuid"),
        FieldSpec("superseded_by", "superseded_by", "uuid"),
        FieldSpec("superseded_at", "superseded_at", "timestamp"),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
    ),
)


async def tenant_today(conn: asyncpg.Connection, tenant_id: str, now: datetime | None = None) -> date:
    """Today in the tenant's time zone at ``now`` (the database's clock when None)."""
    return await conn.fetchval(
        "SELECT (coalesce($2::timestamptz, now()) AT TIME ZONE coalesce(settings->>'timezone', 'UTC'))::date"
        " FROM tenants WHERE id = $1", tenant_id, now)


# ---------------------------------------------------------------- factors


def _factor(row: asyncpg.Record) -> EmissionFactor:
    return EmissionFactor(key=row["key"], source=row["source"], gas=row["gas"], value=row["value"], unit=row["unit"],
                          citation=row["citation"], valid_from=row["valid_from"], valid_to=row["valid_to"],
                          version=f"tenant:{row['version']}")


async def factor_versions(conn: asyncpg.Connection, tenant_id: str, key: str | None = None) -> list[asyncpg.Record]:
    """The tenant's factor versions (of one key), newest first."""
    return await conn.fetch(
        f"SELECT {FACTOR_COLUMNS} FROM emission_factors WHERE tenant_id = $1 AND ($2::text IS NULL OR key = $2)"
        " ORDER BY key, version DESC", tenant_id, key)


async def factor_set(conn: asyncpg.Connection, tenant_id: str) -> FactorSet:
    return FactorSet(DEFAULT_FACTORS, [_factor(r) for r in await factor_versions(conn, tenant_id)])


async def insert_factor_version(conn: asyncpg.Connection, tenant_id: str, *, key: str, source: str, gas: str | None,
                                value: float, unit: str, citation: str, valid_from: date, valid_to: date | None,
                                created_by: str) -> asyncpg.Record:
    """The key's next version (1 for its first); versions of one key are numbered one writer at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('emission_factors:' || $1 || ':' || $2))",
                       tenant_id, key)
    return await conn.fetchrow(
        f"INSERT INTO emission_factors (tenant_id, key, version, source, gas, value, unit, citation, valid_from,"
        f" valid_to, created_by) SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10"
        f" FROM emission_factors WHERE tenant_id = $1 AND key = $2 RETURNING {FACTOR_COLUMNS}",
        tenant_id, key, source, gas, value, unit, citation, valid_from, valid_to, created_by)


# ---------------------------------------------------------------- activity and equipment


async def upsert_activity(conn: asyncpg.Connection, tenant_id: str, records: Sequence[dict[str, Any]], *,
                          updated_by: str) -> list[asyncpg.Record]:
    """Store each well's day of flared, vented and fuel gas (a day already stored is replaced, version + 1);
    `InvalidInput` naming ``records.<i>.<field>`` for an unknown well or a day after today."""
    today = await tenant_today(conn, tenant_id)
    wells = await live_well_ids(conn, tenant_id, [r["well_id"] for r in records], share_lock=True)
    problems: list[dict[str, str]] = []
    seen: set[tuple[str, date]] = set()
    for i, r in enumerate(records):
        if r["well_id"] not in wells:
            problems.append({"field": f"records.{i}.well_id", "message": f"no well {r['well_id']!r} in this tenant"})
        if r["day"] > today:
            problems.append({"field": f"records.{i}.day", "message": f"{r['day']} is in the future (today is {today})"})
        if (r["well_id"], r["day"]) in seen:
            problems.append({"field": f"records.{i}.day", "message": "the same well and day twice"})
        seen.add((r["well_id"], r["day"]))
    if problems:
        raise InvalidInput(problems[0]["message"] if len(problems) == 1 else f"{len(problems)} invalid field(s)",
                           problems[:50])
    return await conn.fetch(
        "INSERT INTO emission_activity (tenant_id, well_id, day, flared_mcf, vented_mcf, fuel_gas_mcf, updated_by)"
        " SELECT $1, u.well_id, u.day, u.flared, u.vented, u.fuel, $7::text"
        " FROM unnest($2::text[], $3::date[], $4::float8[], $5::float8[], $6::float8[])"
        " AS u(well_id, day, flared, vented, fuel)"
        " ON CONFLICT (tenant_id, well_id, day) DO UPDATE SET flared_mcf = EXCLUDED.flared_mcf,"
        " vented_mcf = EXCLUDED.vented_mcf, fuel_gas_mcf = EXCLUDED.fuel_gas_mcf, updated_by = EXCLUDED.updated_by,"
        " version = emission_activity.version + 1, updated_at = now()"
        " RETURNING well_id, day, flared_mcf, vented_mcf, fuel_gas_mcf, version, updated_by, updated_at",
        tenant_id, [r["well_id"] for r in records], [r["day"] for r in records],
        [r.get("flared_mcf") for r in records], [r.get("vented_mcf") for r in records],
        [r.get("fuel_gas_mcf") for r in records], updated_by)


EQUIPMENT_COLUMNS = "well_id, pneumatic_devices, components, engine_fuel_mcf_per_hour, version, updated_by, updated_at"


async def get_equipment(conn: asyncpg.Connection, tenant_id: str, well_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {EQUIPMENT_COLUMNS} FROM emission_equipment WHERE tenant_id = $1"
                               " AND well_id = $2", tenant_id, well_id)


async def put_equipment(conn: asyncpg.Connection, tenant_id: str, well_id: str, *, pneumatic_devices: dict[str, int],
                        components: dict[str, int], engine_fuel_mcf_per_hour: float | None,
                        updated_by: str) -> tuple[asyncpg.Record | None, asyncpg.Record]:
    """Replace the well's emitting equipment; (before, after). `NotFound` for a well that is not live."""
    if not await live_well_ids(conn, tenant_id, [well_id], share_lock=True):
        raise NotFound(f"well {well_id} not found")
    before = await get_equipment(conn, tenant_id, well_id)
    after = await conn.fetchrow(
        f"INSERT INTO emission_equipment (tenant_id, well_id, pneumatic_devices, components,"
        f" engine_fuel_mcf_per_hour, updated_by) VALUES ($1, $2, $3, $4, $5, $6)"
        f" ON CONFLICT (tenant_id, well_id) DO UPDATE SET pneumatic_devices = EXCLUDED.pneumatic_devices,"
        f" components = EXCLUDED.components, engine_fuel_mcf_per_hour = EXCLUDED.engine_fuel_mcf_per_hour,"
        f" updated_by = EXCLUDED.updated_by, version = emission_equipment.version + 1, updated_at = now()"
        f" RETURNING {EQUIPMENT_COLUMNS}",
        tenant_id, well_id, pneumatic_devices, components, engine_fuel_mcf_per_hour, updated_by)
    return before, after


# ---------------------------------------------------------------- calculation


@dataclass
class Calculation:
    """What one calculation did: records inserted, superseded (by a new amount, or withdrawn: the day lost its
    production record) and kept as they were, the days that could not be computed and the sources missing
    their reported volume, and the alert events its thresholds committed (for the caller to publish)."""

    start: date
    end: date
    wells: list[str]
    inserted: int = 0
    superseded: int = 0
    unchanged: int = 0
    gaps: list[Gap] = field(default_factory=list)
    missing: list[Gap] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)


def check_period(start: date, end: date, today: date) -> None:
    """A calculation's period: ordered, at most a year, and not after today (tenant's zone)."""
    if start > end:
        raise InvalidInput.on("start", "start is after end")
    if end > today:
        raise InvalidInput.on("end", f"{end} is after today ({today} in the tenant's time zone)")
    if (end - start).days + 1 > MAX_CALC_DAYS:
        raise InvalidInput.on("start", f"at most {MAX_CALC_DAYS} days per calculation")


async def calculate(conn: asyncpg.Connection, tenant_id: str, *, start: date, end: date,
                    well_ids: Sequence[str] | None, actor: str, now: datetime) -> Calculation:
    """Compute the wells' (all live wells' when None) emissions of [start, end] and store what changed.

    Idempotent: a record whose amount and factor versions come out the same is kept; a different one is
    superseded by a new record; one whose source no longer emits that day (or whose day lost its production
    record) is superseded by nothing. A day without a production record is a gap, never zero. Then the
    tenant's thresholds are evaluated at ``end``.
    """
    wells = await _calculation_wells(conn, tenant_id, well_ids)
    days = (end - start).days + 1
    if len(wells) * days > MAX_CALC_WELL_DAYS:
        raise InvalidInput.on("start", f"{len(wells)} wells x {days} days is more than {MAX_CALC_WELL_DAYS} well-days;"
                              " narrow the period or the wells")
    result = Calculation(start=start, end=end, wells=wells)
    # One calculation of a tenant at a time: two would both supersede the same records.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('emissions:' || $1))", tenant_id)
    computed = await _compute(conn, tenant_id, result)
    await _store_changes(conn, tenant_id, result, computed, actor=actor, now=now)
    result.events = await evaluate_thresholds(conn, tenant_id, as_of=end, now=now)
    return result


async def _calculation_wells(conn: asyncpg.Connection, tenant_id: str, well_ids: Sequence[str] | None) -> list[str]:
    if well_ids is None:
        return [r["id"] for r in await conn.fetch(
            "SELECT id FROM wells WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id", tenant_id)]
    live = await live_well_ids(conn, tenant_id, well_ids)
    unknown = [w for w in well_ids if w not in live]
    if unknown:
        raise InvalidInput(f"no well {unknown[0]!r} in this tenant",
                           [{"field": f"well_ids.{well_ids.index(w)}", "message": f"no well {w!r} in this tenant"}
                            for w in unknown][:50])
    return sorted(set(well_ids))


Key = tuple[str, date, str, str]  # well, day, source, gas


async def _compute(conn: asyncpg.Connection, tenant_id: str, result: Calculation) -> dict[Key, Emission]:
    """Every well-day's emissions from its production record, activity and equipment; gaps and missing
    activity are noted on ``result``."""
    wells, start, end = result.wells, result.start, result.end
    factors = await factor_set(conn, tenant_id)
    production = {(r["well_id"], r["day"]): r for r in await conn.fetch(
        "SELECT well_id, day, oil_bbl, gas_mcf, runtime_hours FROM production_records WHERE tenant_id = $1"
        " AND well_id = ANY($2::text[]) AND day BETWEEN $3 AND $4 AND deleted_at IS NULL",
        tenant_id, wells, start, end)}
    activity = {(r["well_id"], r["day"]): r for r in await conn.fetch(
        "SELECT well_id, day, flared_mcf, vented_mcf, fuel_gas_mcf FROM emission_activity WHERE tenant_id = $1"
        " AND well_id = ANY($2::text[]) AND day BETWEEN $3 AND $4", tenant_id, wells, start, end)}
    equipment = {r["well_id"]: WellEquipment(dict(r["pneumatic_devices"]), dict(r["components"]),
                                             r["engine_fuel_mcf_per_hour"]) for r in await conn.fetch(
        "SELECT well_id, pneumatic_devices, components, engine_fuel_mcf_per_hour FROM emission_equipment"
        " WHERE tenant_id = $1 AND well_id = ANY($2::text[])", tenant_id, wells)}
    flare_meters = await _flare_telemetry(conn, tenant_id, wells, start, end)
    computed: dict[Key, Emission] = {}
    for well in wells:
        for offset in range((end - start).days + 1):
            day = start + timedelta(days=offset)
            p = production.get((well, day))
            if p is None:
                result.gaps.append(Gap(well, day, "no production record"))
                continue
            act = activity.get((well, day))
            flared, flare_hours = act["flared_mcf"] if act else None, None
            if flared is None and (well, day) in flare_meters:
                mean, flare_hours = flare_meters[(well, day)]
                flared = flare_from_telemetry(mean, flare_hours)
            a = DayActivity(well, day, p["oil_bbl"], p["gas_mcf"], p["runtime_hours"], flared,
                            act["vented_mcf"] if act else None, act["fuel_gas_mcf"] if act else None,
                            flare_hours)
            result.missing.extend(Gap(well, day, f"{name} not reported", name.removesuffix("_mcf"))
                                  for name in missing_activity(a))
            for e in calculate_day(a, equipment.get(well, WellEquipment()), factors):
                computed[(e.well_id, e.day, e.source, e.gas)] = e
    return computed


async def _flare_telemetry(conn: asyncpg.Connection, tenant_id: str, wells: Sequence[str], start: date,
                           end: date) -> dict[tuple[str, date], tuple[float, int]]:
    """(mean ``flow_mcfd``, hours with readings) per well and tenant-local day, of the flare meters: equipment
    whose metadata says ``"emission_source": "flare"`` and that serves exactly one well (a meter shared by
    several wells cannot say which well flared). Used for a day whose flared volume was not reported."""
    rows = await conn.fetch(
        "WITH zone AS (SELECT coalesce(settings->>'timezone', 'UTC') AS tz FROM tenants WHERE id = $1),"
        " meters AS (SELECT ew.equipment_id, min(ew.well_id) AS well_id FROM equipment_wells ew"
        "  JOIN equipment e ON e.tenant_id = ew.tenant_id AND e.id = ew.equipment_id"
        "  WHERE ew.tenant_id = $1 AND e.metadata->>'emission_source' = 'flare'"
        "  GROUP BY ew.equipment_id HAVING count(*) = 1)"
        " SELECT m.well_id, (r.ts AT TIME ZONE zone.tz)::date AS day, avg(r.value) AS mean_mcfd,"
        " count(DISTINCT date_trunc('hour', r.ts))::int AS hours"
        " FROM meters m CROSS JOIN zone JOIN readings r ON r.tenant_id = $1 AND r.equipment_id = m.equipment_id"
        " AND r.sensor = 'flow_mcfd' AND r.ts >= ($3::date::timestamp AT TIME ZONE zone.tz)"
        " AND r.ts < (($4::date + 1)::timestamp AT TIME ZONE zone.tz)"
        " WHERE m.well_id = ANY($2::text[]) GROUP BY 1, 2", tenant_id, list(wells), start, end)
    return {(r["well_id"], r["day"]): (max(r["mean_mcfd"], 0.0), r["hours"]) for r in rows}


async def _store_changes(conn: asyncpg.Connection, tenant_id: str, result: Calculation,
                         computed: dict[Key, Emission], *, actor: str, now: datetime) -> None:
    """Keep what came out the same, supersede what changed or went away, insert what is new."""
    stored = {(r["well_id"], r["day"], r["source"], r["gas"]): r for r in await conn.fetch(
        "SELECT id, well_id, day, source, gas, kg, factors FROM emissions WHERE tenant_id = $1"
        " AND well_id = ANY($2::text[]) AND day BETWEEN $3 AND $4 AND superseded_at IS NULL",
        tenant_id, result.wells, result.start, result.end)}
    new: list[tuple[uuid.UUID, Emission]] = []
    superseded: list[tuple[uuid.UUID, uuid.UUID | None]] = []
    for key, e in computed.items():
        old = stored.get(key)
        if old is not None and abs(old["kg"] - e.kg) <= AMOUNT_TOLERANCE \
                and list(old["factors"]) == [f.as_dict() for f in e.factors]:
            result.unchanged += 1
            continue
        new_id = uuid.uuid4()
        new.append((new_id, e))
        if old is not None:
            superseded.append((old["id"], new_id))
    superseded.extend((r["id"], None) for key, r in stored.items() if key not in computed)
    if superseded:  # first: the live index allows one live record per well, day, source and gas
        await conn.execute(
            "UPDATE emissions e SET superseded_by = u.new_id, superseded_at = $2 FROM unnest($3::uuid[], $4::uuid[])"
            " AS u(old_id, new_id) WHERE e.tenant_id = $1 AND e.id = u.old_id",
            tenant_id, now, [s[0] for s in superseded], [s[1] for s in superseded])
    if new:  # one statement over arrays: a tenant's first calculation can insert hundreds of thousands of rows
        await conn.execute(
            "INSERT INTO emissions (tenant_id, id, well_id, day, source, gas, kg, co2e_kg, factors, inputs,"
            " calculated_at, calculated_by) SELECT $1, u.id, u.well_id, u.day, u.source, u.gas, u.kg, u.co2e_kg,"
            " u.factors::jsonb, u.inputs::jsonb, $11, $12 FROM unnest($2::uuid[], $3::text[], $4::date[], $5::text[],"
            " $6::text[], $7::float8[], $8::float8[], $9::text[], $10::text[]) AS u(id, well_id, day, source, gas, kg,"
            " co2e_kg, factors, inputs)", tenant_id, *_columns(new), now, actor)
    result.inserted, result.superseded = len(new), len(superseded)


def _columns(new: list[tuple[uuid.UUID, Emission]]) -> list[list[Any]]:
    return [[i for i, _ in new], [e.well_id for _, e in new], [e.day for _, e in new], [e.source for _, e in new],
            [e.gas for _, e in new], [e.kg for _, e in new], [e.co2e_kg for _, e in new],
            [json.dumps([f.as_dict() for f in e.factors]) for _, e in new],
            [json.dumps(dict(e.inputs)) for _, e in new]]


async def daily_run(pool: asyncpg.Pool, tenant_id: str, *, now: datetime) -> Calculation | None:
    """The daily job: once per tenant and day (a ledger row makes it so), recalculate the week up to yesterday in
    the tenant's zone, so a production record entered or corrected late is caught; None when it already ran."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('wellpulse.tenant_id', $1, true)", tenant_id)
        yesterday = await tenant_today(conn, tenant_id, now) - timedelta(days=1)
        if await conn.fetchval("INSERT INTO emission_daily_runs (tenant_id, day) VALUES ($1, $2)"
                               " ON CONFLICT DO NOTHING RETURNING day", tenant_id, yesterday) is None:
            return None
        return await calculate(conn, tenant_id, start=yesterday - timedelta(days=DAILY_LOOKBACK_DAYS - 1),
                               end=yesterday, well_ids=None, actor="system:daily", now=now)


# ---------------------------------------------------------------- summary


_PERIOD_TRUNC = {"day": "day", "week": "week", "month": "month", "year": "year"}
_GROUP_COLUMN = {"well": "well_id", "source": "source", "gas": "gas",
                 # a well without a field is its own facility
                 "field": "coalesce((SELECT w.field FROM wells w WHERE w.tenant_id = emissions.tenant_id"
                          " AND w.id = emissions.well_id), emissions.well_id)"}


async def summary(conn: asyncpg.Connection, tenant_id: str, *, period: str, group_by: str, start: date, end: date,
                  well_id: str | None) -> list[dict[str, Any]]:
    """Sums of the live records per period and group: kg of each gas, kg CO2e, the period's BOE (the group's
    well's when grouped by well, else all wells' in scope) and the intensity, kg CO2e per BOE (None without
    production)."""
    trunc, column = _PERIOD_TRUNC[period], _GROUP_COLUMN[group_by]
    rows = await conn.fetch(
        f"SELECT date_trunc('{trunc}', day)::date AS period_start, {column} AS key,"
        " sum(co2e_kg) AS co2e_kg, coalesce(sum(kg) FILTER (WHERE gas = 'CO2'), 0) AS co2_kg,"
        " coalesce(sum(kg) FILTER (WHERE gas = 'CH4'), 0) AS ch4_kg,"
        " coalesce(sum(kg) FILTER (WHERE gas = 'N2O'), 0) AS n2o_kg,"
        " coalesce(sum(kg) FILTER (WHERE gas = 'VOC'), 0) AS voc_kg"
        " FROM emissions WHERE tenant_id = $1 AND superseded_at IS NULL AND day BETWEEN $2 AND $3"
        " AND ($4::text IS NULL OR well_id = $4) GROUP BY 1, 2 ORDER BY 1, 2", tenant_id, start, end, well_id)
    production = await conn.fetch(
        f"SELECT date_trunc('{trunc}', day)::date AS period_start, well_id, sum(oil_bbl + gas_mcf / 6.0) AS boe"
        " FROM production_records WHERE tenant_id = $1 AND deleted_at IS NULL AND day BETWEEN $2 AND $3"
        " AND ($4::text IS NULL OR well_id = $4) GROUP BY 1, 2", tenant_id, start, end, well_id)
    facility: dict[str, str] = {}
    if group_by == "field":  # each well's facility: its field, or itself without one
        facility = {r["id"]: r["field"] or r["id"] for r in await conn.fetch(
            "SELECT id, field FROM wells WHERE tenant_id = $1", tenant_id)}
    boe_by_key: dict[tuple[date, str], float] = {}
    boe_total: dict[date, float] = {}
    for r in production:
        key = facility.get(r["well_id"], r["well_id"]) if group_by == "field" else r["well_id"]
        boe_by_key[(r["period_start"], key)] = boe_by_key.get((r["period_start"], key), 0.0) + r["boe"]
        boe_total[r["period_start"]] = boe_total.get(r["period_start"], 0.0) + r["boe"]
    out = []
    for r in rows:
        boe = boe_by_key.get((r["period_start"], r["key"]), 0.0) if group_by in ("well", "field") \
            else boe_total.get(r["period_start"], 0.0)
        out.append({**dict(r), "boe": boe, "kg_co2e_per_boe": r["co2e_kg"] / boe if boe > 0 else None})
    return out


async def export_rows(conn: asyncpg.Connection, tenant_id: str, *, start: date | None, end: date | None,
                      well_id: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, well_id, day, source, gas, kg, co2e_kg, factors, calculated_at FROM emissions"
        " WHERE tenant_id = $1 AND superseded_at IS NULL AND ($2::date IS NULL OR day >= $2)"
        " AND ($3::date IS NULL OR day <= $3) AND ($4::text IS NULL OR well_id = $4)"
        " ORDER BY well_id, day, source, gas", tenant_id, start, end, well_id)


# ---------------------------------------------------------------- thresholds


async def list_thresholds(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {THRESHOLD_COLUMNS} FROM emission_thresholds WHERE tenant_id = $1"
                            " AND deleted_at IS NULL ORDER BY created_at, id", tenant_id)


async def get_threshold(conn: asyncpg.Connection, tenant_id: str, threshold_id: uuid.UUID, *,
                        lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {THRESHOLD_COLUMNS} FROM emission_thresholds WHERE tenant_id = $1 AND id = $2"
                               " AND deleted_at IS NULL" + (" FOR UPDATE" if lock else ""), tenant_id, threshold_id)


async def insert_threshold(conn: asyncpg.Connection, tenant_id: str, values: dict[str, Any],
                           created_by: str) -> asyncpg.Record:
    await _check_scope(conn, tenant_id, values.get("well_id"), values.get("field"))
    return await conn.fetchrow(
        f"INSERT INTO emission_thresholds (tenant_id, name, well_id, field, gas, period, limit_tonnes, created_by)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {THRESHOLD_COLUMNS}",
        tenant_id, values["name"], values.get("well_id"), values.get("field"), values["gas"], values["period"],
        values["limit_tonnes"], created_by)


async def _check_scope(conn: asyncpg.Connection, tenant_id: str, well_id: str | None, field: str | None) -> None:
    """A threshold covers one well, the wells of one field (a facility), or (neither) the tenant."""
    if well_id is not None and field is not None:
        raise InvalidInput.on("field", "a threshold covers a well or a field, not both")
    if well_id is not None and not await live_well_ids(conn, tenant_id, [well_id]):
        raise InvalidInput.on("well_id", f"no well {well_id!r} in this tenant")
    if field is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM wells WHERE tenant_id = $1 AND field = $2 AND deleted_at IS NULL)",
            tenant_id, field):
        raise InvalidInput.on("field", f"no well of this tenant is in field {field!r}")


async def update_threshold(conn: asyncpg.Connection, tenant_id: str, threshold_id: uuid.UUID,
                           changes: dict[str, Any]) -> tuple[asyncpg.Record, asyncpg.Record] | None:
    current = await get_threshold(conn, tenant_id, threshold_id, lock=True)
    if current is None:
        return None
    merged = {**dict(current), **changes}
    # Naming a new scope replaces the old one: a well given clears the field, and the other way round.
    if changes.get("well_id") is not None and "field" not in changes:
        merged["field"] = None
    if changes.get("field") is not None and "well_id" not in changes:
        merged["well_id"] = None
    await _check_scope(conn, tenant_id, merged["well_id"] if "well_id" in changes else None,
                       merged["field"] if "field" in changes else None)
    row = await conn.fetchrow(
        f"UPDATE emission_thresholds SET name = $3, well_id = $4, field = $5, gas = $6, period = $7,"
        f" limit_tonnes = $8, version = version + 1, updated_at = now() WHERE tenant_id = $1 AND id = $2"
        f" RETURNING {THRESHOLD_COLUMNS}",
        tenant_id, threshold_id, merged["name"], merged["well_id"], merged["field"], merged["gas"], merged["period"],
        merged["limit_tonnes"])
    return current, row


async def delete_threshold(conn: asyncpg.Connection, tenant_id: str, threshold_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE emission_thresholds SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        f" RETURNING {THRESHOLD_COLUMNS}", tenant_id, threshold_id)


def period_window(period: str, as_of: date) -> tuple[date, date, date]:
    """(first day, ``as_of``, last day) of a threshold's period containing ``as_of``.

    >>> period_window("calendar_month", date(2026, 2, 10))
    (datetime.date(2026, 2, 1), datetime.date(2026, 2, 10), datetime.date(2026, 2, 28))
    >>> period_window("rolling_12_months", date(2026, 2, 10))[0]
    datetime.date(2025, 2, 11)
    """
    if period == "calendar_month":
        first = as_of.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return first, as_of, last
    if period == "calendar_year":
        return as_of.replace(month=1, day=1), as_of, as_of.replace(month=12, day=31)
    try:
        year_before = as_of.replace(year=as_of.year - 1)
    except ValueError:  # 29 February
        year_before = as_of.replace(year=as_of.year - 1, day=28)
    return year_before + timedelta(days=1), as_of, as_of


def threshold_status(*, period: str, limit_tonnes: float, as_of: date, actual_tonnes: float,
                     recent_tonnes: float) -> dict[str, Any]:
    """Actual and projected use of a limit at ``as_of``. Projected "at the current rate": a calendar period's
    mean daily rate so far carried to its end; a rolling window's mean of the last `PROJECTION_DAYS` days over a
    year (``recent_tonnes`` is their sum).

    >>> s = threshold_status(period="calendar_month", limit_tonnes=10.0, as_of=date(2026, 4, 10),
    ...                      actual_tonnes=3.0, recent_tonnes=0.0)
    >>> s["actual_pct"], s["projected_tonnes"], s["projected_pct"]
    (30.0, 9.0, 90.0)
    """
    first, _, last = period_window(period, as_of)
    if period == "rolling_12_months":
        projected = recent_tonnes / PROJECTION_DAYS * ((last - first).days + 1)
    else:
        elapsed = (as_of - first).days + 1
        projected = actual_tonnes / elapsed * ((last - first).days + 1)
    return {"period_start": first, "period_end": last, "as_of": as_of, "limit_tonnes": limit_tonnes,
            "actual_tonnes": actual_tonnes, "actual_pct": round(100.0 * actual_tonnes / limit_tonnes, 3),
            "projected_tonnes": projected, "projected_pct": round(100.0 * projected / limit_tonnes, 3)}


# Alert severities of each level and basis: reaching the limit is critical, a projection a warning at most.
_LEVEL_SEVERITY = {(100, "actual"): "critical", (100, "projected"): "warning", (80, "actual"): "warning",
                   (80, "projected"): "info"}


def threshold_alert_key(threshold: Any) -> tuple[str, str]:
    """(equipment_id, rule prefix) of a threshold's alerts.

    Alerts are keyed by (equipment_id, rule_id), and the equipment id is part of the ALERTS subject, so it must
    be a valid equipment id (``schema.ids``). A threshold is a well's or the tenant's, not equipment's: its
    alerts stand on the pseudo-equipment ``esg-<well>`` (``esg-`` and a hash for a well id too long for that) or
    ``esg-tenant``, with one rule per threshold and level, ``emissions_threshold:<id>:80`` and ``:100``. The
    rule id is what keeps them apart from a real equipment's alerts (no equipment rule has that id), so even an
    equipment that happened to be called ``esg-W-1`` would share no alert with them.

    A field's (a facility's) threshold stands on ``esg-field-`` and a hash of the field's name (names are free
    text, equipment ids are not).

    >>> threshold_alert_key({"well_id": "W-1", "id": "t1"})
    ('esg-W-1', 'emissions_threshold:t1')
    >>> threshold_alert_key({"well_id": None, "field": "North Pad", "id": "t2"})[0]
    'esg-field-178c5bc8b719ba84d3aa8ed7'
    """
    field = threshold.get("field")
    if field is not None:
        scope = "field-" + hashlib.sha256(field.encode()).hexdigest()[:24]
    else:
        scope = threshold["well_id"] or "tenant"
    if len(THRESHOLD_EQUIPMENT_PREFIX) + len(scope) > 128:
        scope = hashlib.sha256(scope.encode()).hexdigest()[:32]
    return f"{THRESHOLD_EQUIPMENT_PREFIX}{scope}", f"{THRESHOLD_RULE_PREFIX}{threshold['id']}"


async def threshold_statuses(conn: asyncpg.Connection, tenant_id: str, *, as_of: date,
                             thresholds: Sequence[asyncpg.Record] | None = None) -> list[dict[str, Any]]:
    """Each live threshold with its status at ``as_of`` (`threshold_status`)."""
    out = []
    for t in thresholds if thresholds is not None else await list_thresholds(conn, tenant_id):
        first, _, _ = period_window(t["period"], as_of)
        amount = "co2e_kg" if t["gas"] == "CO2e" else "kg"
        sums = await conn.fetchrow(
            f"SELECT coalesce(sum({amount}), 0) / 1000.0 AS actual,"
            f" coalesce(sum({amount}) FILTER (WHERE day > $4::date - $6::int), 0) / 1000.0 AS recent"
            " FROM emissions WHERE tenant_id = $1 AND superseded_at IS NULL AND day BETWEEN $3 AND $4"
            " AND ($2::text IS NULL OR well_id = $2) AND ($5::text = 'CO2e' OR gas = $5)"
            " AND ($7::text IS NULL OR well_id IN (SELECT id FROM wells WHERE tenant_id = $1 AND field = $7))",
            tenant_id, t["well_id"], first, as_of, t["gas"], PROJECTION_DAYS, t["field"])
        status = threshold_status(period=t["period"], limit_tonnes=t["limit_tonnes"], as_of=as_of,
                                  actual_tonnes=sums["actual"], recent_tonnes=sums["recent"])
        out.append({"threshold": dict(t), **status})
    return out


async def evaluate_thresholds(conn: asyncpg.Connection, tenant_id: str, *, as_of: date,
                              now: datetime) -> list[Any]:
    """Open, update or clear each threshold's 80 % and 100 % alerts at ``as_of`` through the alert lifecycle
    (`store.alerts.persist_changes`, in the caller's transaction); returns the events, which the caller publishes
    after the commit.

    The alerts are latched: a crossing stays open ("cleared, awaiting acknowledgement") after the usage falls
    back below the level (a new calendar period, a rolling window moving on, a recalculation of another
    period) until someone acknowledges it, so an exceedance is never missed because it was short. The daily job
    and threshold changes evaluate at yesterday; an explicit calculation at the end of its period, so a backfill
    that finds a past exceedance raises it.
    """
    changes: list[alert_store.AlarmChange] = []
    for s in await threshold_statuses(conn, tenant_id, as_of=as_of):
        t = s["threshold"]
        equipment_id, rule_prefix = threshold_alert_key(t)
        scope = f"well {t['well_id']}" if t["well_id"] else f"field {t['field']}" if t["field"] else "the tenant"
        for level in (80, 100):
            basis = "actual" if s["actual_pct"] >= level else "projected" if s["projected_pct"] >= level else None
            details = {"threshold_id": str(t["id"]), "level_pct": level, "basis": basis, "gas": t["gas"],
                       "period": t["period"], "limit_tonnes": t["limit_tonnes"],
                       "actual_tonnes": round(s["actual_tonnes"], 6), "actual_pct": s["actual_pct"],
                       "projected_tonnes": round(s["projected_tonnes"], 6), "projected_pct": s["projected_pct"],
                       "as_of": as_of.isoformat(), "period_end": s["period_end"].isoformat()}
            rule_id = f"{rule_prefix}:{level}"
            if basis is None:
                changes.append(alert_store.AlarmChange("resolved", equipment_id, rule_id, "info", now,
                                                       f"{t['name']}: below {level} % of the limit", details))
                continue
            pct = s["actual_pct"] if basis == "actual" else s["projected_pct"]
            message = (f"{t['name']}: {t['gas']} of {scope} {'at' if basis == 'actual' else 'projected to reach'}"
                       f" {pct:.1f} % of {t['limit_tonnes']:g} t ({t['period'].replace('_', ' ')}, as of {as_of})")
            changes.append(alert_store.AlarmChange("opened", equipment_id, rule_id, _LEVEL_SEVERITY[(level, basis)],
                                                   now, message, details, latched=True))
    return await alert_store.persist_changes(conn, tenant_id, changes)


# ---------------------------------------------------------------- reports


async def insert_report(conn: asyncpg.Connection, tenant_id: str, *, report_id: uuid.UUID, title: str,
                        period_start: date, period_end: date, well_ids: Sequence[str],
                        factor_versions: list[dict[str, Any]], totals: dict[str, Any], content: bytes, sha256: str,
                        supersedes: uuid.UUID | None, created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO emission_reports (tenant_id, id, title, period_start, period_end, well_ids, factor_versions,"
        f" totals, content, sha256, size_bytes, supersedes, created_by)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {REPORT_META_COLUMNS}",
        tenant_id, report_id, title, period_start, period_end, list(well_ids), factor_versions, totals, content,
        sha256, len(content), supersedes, created_by)


async def get_report(conn: asyncpg.Connection, tenant_id: str, report_id: uuid.UUID, *,
                     lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {REPORT_META_COLUMNS} FROM emission_reports WHERE tenant_id = $1 AND id = $2"
                               + (" FOR UPDATE" if lock else ""), tenant_id, report_id)


async def report_content(conn: asyncpg.Connection, tenant_id: str, report_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT content, sha256, title FROM emission_reports WHERE tenant_id = $1 AND id = $2",
                               tenant_id, report_id)


async def mark_superseded(conn: asyncpg.Connection, tenant_id: str, report_id: uuid.UUID,
                          by: uuid.UUID) -> asyncpg.Record:
    """The one change a report takes (the database's trigger allows nothing else)."""
    return await conn.fetchrow(
        f"UPDATE emission_reports SET superseded_by = $3, superseded_at = now() WHERE tenant_id = $1 AND id = $2"
        f" RETURNING {REPORT_META_COLUMNS}", tenant_id, report_id, by)


async def report_data(conn: asyncpg.Connection, tenant_id: str, *, start: date, end: date,
                      well_ids: Sequence[str]) -> dict[str, Any]:
    """What a report shows: totals per gas, per well and per month, BOE and intensity, the factor versions the
    records used, and the days without production (gaps)."""
    by_gas = await conn.fetch(
        "SELECT gas, sum(kg) AS kg, sum(co2e_kg) AS co2e_kg FROM emissions WHERE tenant_id = $1"
        " AND superseded_at IS NULL AND day BETWEEN $2 AND $3 AND well_id = ANY($4::text[]) GROUP BY gas ORDER BY gas",
        tenant_id, start, end, list(well_ids))
    by_well = await conn.fetch(
        "SELECT well_id, sum(co2e_kg) AS co2e_kg FROM emissions WHERE tenant_id = $1 AND superseded_at IS NULL"
        " AND day BETWEEN $2 AND $3 AND well_id = ANY($4::text[]) GROUP BY well_id ORDER BY well_id",
        tenant_id, start, end, list(well_ids))
    by_month = await conn.fetch(
        "SELECT date_trunc('month', day)::date AS month, sum(co2e_kg) AS co2e_kg FROM emissions WHERE tenant_id = $1"
        " AND superseded_at IS NULL AND day BETWEEN $2 AND $3 AND well_id = ANY($4::text[]) GROUP BY 1 ORDER BY 1",
        tenant_id, start, end, list(well_ids))
    factor_rows = await conn.fetch(
        "SELECT DISTINCT f->>'key' AS key, f->>'version' AS version, (f->>'value')::float8 AS value"
        " FROM emissions, jsonb_array_elements(factors) AS f WHERE tenant_id = $1 AND superseded_at IS NULL"
        " AND day BETWEEN $2 AND $3 AND well_id = ANY($4::text[]) ORDER BY 1, 2", tenant_id, start, end, list(well_ids))
    prod = await conn.fetchrow(
        "SELECT coalesce(sum(oil_bbl + gas_mcf / 6.0), 0) AS boe, count(*) AS days FROM production_records"
        " WHERE tenant_id = $1 AND deleted_at IS NULL AND day BETWEEN $2 AND $3 AND well_id = ANY($4::text[])",
        tenant_id, start, end, list(well_ids))
    co2e_total = sum(r["co2e_kg"] for r in by_gas)
    well_days = len(well_ids) * ((end - start).days + 1)
    return {
        "by_gas": [{"gas": r["gas"], "kg": r["kg"], "co2e_kg": r["co2e_kg"]} for r in by_gas],
        "by_well": [{"well_id": r["well_id"], "co2e_kg": r["co2e_kg"]} for r in by_well],
        "by_month": [{"month": r["month"].isoformat(), "co2e_kg": r["co2e_kg"]} for r in by_month],
        "co2e_kg": co2e_total, "boe": prod["boe"],
        "kg_co2e_per_boe": co2e_total / prod["boe"] if prod["boe"] > 0 else None,
        "gap_days": well_days - prod["days"],
        "factor_versions": [dict(r) for r in factor_rows],
    }
