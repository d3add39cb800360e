"""Cost of a rate limit check against a bare ``SELECT 1`` on the same pool, same run.

A check is what serve/ratelimit.py does per request: the user's and the tenant's limit.
Measured for the default backend (one SQL function call, both limits atomically) and for
limits' own ``SlidingWindowCounterRateLimiter`` way on :class:`PostgresStorage` (hit +
window stats per limit). Sequential latency (µs per call) and throughput with
``--concurrency`` callers. Prints JSON.

    python -m bench.ratelimit [--checks 5000] [--concurrency 8] [--users 50]

Embedded PostgreSQL unless WELLPULSE_DATABASE_URL is set.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from store import db
from store.migrate import migrate
from store.ratelimit import LimitsRateLimiter, PostgresRateLimiter, PostgresStorage, Rule


def rules(run: str, i: int, users: int) -> list[Rule]:
    # Large limits: every check is admitted and writes, the expensive path.
    return [Rule(f"u:60:{run}:user-{i % users}", 10**9, 60, "user"), Rule(f"t:3600:{run}", 10**9, 3600, "tenant")]


async def timed(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    for i in range(min(200, n)):  # warm up: prepared statements, cache
        await op(i)
    latencies: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        await op(i)
        latencies.append(time.perf_counter() - start)
    latencies.sort()

    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "us_mean": round(statistics.fmean(latencies) * 1e6, 1),
        "us_p50": round(latencies[len(latencies) // 2] * 1e6, 1),
        "us_p99": round(latencies[int(len(latencies) * 0.99)] * 1e6, 1),
        f"per_second_at_concurrency_{concurrency}": round(n / elapsed),
    }


async def run(database_url: str, checks: int, concurrency: int, users: int) -> dict[str, Any]:
    migrate(database_url)
    pool = await db.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    try:
        sql = PostgresRateLimiter(pool)
        via_limits = LimitsRateLimiter(PostgresStorage(pool))
        run_id = uuid.uuid4().hex[:8]
        results = {
            "select_1": await timed(checks, concurrency, lambda i: pool.fetchval("SELECT 1")),
            "check_sql_function": await timed(checks, concurrency, lambda i: sql.hit(rules(run_id, i, users))),
            "check_limits_strategy_on_pg": await timed(
                checks, concurrency, lambda i: via_limits.hit(rules(run_id + "L", i, users))),
        }
        base = results["select_1"]["us_mean"]
        for name in ("check_sql_function", "check_limits_strategy_on_pg"):
            results[name]["x_select_1"] = round(results[name]["us_mean"] / base, 2)
        results["check_sql_function"]["round_trips"] = 1
        results["check_limits_strategy_on_pg"]["round_trips"] = 4  # (hit + stats) x (user, tenant)
        return results
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--users", type=int, default=50, help="distinct users (one tenant)")
    args = parser.parse_args()
    url = os.environ.get("WELLPULSE_DATABASE_URL")
    server = None
    if not url:
        from store.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="wellpulse-bench-rl-")) / "data").start()
        url = server.url
    try:
        results = asyncio.run(run(url, args.checks, args.concurrency, args.users))
    finally:
        if server is not None:
            server.stop()
    print(json.dumps({"bench": "ratelimit", "checks": args.checks, "concurrency": args.concurrency,
                      "users": args.users, "results": results}, indent=2))


if __name__ == "__main__":
    main()
