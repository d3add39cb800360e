"""Dashboard latency on a year of daily production for 1,000 wells (issue 17). Prints JSON.

Data, loaded as the database owner with server-side ``generate_series`` (the tenant and its equipment are
inserted directly: no actors run for it, the dashboards read the database only):

- ``--wells`` wells in 10 fields, ``--days`` days of production each ending yesterday: a hyperbolic decline
  (qi 50-500 bbl/d, Di 0.002-0.006/d, b 0.1-0.9, an age of 0-3 years at the first day) with 5 % noise,
  gas 3 mcf/bbl, water rising; about 1 day in 33 down (runtime 0, no volumes); one well in 10 loses half its
  oil in its last 20 days;
- ``--equipment`` pump jacks, each over the year with a comms_loss alert of 2 h a month, two warning and a
  critical threshold alert a month, quarterly preventive jobs of 4 h, one failure repair of 8 h, and a
  prediction row.

Each dashboard query over HTTP through the Ray Serve app (httpx, keep-alive, ``--concurrency`` clients), and the
same SQL (`store.analytics`) run bare with asyncpg as the app's role in a tenant transaction at the same
concurrency, in the same run (the baseline; the well pages' decline fits and the JSON are what HTTP adds):

- production summary: a year by month for the tenant; a year by month per well (page of 100 of 12,000 rows);
  30 days by day per field;
- well performance: 30 days, pages of 50 wells (each fitted);
- equipment health: 30 days, pages of 100 equipment;
- a well's 12-month forecast (two years of its history fitted).

Bar (issue 17): p95 < 500 ms per endpoint.

    python -m bench.analytics [--wells 1000] [--days 365] [--equipment 300] [--concurrency 1,4] [--requests 60]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import asyncpg
import httpx

from bench.api import ms_summary, run_http, run_sql
from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from store import analytics as sql
from store import db
from store.admin import ensure_user

BAR_P95_MS = 500.0
Make = Callable[[int], tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]]

_PRODUCTION = """
WITH w AS (
    SELECT n, 'W-' || lpad(n::text, 4, '0') AS id, 50 + (n * 7919 % 451) AS qi,
           0.002 + (n * 104729 % 41) / 10000.0 AS di, 0.1 + (n % 9) / 10.0 AS b, (n * 31 % 1095) AS age
    FROM generate_series(0, $2 - 1) AS n),
d AS (SELECT k, $3::date + k AS day FROM generate_series(0, $4 - 1) AS k),
r AS (SELECT w.id, d.day, d.k, w.n, (hashtext(w.id || d.k) % 33 = 0) AS down,
             w.qi / power(1 + w.b * w.di * (w.age + d.k), 1 / w.b) * exp(0.05 * (random() + random() + random() - 1.5))
             * CASE WHEN w.n % 10 = 0 AND d.k >= $4 - 20 THEN 0.5 ELSE 1 END AS oil
      FROM w CROSS JOIN d)
INSERT INTO production_records (tenant_id, well_id, day, oil_bbl, gas_mcf, water_bbl, runtime_hours, created_by,
                                source)
SELECT $1, id, day, CASE WHEN down THEN 0 ELSE round(oil::numeric, 2)::float8 END,
       CASE WHEN down THEN 0 ELSE round((oil * 3)::numeric, 2)::float8 END,
       CASE WHEN down THEN 0 ELSE round((oil * (1 + k / 365.0))::numeric, 2)::float8 END,
       CASE WHEN down THEN 0 ELSE 24 - (n % 4) END, 'bench', 'import'
FROM r ORDER BY day, id
"""

_ALERTS = """
INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at, resolved_at)
SELECT $1, e, rule, 'resolved', sev, 'bench', m + offs, m + offs + dur
FROM unnest($2::text[]) AS e,
     generate_series($3::timestamptz, $4::timestamptz - interval '1 month', interval '1 month') AS m,
     (VALUES ('comms_loss', 'warning', interval '3 days', interval '2 hours'),
             ('tubing_psi_high', 'warning', interval '9 days', interval '5 hours'),
             ('casing_psi_high', 'warning', interval '17 days', interval '1 hour'),
             ('motor_temp_high', 'critical', interval '23 days', interval '3 hours')) AS a(rule, sev, offs, dur)
