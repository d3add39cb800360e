"""Daily production records: SQL, and the checks that need the database (wells, duplicates, today).

Every statement filters on the tenant; the caller runs them inside ``tenant_tx`` so row-level
security backs the filter. Problems with the input are raised as `InvalidInput` or `Conflict`
(``schema.errors``) naming the field (``records.3.day``, ``line 4.oil_bbl``, or just ``day``), which the API
turns into the error envelope.
"""

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from schema.csvcells import neutralise
from schema.errors import Conflict, InvalidInput
from schema.production import EXPORT_COLUMNS, NULLABLE_FIELDS, VALUE_FIELDS, ProductionCreate
from store.assets import live_well_ids
from store.listing import FieldSpec, ResourceSpec, csv_chunks

COLUMNS = ("id, well_id, day, oil_bbl, gas_mcf, water_bbl, runtime_hours, tubing_psi, casing_psi, line_psi,"
           " temperature_f, notes, source, version, created_by, created_at, updated_at")
ENTITY = "production_record"
MAX_DETAILS = 50
EXPORT_CHUNK_ROWS = 500

_FLOAT_FIELDS = ("oil_bbl", "gas_mcf", "water_bbl", "runtime_hours", "tubing_psi", "casing_psi", "line_psi",
                 "temperature_f")
PRODUCTION = ResourceSpec(
    name="production_records", from_sql="production_records", default_sort="-day", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("well_id", "well_id"),
        FieldSpec("day", "day", "date"),
        *(FieldSpec(name, name, "float") for name in _FLOAT_FIELDS),
        FieldSpec("notes", "notes", filterable=False, sortable=False),
        FieldSpec("source", "source", "enum", enum=("api", "import", "sync")),
        FieldSpec("version", "version", "int"),
        FieldSpec("created_by", "created_by"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)


Label = Callable[[int, str], str]


def batch_label(index: int, field: str) -> str:
    return f"records.{index}.{field}"


def single_label(index: int, field: str) -> str:
    return field


@dataclass(frozen=True)
class Checked:
    """Problems found in a list of records, by kind."""

    invalid: list[dict[str, str]]
    conflicts: list[dict[str, str]]


# ---------------------------------------------------------------- reads


async def tenant_today(conn: asyncpg.Connection, tenant_id: str) -> date:
    """Today's date in the tenant's time zone (tenant settings, UTC by default)."""
    return await conn.fetchval(
        "SELECT (now() AT TIME ZONE coalesce(settings->>'timezone', 'UTC'))::date FROM tenants WHERE id = $1",
        tenant_id)


async def get_record(conn: asyncpg.Connection, tenant_id: str, record_id: UUID, *,
                     for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM production_records WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL{lock}",
        tenant_id, record_id)


async def _existing_days(conn: asyncpg.Connection, tenant_id: str, keys: Sequence[tuple[str, date]],
                         exclude: UUID | None = None) -> set[tuple[str, date]]:
    rows = await conn.fetch(
        "SELECT p.well_id, p.day FROM production_records p"
        " JOIN unnest($2::text[], $3::date[]) AS k(well_id, day) ON k.well_id = p.well_id AND k.day = p.day"
        " WHERE p.tenant_id = $1 AND p.deleted_at IS NULL AND ($4::uuid IS NULL OR p.id <> $4)",
        tenant_id, [k[0] for k in keys], [k[1] for k in keys], exclude)
    return {(r["well_id"], r["day"]) for r in rows}


# ---------------------------------------------------------------- checks


async def check_records(conn: asyncpg.Connection, tenant_id: str, records: Sequence[ProductionCreate],
                        label: Label, *, exclude: UUID | None = None) -> None:
    """Raise unless every record may be stored: `InvalidInput` for bad input (a day in the future, an unknown
    well, the same well and day twice in the input), else `Conflict` when a record for that well and day is
    already stored."""
    today = await tenant_today(conn, tenant_id)
    wells = await live_well_ids(conn, tenant_id, [r.well_id for r in records], share_lock=True)
    invalid: list[dict[str, str]] = []
    first_seen: dict[tuple[str, date], int] = {}
    for i, r in enumerate(records):
        if r.day > today:
            invalid.append({"field": label(i, "day"),
                            "message": f"{r.day} is in the future (today is {today} in the tenant's time zone)"})
        if r.well_id not in wells:
            invalid.append({"field": label(i, "well_id"), "message": f"no well {r.well_id!r} in this tenant"})
        key = (r.well_id, r.day)
        if key in first_seen:
            invalid.append({"field": label(i, "day"), "message": f"well {r.well_id} already has {r.day} at "
                            f"{label(first_seen[key], 'day')}: one record per well and day"})
        else:
            first_seen[key] = i
    if invalid:
        raise InvalidInput(f"{len(invalid)} invalid field(s); nothing was stored" if len(records) > 1
                           else invalid[0]["message"], invalid[:MAX_DETAILS])
    stored = await _existing_days(conn, tenant_id, list(first_seen), exclude)
    conflicts = [{"field": label(i, "day"), "message": f"well {r.well_id} already has a record for {r.day}"}
                 for i, r in enumerate(records) if (r.well_id, r.day) in stored]
    if conflicts:
        raise Conflict(f"{len(conflicts)} record(s) duplicate a stored well and day; nothing was stored"
                       if len(records) > 1 else conflicts[0]["message"], conflicts[:MAX_DETAILS])


# ---------------------------------------------------------------- writes


async def insert_records(conn: asyncpg.Connection, tenant_id: str, records: Sequence[ProductionCreate], *,
                         created_by: str, source: str, label: Label) -> list[asyncpg.Record]:
    """Check and store records all or nothing; the stored rows in input order."""
    await check_records(conn, tenant_id, records, label)
    columns = ("well_id", "day", *VALUE_FIELDS)
    arrays = [[getattr(r, c) for r in records] for c in columns]
    types = ["text", "date", *("float8" for _ in _FLOAT_FIELDS), "text"]
    unnest = ", ".join(f"${i + 4}::{t}[]" for i, t in enumerate(types))
    try:
        rows = await conn.fetch(
            f"INSERT INTO production_records (tenant_id, created_by, source, {', '.join(columns)})"
            f" SELECT $1, $2, $3, {', '.join(columns)} FROM unnest({unnest}) AS u({', '.join(columns)})"
            f" RETURNING {COLUMNS}",
            tenant_id, created_by, source, *arrays)
    except asyncpg.UniqueViolationError as exc:  # a concurrent writer took the same well and day
        raise Conflict("a record for that well and day was stored meanwhile",
                       [{"field": label(0, "day") if len(records) == 1 else "records",
                         "message": "one record per well and day"}]) from exc
    by_key = {(r["well_id"], r["day"]): r for r in rows}
    return [by_key[(r.well_id, r.day)] for r in records]


async def update_record(conn: asyncpg.Connection, tenant_id: str, record_id: UUID, changes: dict[str, Any],
                        expected_version: int | None) -> tuple[asyncpg.Record, asyncpg.Record] | None:
    """Apply a partial update (version + 1): (the record before, after), the same row twice when nothing
    changes; None if there is no such live record."""
    current = await get_record(conn, tenant_id, record_id, for_update=True)
    if current is None:
        return None
    if expected_version is not None and expected_version != current["version"]:
        raise Conflict(f"record is at version {current['version']}, not {expected_version}",
                       [{"field": "version", "message": f"current version is {current['version']}"}])
    for name, value in changes.items():
        if value is None and name not in NULLABLE_FIELDS:
            raise InvalidInput(f"{name} cannot be null", [{"field": name, "message": "cannot be null"}])
    changed = {k: v for k, v in changes.items() if current[k] != v}
    if not changed:
        return current, current
    if "well_id" in changed or "day" in changed:
        merged = ProductionCreate(**{**{k: current[k] for k in ("well_id", "day", *VALUE_FIELDS)}, **changed})
        await check_records(conn, tenant_id, [merged], single_label, exclude=record_id)
    sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(changed))
    try:
        row = await conn.fetchrow(
            f"UPDATE production_records SET {sets}, version = version + 1, updated_at = now()"
            f" WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}",
            tenant_id, record_id, *changed.values())
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("a record for that well and day was stored meanwhile",
                       [{"field": "day", "message": "one record per well and day"}]) from exc
    return current, row


