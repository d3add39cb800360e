"""Read API latency with a realistic history loaded: bucketed series, latest values, the alert list. Prints JSON.

Data (loaded as the database owner with server-side ``generate_series``, in time order as a live feed
stores it, so one equipment's rows are spread over the heap as they are in production):
``--equipment`` pump jacks with 5 sensors each over the last 30 days. A few "dense" ones report every
minute (216,000 rows each; the number is ~43 % of ``--readings`` / 216,000: 20 at the default size);
the others report every N minutes, N chosen so that the total is ``--readings`` (~37 minutes at the
default size). Values follow a daily wave with noise. Alerts: one open or acknowledged alert per
equipment and four resolved ones.

Measured over HTTP through the Ray Serve app, with ``--concurrency`` clients (httpx, keep-alive), each
query kind alone (``--requests`` requests after a warm-up), against the same store functions run
directly with asyncpg as the app's role in a tenant transaction, at the same concurrency and with the
app's pool size (the baseline), and ``GET /health/db`` over HTTP:

- 24 hours of 1-minute buckets of one sensor of a dense equipment (1,440 buckets; "all sensors": 7,200);
- 30 days of 1-hour buckets of one sensor of a dense equipment (720 buckets; "all sensors": 3,600);
- latest values of 100 equipment (the dense ones and sparse ones, 500 sensors);
- the first page of open alerts (``?state=open``, 20 items).

On plain PostgreSQL the first 1h query of an equipment rolls up its closed hours (``readings_hourly``,
see store/readings.py): that one-off cost is measured separately (``rollup_first_query``).

    python -m bench.api [--equipment 1000] [--readings 10000000] [--concurrency 8] [--requests 200]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from schema.equipment import SENSORS_BY_TYPE, EquipmentType
from serve.runtime import Stack
from store import alerts as alert_store
from store import db
from store import readings as reading_store
from store.admin import ensure_user
from store.listing import fetch_page, parse_list_query

SENSORS = SENSORS_BY_TYPE[EquipmentType.PUMP_JACK]
DAYS = 30
DENSE_ROWS = DAYS * 1440 * len(SENSORS)
BARS_P95_MS = {"bucketed_24h_1m": 50.0, "bucketed_30d_1h": 50.0, "latest_100_equipment": 20.0}

_LOAD_DAY = """
WITH s(name, low, high) AS (SELECT * FROM unnest($2::text[], $3::float8[], $4::float8[])),
pts AS (
    SELECT e AS id, ts FROM unnest($5::text[]) AS e,
        generate_series($6::timestamptz, $7::timestamptz - interval '1 minute', interval '1 minute') AS ts
    UNION ALL
    SELECT e.id, ts FROM unnest($8::text[]) WITH ORDINALITY AS e(id, n),
        generate_series($9::timestamptz + $10::interval * ((e.n * 7919) % 1000) / 1000.0, $11::timestamptz,
                        $10::interval) AS ts
    WHERE ts >= $6 AND ts < $7)
INSERT INTO readings (tenant_id, equipment_id, sensor, ts, value)
SELECT $1, p.id, s.name, p.ts,
       round((s.low + (s.high - s.low) * (0.5 + 0.25 * sin(extract(epoch FROM p.ts) / 13751.0 + hashtext(p.id) % 7)
              + 0.1 * (random() - 0.5)))::numeric, 2)::float8
FROM pts p CROSS JOIN s ORDER BY p.ts, p.id, s.name
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(percentile(ms, 0.5), 2), "p95_ms": round(percentile(ms, 0.95), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "max_ms": round(max(ms), 2), "samples": len(ms)}


def data_shape(equipment: int, readings: int) -> dict[str, Any]:
    dense = max(1, min(equipment - 1, round(readings * 0.43 / DENSE_ROWS)))
    sparse_rows = readings - dense * DENSE_ROWS
    if sparse_rows <= 0:
        raise SystemExit(f"--readings {readings} is too small: one dense equipment alone has {DENSE_ROWS} rows")
    step_minutes = DAYS * 1440 * len(SENSORS) * (equipment - dense) / sparse_rows
    return {"equipment": equipment, "sensors_per_equipment": len(SENSORS), "days": DAYS,
            "dense_equipment": dense, "dense_interval_minutes": 1,
            "sparse_equipment": equipment - dense, "sparse_interval_minutes": round(step_minutes, 2),
            "order": "time order across all equipment, as a live feed stores it"}


