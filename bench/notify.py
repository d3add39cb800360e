"""Notification delivery: from an alert event committed to a webhook receiver having it, and nothing lost or
doubled when the receiver is down for a while.

    python -m bench.notify [--rate 100] [--tenants 10] [--seconds 20] [--outage 60]

Against PostgreSQL alone (embedded unless WELLPULSE_DATABASE_URL is set): one `actors.notifier.Notifier` per
tenant, as each TenantActor runs it, woken after each commit as the ALERTS stream wakes it; alerts are opened
as the models open them (`store.alerts.persist_changes`) at ``--rate`` per second spread over ``--tenants``;
each tenant has one signed webhook channel to a local aiohttp receiver. The baseline, in the same run: a bare
HTTP POST to the same receiver, timed the same way (send to received). Then the chaos phase: the receiver is
down for ``--outage`` seconds while alerts keep opening, then back; every notification must arrive exactly once.
Prints JSON with ``p99_ms``, ``lost`` and ``duplicated`` at the top level.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from actors.notifier import Notifier, RetryPolicy
from config import SYSTEM_CLOCK
from config.secrets import SecretBox
from store import alerts as alert_store
from store import db
from store import notifications as store
from store.embedded import free_port
from store.migrate import migrate

SECRET = "bench-webhook-secret-0123456789"


class Receiver:
    """The webhook endpoint: when each delivery (by tenant and event seq) arrived, and how often."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[tuple[str, int], float] = {}
        self.count: dict[tuple[str, int], int] = {}
        self.bare: dict[str, float] = {}
        self.news = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/bare", self._bare)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        now = time.time()
        body = await request.json()
        key = (body["tenant_id"], int(body["event_seq"]))
        self.arrived.setdefault(key, now)
        self.count[key] = self.count.get(key, 0) + 1
        self.news.set()
        return web.Response(text="ok")

    async def _bare(self, request: web.Request) -> web.Response:
        self.bare[(await request.json())["id"]] = time.time()
        return web.Response(text="ok")


async def setup_tenants(url: str, box: SecretBox, receiver: Receiver, tenants: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    ids = [f"bn-{run}-{i}" for i in range(tenants)]
    conn = await asyncpg.connect(url)
    try:
        for tenant in ids:
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
            await conn.execute("INSERT INTO equipment (tenant_id, id, type) VALUES ($1, 'PJ-1', 'pump_jack')", tenant)
    finally:
        await conn.close()
    pool = await db.create_pool(url)
    try:
        for tenant in ids:
            async with db.tenant_tx(pool, tenant) as tx:
                await store.insert_channel(tx, tenant, name="bench hook", kind="webhook", enabled=True,
                                           min_severity="info", config={"url": f"http://127.0.0.1:{receiver.port}/hook"},
                                           secret=store.seal_secrets(box, {"secret": SECRET}), created_by="bench")
    finally:
        await pool.close()
    return ids


async def paced(n: int, rate: float, op: Callable[[int], Awaitable[None]]) -> None:
    """``op(0)`` .. ``op(n - 1)`` started at ``rate`` per second (open loop: a slow one holds up none)."""
    started, tasks = time.perf_counter(), []
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(op(i)))
    await asyncio.gather(*tasks)


async def produce(pool: asyncpg.Pool, tenants: list[str], notifiers: dict[str, Notifier], *, rate: float,
                  seconds: float, committed: dict[tuple[str, int], float], label: str) -> None:
    """Open alerts at ``rate`` per second for ``seconds``, round-robin over the tenants; when each committed."""
    total = int(rate * seconds)

    async def one(i: int) -> None:
        tenant = tenants[i % len(tenants)]
        change = alert_store.AlarmChange("opened", "PJ-1", f"{label}{i}", "critical", datetime.now(UTC),
                                         "bench alert", {})
        async with db.tenant_tx(pool, tenant) as conn:
            [event] = await alert_store.persist_changes(conn, tenant, [change])
        committed[(tenant, event["seq"])] = time.time()
        notifiers[tenant].wake.set()

    await paced(total, rate, one)