"""

_MAINTENANCE = """
INSERT INTO maintenance_records (tenant_id, equipment_id, kind, started_at, ended_at, created_by)
SELECT $1, e, 'preventive', q, q + interval '4 hours', 'bench'
FROM unnest($2::text[]) AS e, generate_series($3::timestamptz, $4::timestamptz, interval '3 months') AS q
UNION ALL
SELECT $1, e, 'failure_repair', $4::timestamptz - (n % 300) * interval '1 day',
       $4::timestamptz - (n % 300) * interval '1 day' + interval '8 hours', 'bench'
FROM unnest($2::text[]) WITH ORDINALITY AS x(e, n)
"""


async def load(database_url: str, tenant: str, wells: int, days: int, equipment: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        today = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
        first = today - timedelta(days=days)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
        await conn.execute(
            "INSERT INTO wells (tenant_id, id, api_number, name, field)"
            " SELECT $1, 'W-' || lpad(n::text, 4, '0'), '42' || lpad(n::text, 8, '0'), 'Well ' || n, 'F-' || (n % 10)"
            " FROM generate_series(0, $2 - 1) AS n", tenant, wells)
        await conn.execute("INSERT INTO equipment (tenant_id, id, type, name) SELECT $1, e, 'pump_jack', e"
                           " FROM unnest($2::text[]) AS e", tenant, equipment)
        await conn.execute(_PRODUCTION, tenant, wells, first, days)
        since = datetime.combine(first, dtime(), UTC)
        until = datetime.combine(today, dtime(), UTC)
        await conn.execute(_ALERTS, tenant, equipment, since, until)
        await conn.execute(_MAINTENANCE, tenant, equipment, since, until)
        await conn.execute(
            "INSERT INTO predictions (tenant_id, equipment_id, equipment_type, model_version, failure_probability,"
            " horizon_seconds) SELECT $1, e, 'pump_jack', 'bench', (hashtext(e) & 1023) / 1023.0, 604800"
            " FROM unnest($2::text[]) AS e", tenant, equipment)
        insert_seconds = time.perf_counter() - started
        for table in ("production_records", "alerts", "maintenance_records", "wells", "equipment"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        count = await conn.fetchval("SELECT count(*) FROM production_records WHERE tenant_id = $1", tenant)
        alerts = await conn.fetchval("SELECT count(*) FROM alerts WHERE tenant_id = $1", tenant)
        return {"wells": wells, "days": days, "first_day": first.isoformat(), "production_records": count,
                "equipment": len(equipment), "alerts": alerts, "insert_seconds": round(insert_seconds, 1),
                "total_seconds_with_vacuum": round(time.perf_counter() - started, 1), "today": today.isoformat()}
    finally:
        await conn.close()


def kinds(wells: int, today: date) -> dict[str, Make]:
    """name -> i -> (path, params, the same SQL bare)."""
    year = (today - timedelta(days=364), today)
    month = (today - timedelta(days=29), today)
    well_pages = max(1, wells // 50)

    def summary(period: str, group_by: str, span: tuple[date, date], limit: int) -> Make:
        def make(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
            async def direct(conn: Any) -> Any:
                await conn.execute(sql.SUMMARY_WORK_MEM)
                return await conn.fetch(sql.summary_sql(group_by), conn_tenant[0], period, span[0], span[1], limit, 0)
            return ("/v1/analytics/production-summary",
                    {"period": period, "group_by": group_by, "from": span[0].isoformat(), "to": span[1].isoformat(),
                     "limit": limit}, direct)
        return make

    def performance(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
        page = i % well_pages + 1

        async def direct(conn: Any) -> Any:
            rows = await conn.fetch(sql.WELL_TOTALS_SQL, conn_tenant[0], month[0], month[1], 50, (page - 1) * 50)
            return await conn.fetch(sql.HISTORY_SQL, conn_tenant[0], [r["well_id"] for r in rows],
                                    month[1] - timedelta(days=760), month[1])
        return ("/v1/analytics/well-performance",
                {"from": month[0].isoformat(), "to": month[1].isoformat(), "limit": 50, "page": page}, direct)

    def health(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
        page = i % 3 + 1
        since = datetime.combine(month[0], dtime(), UTC)
        until = datetime.combine(month[1] + timedelta(days=1), dtime(), UTC)

        async def direct(conn: Any) -> Any:
            return await conn.fetch(sql.EQUIPMENT_HEALTH_SQL, conn_tenant[0], since, until, 100, (page - 1) * 100)
        return ("/v1/analytics/equipment-health",
                {"from": month[0].isoformat(), "to": month[1].isoformat(), "limit": 100, "page": page}, direct)

    def forecast(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
        well = f"W-{(i * 37) % wells:04d}"

        async def direct(conn: Any) -> Any:
            return await conn.fetch(sql.HISTORY_SQL, conn_tenant[0], [well], today - timedelta(days=730), today)
        return f"/v1/wells/{well}/forecast", {"months": 12}, direct

    return {"production_summary_year_by_month": summary("month", "tenant", year, 20),
            "production_summary_year_by_month_per_well": summary("month", "well", year, 100),
            "production_summary_30d_by_day_per_field": summary("day", "field", month, 100),
            "well_performance_page_of_50": performance,
            "equipment_health_page_of_100": health,
            "well_forecast_12_months": forecast}


conn_tenant: list[str] = [""]  # the tenant the bare SQL runs for (set in main)


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "analytics", "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    stack = await asyncio.to_thread(start_stack, serve_http=True, rate_limit_user_per_minute=10**8,
                                    rate_limit_tenant_per_hour=10**9)
    try:
        s = stack.settings
        tenant = conn_tenant[0] = new_tenant("analyticsbench")
        equipment = [f"PJ-{i:04d}" for i in range(args.equipment)]
        result["data"] = await load(s.database_url, tenant, args.wells, args.days, equipment)
        await asyncio.to_thread(ensure_user, s.database_url, tenant, "bench@bench.example", role="viewer",
                                password_hash=None)
        token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, "bench@bench.example", 60)
        headers = {"Authorization": f"Bearer {token}"}
        pool = await db.create_pool(s.resolved_app_database_url(), min_size=s.db_pool_size, max_size=s.db_pool_size)
        concurrencies = [int(c) for c in str(args.concurrency).split(",")]
        limits = httpx.Limits(max_connections=max(concurrencies), max_keepalive_connections=max(concurrencies))
        today = date.fromisoformat(result["data"]["today"])
        try:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as client:
                runs: dict[str, Any] = {}
                for concurrency in concurrencies:
                    runs[str(concurrency)] = per_kind = {}
                    for name, make in kinds(args.wells, today).items():
                        for i in range(args.warmup):
                            path, params, _ = make(i)
                            r = await client.get(path, params=params, headers=headers)
                            assert r.status_code == 200, (path, r.status_code, r.text[:500])
                        http = await run_http(client, make, args.requests, concurrency, headers)
                        bare = await run_sql(pool, tenant, make, args.requests, concurrency)
                        per_kind[name] = {
                            "http": http, "sql_direct": bare,
                            "ratio_http_to_sql_p50": round(http["p50_ms"] / max(bare["p50_ms"], 0.01), 2),
                            "ratio_http_to_sql_p95": round(http["p95_ms"] / max(bare["p95_ms"], 0.01), 2),
                            "bar_p95_ms": BAR_P95_MS, "meets_bar": http["p95_ms"] < BAR_P95_MS}
                result["concurrency"] = runs
        finally:
            await pool.close()
        result.update({"requests_per_kind": args.requests, "warmup_per_kind": args.warmup,
                       "serve_replicas": s.serve_replicas, "db_pool_size": s.db_pool_size,
                       "load_average_1m_at_end": round(os.getloadavg()[0], 2)})
        emit(result)
    finally:
        await asyncio.to_thread(stack.stop)


__all__ = ["kinds", "load", "main", "ms_summary"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wells", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--equipment", type=int, default=300)
    parser.add_argument("--concurrency", default="1,4", help="concurrent HTTP clients; a comma list runs each")
    parser.add_argument("--requests", type=int, default=60, help="measured requests per query kind")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per query kind first")
    asyncio.run(main(parser.parse_args()))