async def delete_record(conn: asyncpg.Connection, tenant_id: str, record_id: UUID) -> asyncpg.Record | None:
    """Soft delete (the well and day are free again): the record as it was; None if there is no live one."""
    return await conn.fetchrow(
        f"UPDATE production_records SET deleted_at = now(), version = version + 1, updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}",
        tenant_id, record_id)


# ---------------------------------------------------------------- reports


async def summary(conn: asyncpg.Connection, tenant_id: str, *, period: str, start: date, end: date,
                  well_id: str | None) -> list[asyncpg.Record]:
    """One row per period from ``start``'s period to ``end``'s, empty periods included; only days
    in [start, end] count, so the first and last periods may be partial."""
    return await conn.fetch(
        "WITH periods AS (SELECT p::date AS period_start FROM generate_series("
        "   date_trunc($2, $3::date::timestamp), date_trunc($2, $4::date::timestamp), ('1 ' || $2)::interval) AS p),"
        " sums AS (SELECT date_trunc($2, day::timestamp)::date AS period_start, sum(oil_bbl) AS oil_bbl,"
        "   sum(gas_mcf) AS gas_mcf, sum(water_bbl) AS water_bbl, avg(runtime_hours) AS avg_runtime_hours,"
        "   count(*) AS records, count(DISTINCT well_id) AS wells"
        "   FROM production_records WHERE tenant_id = $1 AND deleted_at IS NULL AND day >= $3 AND day <= $4"
        "   AND ($5::text IS NULL OR well_id = $5) GROUP BY 1)"
        " SELECT periods.period_start, $5::text AS well_id, coalesce(oil_bbl, 0) AS oil_bbl,"
        " coalesce(gas_mcf, 0) AS gas_mcf, coalesce(water_bbl, 0) AS water_bbl, avg_runtime_hours,"
        " coalesce(records, 0) AS records, coalesce(wells, 0) AS wells"
        " FROM periods LEFT JOIN sums USING (period_start) ORDER BY periods.period_start",
        tenant_id, period, start, end, well_id)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return neutralise(value)
    return value


async def export_csv(conn: asyncpg.Connection, tenant_id: str, *, well_id: str | None, start: date | None,
                     end: date | None) -> AsyncIterator[str]:
    """CSV text in chunks of :data:`EXPORT_CHUNK_ROWS` rows, read through a server-side cursor
    (the caller holds the transaction); the header comes first. Ordered by well and day."""
    rows = conn.cursor(
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM production_records WHERE tenant_id = $1 AND deleted_at IS NULL"
        " AND ($2::text IS NULL OR well_id = $2) AND ($3::date IS NULL OR day >= $3)"
        " AND ($4::date IS NULL OR day <= $4) ORDER BY well_id, day",
        tenant_id, well_id, start, end, prefetch=EXPORT_CHUNK_ROWS)
    async for chunk in csv_chunks(rows, EXPORT_COLUMNS, lambda row: [_csv_value(row[c]) for c in EXPORT_COLUMNS],
                                  chunk_rows=EXPORT_CHUNK_ROWS):
        yield chunk