async def wait_delivered(receiver: Receiver, expected: set[tuple[str, int]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        receiver.news.clear()  # before the check: an arrival after it sets the event again
        if expected <= receiver.arrived.keys() or time.monotonic() >= deadline:
            return
        try:
            await asyncio.wait_for(receiver.news.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return


async def bare_posts(receiver: Receiver, n: int, rate: float) -> list[float]:
    """The baseline: POSTs of a similar body to the same receiver at the same rate; ms from send to received."""
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        async def post(i: int) -> None:
            key = str(i)
            sent[key] = time.time()
            async with session.post(f"http://127.0.0.1:{receiver.port}/bare", json={"id": key, "pad": "x" * 400}):
                pass

        await paced(n, rate, post)
    return [(receiver.bare[k] - sent[k]) * 1000 for k in sent]


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    cuts = statistics.quantiles(ms, n=100) if len(ms) > 1 else [ms[0]] * 99
    return {"p50_ms": round(statistics.median(ms), 1), "p99_ms": round(cuts[98], 1)}


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    migrate(url)
    box = SecretBox("bench-data-key-" + "k" * 32)
    receiver = Receiver()
    await receiver.start()
    tenants = await setup_tenants(url, box, receiver, args.tenants)
    pool = await db.create_pool(url, max_size=4)  # the producer's
    # Each tenant's notifier on a pool of its own, as each TenantActor holds one (db_pool_size, 4).
    pools = {t: await db.create_pool(url, max_size=4, tenant_id=t) for t in tenants}
    policy = RetryPolicy(retry_seconds=3600.0, backoff_seconds=0.5, backoff_max_seconds=2.0, timeout_seconds=5.0)
    # The receiver is on loopback: this operator allows it (WELLPULSE_NOTIFY_ALLOW_PRIVATE_NETWORKS).
    notifiers = {t: Notifier(pools[t], t, box, policy=policy, clock=SYSTEM_CLOCK, allow_private_networks=True)
                 for t in tenants}
    loops = [asyncio.create_task(n.run_forever()) for n in notifiers.values()]
    try:
        committed: dict[tuple[str, int], float] = {}
        started = time.perf_counter()
        await produce(pool, tenants, notifiers, rate=args.rate, seconds=args.seconds, committed=committed, label="s")
        await wait_delivered(receiver, set(committed), 60)
        arrivals = [receiver.arrived[k] for k in committed if k in receiver.arrived]
        # From the first commit to the last arrival: what the notifiers sustained while alerts kept coming.
        elapsed = (max(arrivals) - min(committed.values())) if arrivals else time.perf_counter() - started
        steady = [(receiver.arrived[k] - t) * 1000 for k, t in committed.items() if k in receiver.arrived]
        baseline = await bare_posts(receiver, len(committed), args.rate)

        chaos: dict[tuple[str, int], float] = {}
        await receiver.stop()
        producing = asyncio.create_task(produce(pool, tenants, notifiers, rate=args.rate, seconds=args.outage,
                                                committed=chaos, label="c"))
        await asyncio.sleep(args.outage)
        await producing
        await receiver.start()
        await wait_delivered(receiver, set(chaos), 60 + args.outage)
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        for n in notifiers.values():
            await n.close()
        for p in [pool, *pools.values()]:
            await p.close()
        await receiver.stop()
    expected = set(committed) | set(chaos)
    lost = len(expected - receiver.arrived.keys())
    duplicated = sum(c - 1 for c in receiver.count.values() if c > 1)
    main, bare = percentiles(steady), percentiles(baseline)
    return {
        "bench": "notify", "p99_ms": main["p99_ms"], "lost": lost, "duplicated": duplicated,
        "p50_ms": main["p50_ms"], "deliveries": len(steady),
        "deliveries_per_s": round(len(steady) / elapsed, 1), "rate": args.rate, "tenants": args.tenants,
        # What the producer managed: below ``rate``, the machine (not the notifiers) set the pace.
        "committed_per_s": round(len(committed) / max(1e-9, max(committed.values()) - min(committed.values())), 1),
        "baseline_bare_post": bare,
        "ratio_p99": round(main["p99_ms"] / bare["p99_ms"], 1) if bare["p99_ms"] else None,
        "chaos": {"outage_s": args.outage, "alerts": len(chaos),
                  "delivered": len(set(chaos) & receiver.arrived.keys())},
        "bars": {"p99_ms<=1000": main["p99_ms"] <= 1000,
                 "kept_up_with_100_per_s": args.rate >= 100 and len(steady) / elapsed >= 0.95 * args.rate,
                 "exactly_once": lost == 0 and duplicated == 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="alerts opened per second, all tenants")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady phase")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the receiver is down (chaos phase)")
    args = parser.parse_args()
    url = os.environ.get("WELLPULSE_DATABASE_URL")
    server = None
    if not url:
        from store.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="wellpulse-bench-notify-")) / "data").start()
        url = server.url
    try:
        result = asyncio.run(run(url, args))
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
