"""The dashboards' SQL: production sums per period and group, per-well volumes and history, equipment health.

Read-only; every statement filters on the tenant (the caller runs it inside ``tenant_tx``, so row-level
security backs the filter). The SQL text is public (`SUMMARY_SQL` and the others) so that ``bench.analytics``
can time the same statements run bare.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

__all__ = ["EQUIPMENT_HEALTH_SQL", "GROUP_COLUMNS", "HISTORY_SQL", "SUMMARY_WORK_MEM", "WELL_TOTALS_SQL",
           "equipment_health", "production_summary", "summary_sql", "well_history", "well_totals"]

# group_by -> the SQL of the group's key (a fixed table: never built from the request's text).
GROUP_COLUMNS = {"tenant": "NULL::text", "well": "p.well_id", "field": "w.field"}
DOWN_DAY = "(p.runtime_hours = 0 OR (p.runtime_hours IS NULL AND p.oil_bbl = 0 AND p.gas_mcf = 0))"
PRODUCING_DAY = "(p.oil_bbl + p.gas_mcf > 0 AND p.runtime_hours IS DISTINCT FROM 0)"
BOE = "(p.oil_bbl + p.gas_mcf / 6.0)"


# A year of 1,000 wells is ~365,000 records grouped into ~13,000 (period, well) pairs; the planner cannot estimate
# that number for date_trunc of a parameter and, with the default 4 MB, sorts them all on disk instead of hashing.
# For this transaction only (SET LOCAL): each summary may use this much for its hash tables.
SUMMARY_WORK_MEM = "SET LOCAL work_mem = '64MB'"


def summary_sql(group_by: str) -> str:
    """Sums per (period, group) of [$3, $4] ($2 the period: day, week or month), a page ($5 limit, $6
    offset) in period then group order, each row with the total count of rows."""
    return _summary_body(group_by) + " ORDER BY 1, 2 NULLS FIRST LIMIT $5 OFFSET $6"


def _summary_body(group_by: str) -> str:
    # Two levels of hash aggregation, per (period, group, well) then per (period, group): the number of wells is
    # then a count(*), where count(DISTINCT well_id) would sort every record of the range.
    group = GROUP_COLUMNS[group_by]
    join = " JOIN wells w ON w.tenant_id = p.tenant_id AND w.id = p.well_id" if group_by == "field" else ""
    return (
        "WITH per_well AS ("
        f"  SELECT date_trunc($2, p.day::timestamp)::date AS period_start, {group} AS grp, p.well_id,"
        f"  sum(p.oil_bbl) AS oil_bbl, sum(p.gas_mcf) AS gas_mcf, sum(p.water_bbl) AS water_bbl, sum({BOE}) AS boe,"
        f"  count(*) AS records, count(*) FILTER (WHERE {PRODUCING_DAY}) AS producing_days,"
        f"  count(*) FILTER (WHERE {DOWN_DAY}) AS down_days, sum(p.runtime_hours) AS runtime_hours,"
        "  count(p.runtime_hours) AS runtime_records"
        f"  FROM production_records p{join}"
        "  WHERE p.tenant_id = $1 AND p.deleted_at IS NULL AND p.day >= $3 AND p.day <= $4"
        "  GROUP BY 1, 2, 3)"
        " SELECT period_start, grp AS \"group\", sum(oil_bbl) AS oil_bbl, sum(gas_mcf) AS gas_mcf,"
        " sum(water_bbl) AS water_bbl, sum(boe) AS boe, sum(records)::bigint AS records, count(*) AS wells,"
        " sum(producing_days)::bigint AS producing_days, sum(down_days)::bigint AS down_days,"
        " coalesce(sum(runtime_hours), 0) AS runtime_hours,"
        " sum(runtime_hours) / nullif(sum(runtime_records), 0)::float8 AS avg_runtime_hours,"
        " sum(oil_bbl) / sum(records)::float8 AS avg_oil_bbl_per_day,"
        " sum(boe) / sum(records)::float8 AS avg_boe_per_day,"
        " count(*) OVER () AS total"
        " FROM per_well GROUP BY 1, 2")


async def production_summary(conn: asyncpg.Connection, tenant_id: str, *, period: str, group_by: str, start: date,
                             end: date, limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    """A page of (period, group) sums and the number of rows of all pages (in the caller's transaction)."""
    await conn.execute(SUMMARY_WORK_MEM)
    rows = await conn.fetch(summary_sql(group_by), tenant_id, period, start, end, limit, offset)
    if rows:
        return rows, rows[0]["total"]
    total = 0 if offset == 0 else await conn.fetchval(
        f"SELECT count(*) FROM ({_summary_body(group_by)}) AS g", tenant_id, period, start, end)
    return rows, total


# A page of live wells ($4 limit, $5 offset, by id) with their sums over [$2, $3] and the total number of wells.
WELL_TOTALS_SQL = (
    "WITH page AS (SELECT id, name, field, count(*) OVER () AS total FROM wells"
    "   WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $4 OFFSET $5)"
    " SELECT page.id AS well_id, page.name, page.field, page.total,"
    " coalesce(s.oil_bbl, 0) AS oil_bbl, coalesce(s.gas_mcf, 0) AS gas_mcf, coalesce(s.water_bbl, 0) AS water_bbl,"
    " coalesce(s.boe, 0) AS boe, coalesce(s.records, 0) AS records, coalesce(s.producing_days, 0) AS producing_days,"
    " coalesce(s.down_days, 0) AS down_days, coalesce(s.runtime_hours, 0) AS runtime_hours,"
    " coalesce(s.downtime_hours, 0) AS downtime_hours"
    " FROM page LEFT JOIN LATERAL ("
    f"   SELECT sum(p.oil_bbl) AS oil_bbl, sum(p.gas_mcf) AS gas_mcf, sum(p.water_bbl) AS water_bbl, sum({BOE}) AS boe,"
    f"   count(*) AS records, count(*) FILTER (WHERE {PRODUCING_DAY}) AS producing_days,"
    f"   count(*) FILTER (WHERE {DOWN_DAY}) AS down_days, sum(p.runtime_hours) AS runtime_hours,"
    "   sum(24 - p.runtime_hours) AS downtime_hours"
    "   FROM production_records p WHERE p.tenant_id = $1 AND p.well_id = page.id AND p.deleted_at IS NULL"
    "   AND p.day >= $2 AND p.day <= $3) AS s ON true"
    " ORDER BY page.id")

# Daily history of some wells ($2 ids) from $3 to $4, in well and day order: what the decline fits read.
HISTORY_SQL = (
    "SELECT p.well_id, p.day, p.oil_bbl, p.gas_mcf, p.runtime_hours FROM production_records p"
    " WHERE p.tenant_id = $1 AND p.well_id = ANY($2::text[]) AND p.deleted_at IS NULL AND p.day >= $3 AND p.day <= $4"
    " ORDER BY p.well_id, p.day")


async def well_totals(conn: asyncpg.Connection, tenant_id: str, *, start: date, end: date, limit: int,
                      offset: int) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(WELL_TOTALS_SQL, tenant_id, start, end, limit, offset)
    if rows:
        return rows, rows[0]["total"]
    total = await conn.fetchval("SELECT count(*) FROM wells WHERE tenant_id = $1 AND deleted_at IS NULL", tenant_id)
    return rows, total


async def well_history(conn: asyncpg.Connection, tenant_id: str, well_ids: Sequence[str], *, start: date,
                       end: date) -> dict[str, list[asyncpg.Record]]:
    """Each well's records of [start, end] in day order (a well without any is missing)."""
    out: dict[str, list[asyncpg.Record]] = {}
    for row in await conn.fetch(HISTORY_SQL, tenant_id, list(well_ids), start, end):
        out.setdefault(row["well_id"], []).append(row)
    return out


# A page of live equipment ($4 limit, $5 offset, by id) over [$2, $3): downtime as the union of its comms-loss and
# stale-data alerts and its maintenance jobs (each clipped to the range), alerts opened in the range by severity,
# failure repairs, and the failure model's latest probability.
EQUIPMENT_HEALTH_SQL = (
    "WITH page AS (SELECT id, name, type, status, count(*) OVER () AS total FROM equipment"
    "   WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $4 OFFSET $5)"
    " SELECT page.id AS equipment_id, page.name, page.type, page.status, page.total,"
    " coalesce(down.hours, 0) AS downtime_hours, al.*, f.failures, f.repair_hours, f.repairs,"
    " pr.failure_probability, pr.updated_at AS prediction_updated_at"
    " FROM page"
    " LEFT JOIN LATERAL ("
    "   SELECT sum(extract(epoch FROM upper(r) - lower(r))) / 3600 AS hours FROM unnest(("
    "     SELECT range_agg(tstzrange(greatest(s, $2), least(e, $3))) FROM ("
    "       SELECT a.opened_at AS s, coalesce(a.resolved_at, $3) AS e FROM alerts a"
    "       WHERE a.tenant_id = $1 AND a.equipment_id = page.id AND a.rule_id IN ('comms_loss', 'stale_data')"
    "       AND a.opened_at < $3 AND coalesce(a.resolved_at, 'infinity') > $2"
    "       UNION ALL"
    "       SELECT m.started_at, coalesce(m.ended_at, $3) FROM maintenance_records m"
    "       WHERE m.tenant_id = $1 AND m.equipment_id = page.id AND m.deleted_at IS NULL"
    "       AND m.started_at < $3 AND coalesce(m.ended_at, 'infinity') > $2) AS spans)) AS r) AS down ON true"
    " LEFT JOIN LATERAL ("
    "   SELECT"
    + ",".join(
        f" count(*) FILTER (WHERE a.severity = '{s}') AS {s}_count,"
        f" coalesce(sum(extract(epoch FROM least(coalesce(a.resolved_at, $3), $3) - a.opened_at))"
        f" FILTER (WHERE a.severity = '{s}'), 0) / 3600 AS {s}_hours"
        for s in ("info", "warning", "critical"))
    + "   FROM alerts a WHERE a.tenant_id = $1 AND a.equipment_id = page.id AND a.opened_at >= $2"
    "   AND a.opened_at < $3) AS al ON true"
    " LEFT JOIN LATERAL ("
    "   SELECT count(*) FILTER (WHERE m.started_at >= $2) AS failures,"
    "   sum(extract(epoch FROM m.ended_at - m.started_at)) FILTER (WHERE m.ended_at >= $2 AND m.ended_at < $3)"
    "     / 3600 AS repair_hours,"
    "   count(*) FILTER (WHERE m.ended_at >= $2 AND m.ended_at < $3) AS repairs"
    "   FROM maintenance_records m WHERE m.tenant_id = $1 AND m.equipment_id = page.id AND m.deleted_at IS NULL"
    "   AND m.kind = 'failure_repair' AND m.started_at < $3 AND coalesce(m.ended_at, 'infinity') >= $2) AS f ON true"
    " LEFT JOIN predictions pr ON pr.tenant_id = $1 AND pr.equipment_id = page.id"
    " ORDER BY page.id")


async def equipment_health(conn: asyncpg.Connection, tenant_id: str, *, start: datetime, end: datetime, limit: int,
                           offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = await conn.fetch(EQUIPMENT_HEALTH_SQL, tenant_id, start, end, limit, offset)
    if rows:
        return [dict(r) for r in rows], rows[0]["total"]
    total = await conn.fetchval("SELECT count(*) FROM equipment WHERE tenant_id = $1 AND deleted_at IS NULL",
                                tenant_id)
    return [], total
