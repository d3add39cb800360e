"""What offline sync costs, next to a bare ``INSERT ... ON CONFLICT`` of the same rows in the same run. Prints JSON.

(a) A 1,000-change chunk with 10 % conflicts: 900 new manual readings and 100 updates of readings another
    device changed meanwhile (each a conflict, settled by newest-wins), the server changes after the
    device's cursor pulled back in the same transaction. Timed in process (parse + ``store.sync.apply_chunk``
    + commit, on the app's role with row-level security) and over HTTP (``POST /v1/sync`` through Ray
    Serve, client wall time). Baseline: one ``INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE`` of the
    same 1,000 rows (100 of them already there) into a plain table shaped like ``manual_readings``.
(b) A 10,000-change upload end to end over HTTP: ``POST /v1/sync/uploads``, ten chunks of 1,000 with
    ``PUT .../chunks/{n}``, ``POST .../complete``. Baseline: the same 10,000 rows in ten such inserts.

Runs are interleaved (in process, HTTP, baseline, ...) so that a change in the machine's load hits all
alike; medians are reported with the load average. The bar (issue 5): under 250 ms per 1,000-change chunk.

    python -m bench.sync [--runs 7] [--chunk 1000] [--conflicts 0.1] [--upload 10000]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from schema.sync import parse_changes
from serve.runtime import Stack
from store import db
from store import sync as store
from store.admin import ensure_user
from store.audit import AuditContext

T0 = datetime.now(UTC) - timedelta(days=1)
BASELINE_TABLE = "bench_sync_baseline"


def _ts(i: int) -> str:
    return (T0 + timedelta(seconds=i)).isoformat()


def reading(i: int) -> dict[str, Any]:
    return {"equipment_id": f"PJ-{i % 10}", "sensor": "tubing_psi", "value": 800.0 + (i % 97), "unit": "psi",
            "read_at": _ts(i)}


def create(record_id: str, i: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "entity": "manual_reading", "op": "create", "id": record_id,
            "version": 0, "client_ts": _ts(i), "data": reading(i)}


def update(record_id: str, i: int, value: float, at: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "entity": "manual_reading", "op": "update", "id": record_id,
            "version": 1, "client_ts": _ts(at), "data": {"value": value}}


class Workload:
    """Fresh ids per chunk: ``n`` changes, ``conflicting`` of them updates another device got in first."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str], n: int, conflicting: int) -> None:
        self.http, self.headers, self.n, self.conflicting = http, headers, n, conflicting
        self.cursor = 0

    async def prepare(self) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        """Seed and change the records the chunk will conflict with; return the chunk and its rows as plain tuples."""
        seeded = [str(uuid.uuid4()) for _ in range(self.conflicting)]
        if seeded:
            await self._post("office", [create(r, i) for i, r in enumerate(seeded)])
            await self._post("rival", [update(r, i, 1.0, 3600 + i) for i, r in enumerate(seeded)])
        chunk = [update(r, i, 2.0, 1800 + i) for i, r in enumerate(seeded)]  # older than the rival's: conflicts
        chunk += [create(str(uuid.uuid4()), i) for i in range(self.n - len(chunk))]
        rows = [(c["id"], c["data"].get("equipment_id", "PJ-0"), "tubing_psi", c["data"]["value"],
                 T0 + timedelta(seconds=i)) for i, c in enumerate(chunk)]
        return chunk, rows

    async def _post(self, device: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
        r = await self.http.post("/v1/sync", headers=self.headers, json={"device_id": device, "changes": changes,
                                                                         "pull": False})
        r.raise_for_status()
        return r.json()["data"]


async def baseline(pool: asyncpg.Pool, tenant: str, rows: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            f"INSERT INTO {BASELINE_TABLE} (tenant_id, id, equipment_id, sensor, value, read_at, created_by)"
            f" SELECT $1, * , 'bench' FROM unnest($2::uuid[], $3::text[], $4::text[], $5::float8[], $6::timestamptz[])"
            f" ON CONFLICT (tenant_id, id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            tenant, [uuid.UUID(r[0]) for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [r[3] for r in rows], [r[4] for r in rows])
    return time.perf_counter() - started


async def seed_baseline(pool: asyncpg.Pool, tenant: str, rows: list[tuple[Any, ...]], existing: int) -> None:
    """The rows the chunk updates exist in the baseline table too (the same 10 % upserted, not inserted)."""
    if existing:
        await baseline(pool, tenant, rows[:existing])


async def in_process(app_pool: asyncpg.Pool, tenant: str, chunk: list[dict[str, Any]], cursor: int,
                     ) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    parsed, errors = parse_changes(chunk)
    assert not errors, errors[:3]
    ctx = store.SyncContext(tenant, "tablet-inproc", "bench", AuditContext(tenant, "system", "bench"))
    async with db.tenant_tx(app_pool, tenant) as conn:
        outcome = await store.apply_chunk(conn, ctx, parsed, cursor=cursor, pull=True)
    return time.perf_counter() - started, outcome.result


def server_ms(response: httpx.Response) -> float:
    """The handler's own time (``Server-Timing``), without the network and the Serve proxy."""
    return float(response.headers["server-timing"].split("dur=")[1]) / 1000


async def over_http(http: httpx.AsyncClient, headers: dict[str, str], chunk: list[dict[str, Any]],
                    cursor: int) -> tuple[float, float, dict[str, Any]]:
    body = orjson.dumps({"device_id": "tablet-http", "cursor": cursor, "changes": chunk})
    started = time.perf_counter()
    r = await http.post("/v1/sync", headers={**headers, "Content-Type": "application/json"}, content=body)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    return elapsed, server_ms(r), r.json()["data"]


async def upload(http: httpx.AsyncClient, headers: dict[str, str], chunks: list[list[dict[str, Any]]],
                 ) -> tuple[float, list[float], dict[str, Any]]:
    started = time.perf_counter()
    r = await http.post("/v1/sync/uploads", headers=headers, json={"device_id": "tablet-upload",
                                                                   "total_chunks": len(chunks)})
    r.raise_for_status()
    path = f"/v1/sync/uploads/{r.json()['data']['id']}"
    per_chunk = []
    for n, chunk in enumerate(chunks):
        body = orjson.dumps({"changes": chunk})
        t = time.perf_counter()
        r = await http.put(f"{path}/chunks/{n}", headers={**headers, "Content-Type": "application/json"},
                           content=body)
        r.raise_for_status()
        per_chunk.append(time.perf_counter() - t)
    r = await http.post(f"{path}/complete", headers=headers)
    r.raise_for_status()
    return time.perf_counter() - started, per_chunk, r.json()["data"]


def ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    return {"median_ms": round(statistics.median(values), 1), "min_ms": round(values[0], 1),
            "max_ms": round(values[-1], 1), "runs": len(values)}


async def bench_tenant(stack: Stack, prefix: str) -> tuple[str, dict[str, str]]:
    s = stack.settings
    tenant = new_tenant(prefix)
    await stack.register_tenant(tenant, tenant, [(f"PJ-{i}", "pump_jack", f"PJ-{i}") for i in range(10)])
    await asyncio.to_thread(ensure_user, s.database_url, tenant, "crew@bench.example", role="operator",
                            password_hash=None)
    token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, "crew@bench.example", 120)
    return tenant, {"Authorization": f"Bearer {token}"}


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    s = stack.settings
    # One tenant per path measured, so each device pulls back only what its own tenant changed meanwhile
    # (the conflicting edits of the other devices), not the other path's chunks.
    (t_in, h_in), (t_http, h_http) = await bench_tenant(stack, "syncbench"), await bench_tenant(stack, "synchttp")
    owner = await db.create_pool(s.database_url, max_size=2)
    app_pool = await db.create_pool(s.resolved_app_database_url(), max_size=2)
    await owner.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
    await owner.execute(f"CREATE TABLE {BASELINE_TABLE} (tenant_id text NOT NULL, id uuid NOT NULL,"
                        f" equipment_id text NOT NULL, sensor text NOT NULL, value double precision NOT NULL,"
                        f" read_at timestamptz NOT NULL, created_by text NOT NULL,"
                        f" version integer NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now(),"
                        f" updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id))")
    conflicting = round(args.chunk * args.conflicts)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=300) as http:
            work_in = Workload(http, h_in, args.chunk, conflicting)
            work_http = Workload(http, h_http, args.chunk, conflicting)
            inproc, http_times, server_times, base_times, conflicts_seen, pulled = [], [], [], [], [], []
            cursors = {"inproc": 0, "http": 0}
            for i in range(args.runs + 1):  # the first round warms up caches and prepared statements
                chunk, rows = await work_in.prepare()
                await seed_baseline(owner, t_in, rows, conflicting)
                t1, result = await in_process(app_pool, t_in, chunk, cursors["inproc"])
                cursors["inproc"] = result["cursor"]
                chunk2, _ = await work_http.prepare()
                t2, t_server, result2 = await over_http(http, h_http, chunk2, cursors["http"])
                cursors["http"] = result2["cursor"]
                t3 = await baseline(owner, t_in, rows)
                if i:
                    inproc.append(t1)
                    http_times.append(t2)
                    server_times.append(t_server)
                    base_times.append(t3)
                    conflicts_seen += [len(result["conflicts"]), len(result2["conflicts"])]
                    pulled += [len(result["changes"]), len(result2["changes"])]
            chunk_result = {
                "changes": args.chunk, "conflicts_per_chunk": sorted(set(conflicts_seen)),
                "server_changes_pulled_per_chunk": sorted(set(pulled)),
                "in_process": ms(inproc), "http": ms(http_times), "http_server_timing": ms(server_times),
                "bare_insert_on_conflict": ms(base_times),
            }
            base = chunk_result["bare_insert_on_conflict"]["median_ms"]
            chunk_result["ratio_in_process_vs_bare"] = round(chunk_result["in_process"]["median_ms"] / base, 1)
            chunk_result["ratio_http_vs_bare"] = round(chunk_result["http"]["median_ms"] / base, 1)
            chunk_result["bar_250ms_in_process"] = chunk_result["in_process"]["median_ms"] < 250
            chunk_result["bar_250ms_http"] = chunk_result["http"]["median_ms"] < 250

            n_chunks = args.upload // args.chunk
            changes = [create(str(uuid.uuid4()), i) for i in range(n_chunks * args.chunk)]
            chunks = [changes[i:i + args.chunk] for i in range(0, len(changes), args.chunk)]
            total, per_chunk, done = await upload(http, h_http, chunks)
            rows = [(c["id"], c["data"]["equipment_id"], "tubing_psi", c["data"]["value"], T0) for c in changes]
            started = time.perf_counter()
            for i in range(0, len(rows), args.chunk):
                await baseline(owner, t_http, rows[i:i + args.chunk])
            base_total = time.perf_counter() - started
            stored = await owner.fetchval("SELECT count(*) FROM manual_readings WHERE tenant_id = $1"
                                          " AND id = ANY($2::uuid[])", t_http, [c["id"] for c in changes])
            upload_result = {
                "changes": len(changes), "chunks": len(chunks), "stored": stored,
                "applied_reported": done["upload"]["applied_changes"],
                "total_s": round(total, 3), "per_chunk": ms(per_chunk),
                "changes_per_second": round(len(changes) / total),
                "bare_insert_on_conflict_total_s": round(base_total, 3),
                "ratio_vs_bare": round(total / base_total, 1),
            }
    finally:
        await owner.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        await owner.close()
        await app_pool.close()
    return {"chunk_1000_with_conflicts": chunk_result, "upload_10000": upload_result}


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "sync", "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    stack = await asyncio.to_thread(start_stack, serve_http=True, rate_limit_user_per_minute=10**8,
                                    rate_limit_tenant_per_hour=10**9)
    try:
        result.update(await run(stack, args))
        result["storage"] = stack.migration.flavour if stack.migration else None
        result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
        emit(result)
    finally:
        # Ray's shutdown chatter must not follow the JSON on stdout.
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="timed chunks of each kind (after one warm-up)")
    parser.add_argument("--chunk", type=int, default=1000, help="changes per chunk")
    parser.add_argument("--conflicts", type=float, default=0.1, help="share of the chunk that conflicts")
    parser.add_argument("--upload", type=int, default=10_000, help="changes in the upload session")
    asyncio.run(main(parser.parse_args()))