async def load(stack: Stack, tenant: str, ids: list[str], shape: dict[str, Any]) -> dict[str, Any]:
    """Readings and alerts, as the owner (no row-level security in the way), then VACUUM ANALYZE."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        end = (await conn.fetchval("SELECT now()")).replace(second=0, microsecond=0)
        start = end - timedelta(days=DAYS)
        dense, sparse = ids[:shape["dense_equipment"]], ids[shape["dense_equipment"]:]
        step = timedelta(minutes=shape["sparse_interval_minutes"])
        started = time.perf_counter()
        for day in range(DAYS):
            await conn.execute(_LOAD_DAY, tenant, [s.name for s in SENSORS], [s.low for s in SENSORS],
                               [s.high for s in SENSORS], dense, start + timedelta(days=day),
                               start + timedelta(days=day + 1), sparse, start, step, end)
        insert_seconds = time.perf_counter() - started
        await reading_store.rebuild_latest(conn, tenant)  # the history went in past the writer
        await conn.execute(
            "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at, resolved_at)"
            " SELECT $1, e, 'high_tubing_psi', 'resolved', 'warning', 'tubing_psi above 1000', t, t + interval '1h'"
            " FROM unnest($2::text[]) AS e, generate_series($3::timestamptz, $3 + interval '3 days', '1 day') AS t",
            tenant, ids, start)
        await conn.execute(
            "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at)"
            " SELECT $1, e, 'high_tubing_psi', CASE WHEN n % 2 = 0 THEN 'open' ELSE 'acknowledged' END,"
            " CASE WHEN n % 5 = 0 THEN 'critical' ELSE 'warning' END, 'tubing_psi above 1000',"
            " $3::timestamptz - n * interval '1 minute' FROM unnest($2::text[]) WITH ORDINALITY AS x(e, n)",
            tenant, ids, end)
        await conn.execute("VACUUM ANALYZE readings")
        await conn.execute("VACUUM ANALYZE alerts")
        rows = await conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant)
        return {"readings": rows, "alerts": await conn.fetchval("SELECT count(*) FROM alerts WHERE tenant_id = $1",
                                                                tenant),
                "insert_seconds": round(insert_seconds, 1),
                "total_seconds_with_vacuum": round(time.perf_counter() - started, 1),
                "readings_table_mib": round(await conn.fetchval("SELECT pg_total_relation_size('readings')") / 2**20),
                "start": start.isoformat(), "end": end.isoformat()}
    finally:
        await conn.close()


class Queries:
    """Each query kind as an HTTP request and as the same store call, for request number ``i``."""

    def __init__(self, tenant: str, ids: list[str], dense: int, flavour: str) -> None:
        self.tenant, self.ids, self.dense, self.flavour = tenant, ids, dense, flavour
        sparse = ids[dense:]
        # 100 equipment: the dense ones and sparse ones, a different set of sparse ones per request.
        self.latest_sets = [ids[:dense] + [sparse[(k * 17 + j) % len(sparse)] for j in range(100 - dense)]
                            for k in range(16)] if len(ids) >= 100 else [ids]
        self.open_alerts = parse_list_query(alert_store.ALERTS, {"state": ["open"], "limit": ["20"]})

    def _bucketed(self, i: int, size: timedelta, span: timedelta, bucket: str, sensors: list[str] | None,
                  ) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
        from serve.readings import align_down, align_up

        equipment = self.ids[i % self.dense]
        end = datetime.now(UTC)
        start = end - span
        params = {"bucket": bucket, "from": start.isoformat(), "to": end.isoformat(), "limit": 10000}
        if sensors:
            params["sensor"] = ",".join(sensors)

        async def direct(conn: Any) -> Any:
            return await reading_store.fetch_readings_bucketed(
                conn, self.tenant, equipment, sensors=sensors, start=align_down(start, size),
                end=align_up(end, size), bucket=size, flavour=self.flavour, limit=10000)

        return f"/v1/equipment/{equipment}/readings", params, direct

    def kinds(self) -> dict[str, Callable[[int], tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]] | None]]]:
        one = ["tubing_psi"]
        minute, hour = timedelta(minutes=1), timedelta(hours=1)

        def latest(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
            ids = self.latest_sets[i % len(self.latest_sets)]

            async def direct(conn: Any) -> Any:
                return await reading_store.latest_values(conn, self.tenant, ids)

            return "/v1/telemetry/latest", {"equipment": ",".join(ids)}, direct

        def alerts(i: int) -> tuple[str, dict[str, Any], Callable[[Any], Awaitable[Any]]]:
            async def direct(conn: Any) -> Any:
                return await fetch_page(conn, alert_store.ALERTS, self.open_alerts, self.tenant)

            return "/v1/alerts", {"state": "open", "limit": 20}, direct

        return {
            "bucketed_24h_1m": lambda i: self._bucketed(i, minute, timedelta(hours=24), "1m", one),
            "bucketed_30d_1h": lambda i: self._bucketed(i, hour, timedelta(days=30), "1h", one),
            "latest_100_equipment": latest,
            "alerts_open_first_page": alerts,
            "bucketed_24h_1m_all_5_sensors": lambda i: self._bucketed(i, minute, timedelta(hours=24), "1m", None),
            "bucketed_30d_1h_all_5_sensors": lambda i: self._bucketed(i, hour, timedelta(days=30), "1h", None),
            "health_db": lambda i: ("/health/db", {}, None),
        }


async def run_http(client: httpx.AsyncClient, make: Callable[[int], Any], n: int, concurrency: int,
                   headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: list[int] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            path, params, _ = make(i)
            started = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            latencies.append(time.perf_counter() - started)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            sizes.append(len(r.content))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {**ms_summary(latencies), "requests_per_s": round(n / elapsed, 1), "statuses": statuses,
            "response_kib": round(statistics.fmean(sizes) / 1024, 1)}


async def run_sql(pool: asyncpg.Pool, tenant: str, make: Callable[[int], Any], n: int,
                  concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            _, _, direct = make(i)
            started = time.perf_counter()
            async with db.tenant_tx(pool, tenant) as conn:
                await direct(conn)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {**ms_summary(latencies), "requests_per_s": round(n / (time.perf_counter() - started), 1)}


async def first_rollups(client: httpx.AsyncClient, queries: Queries, headers: dict[str, str]) -> dict[str, Any]:
    """The first 30-day hourly query of each dense equipment (plain PostgreSQL rolls its hours up then)."""
    make = queries.kinds()["bucketed_30d_1h_all_5_sensors"]
    times = []
    for i in range(queries.dense):
        path, params, _ = make(i)
        started = time.perf_counter()
        r = await client.get(path, params=params, headers=headers)
        times.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    return {"equipment": queries.dense, **ms_summary(times)}


async def main(args: argparse.Namespace) -> None:
    shape = data_shape(args.equipment, args.readings)
    result: dict[str, Any] = {"benchmark": "api", "data": shape,
                              "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    stack = await asyncio.to_thread(start_stack, serve_http=True, rate_limit_user_per_minute=10**8,
                                    rate_limit_tenant_per_hour=10**9)
    try:
        s = stack.settings
        flavour = stack.migration.flavour if stack.migration else "postgresql"
        tenant = new_tenant("apibench")
        ids = [f"PJ-{i:04d}" for i in range(args.equipment)]
        await stack.register_tenant(tenant, tenant, [(e, "pump_jack", e) for e in ids])
        result["load"] = await load(stack, tenant, ids, shape)
        await asyncio.to_thread(ensure_user, s.database_url, tenant, "bench@bench.example", role="viewer",
                                password_hash=None)
        token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, "bench@bench.example", 60)
        headers = {"Authorization": f"Bearer {token}"}
        queries = Queries(tenant, ids, shape["dense_equipment"], flavour)
        pool = await db.create_pool(s.resolved_app_database_url(), min_size=s.db_pool_size, max_size=s.db_pool_size)
        concurrencies = [int(c) for c in str(args.concurrency).split(",")]
        limits = httpx.Limits(max_connections=max(concurrencies), max_keepalive_connections=max(concurrencies))
        try:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as client:
                result["rollup_first_query"] = await first_rollups(client, queries, headers)
                runs: dict[str, Any] = {}
                for concurrency in concurrencies:
                    runs[str(concurrency)] = per_kind = {}
                    for name, make in queries.kinds().items():
                        for i in range(args.warmup):  # pools, prepared statements, caches
                            path, params, _ = make(i)
                            r = await client.get(path, params=params, headers=headers)
                            assert r.status_code == 200, (path, r.status_code, r.text[:500])
                        http = await run_http(client, make, args.requests, concurrency, headers)
                        entry: dict[str, Any] = {"http": http}
                        if make(0)[2] is not None:
                            sql = await run_sql(pool, tenant, make, args.requests, concurrency)
                            entry["sql_direct"] = sql
                            entry["ratio_http_to_sql_p50"] = round(http["p50_ms"] / max(sql["p50_ms"], 0.01), 2)
                            entry["ratio_http_to_sql_p95"] = round(http["p95_ms"] / max(sql["p95_ms"], 0.01), 2)
                        if name in BARS_P95_MS:
                            entry["bar_p95_ms"] = BARS_P95_MS[name]
                            entry["meets_bar"] = http["p95_ms"] < BARS_P95_MS[name]
                        per_kind[name] = entry
                result["concurrency"] = runs
        finally:
            await pool.close()
        result.update({"storage": flavour, "requests_per_kind": args.requests, "warmup_per_kind": args.warmup,
                       "serve_replicas": s.serve_replicas, "db_pool_size": s.db_pool_size,
                       "load_generator": "httpx.AsyncClient in this process, N concurrent workers, keep-alive",
                       "load_average_1m_at_end": round(os.getloadavg()[0], 2)})
        emit(result)
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--equipment", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=10_000_000, help="sensor values in total")
    parser.add_argument("--concurrency", default="8", help="concurrent HTTP clients; a comma list runs each")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per query kind")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per query kind first")
    asyncio.run(main(parser.parse_args()))
