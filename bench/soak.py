"""Memory over a long run: 1,000 equipment at 1 value/s each, the whole stack's RSS sampled. Prints JSON.

``--tenants`` tenants share ``--equipment`` equipment (one by default: every tenant brings processes of its own,
a TenantActor and up to ``equipment_actor_budget`` EquipmentActors of about 200 MiB each, so memory grows with
the tenants far more than with the equipment; ``--tenants 10`` shows it); the demo feed publishes one sensor
value per equipment per second in all (each equipment sends a snapshot of its sensors every few seconds), with
a fault now and then so alerts open and resolve, while an operator per tenant polls the API (open alerts, latest values)
every ``--poll-every`` seconds and holds the alert WebSocket open. Every ``--sample-every`` seconds the
resident memory of every process is summed: this one (it holds the stack, as `wellpulse up` does, and runs the
feed and the operators), Ray's (head, raylet, Serve replicas, the tenant and equipment actors) and the
embedded servers'. Both sums are printed; the bar (3 GiB, flat) is judged on PSS, which splits each shared page
among the processes that map it: summed RSS counts PostgreSQL's shared buffers once per backend that touched
them, and Python's and Ray's libraries once per process, so it grows as backends touch more of the same
buffers while no memory is added. The rate limits are raised for this run through configuration (printed):
a 5 s poll alone is past the default 1,000 requests per tenant-hour.

Baseline in the same run: the same stack idle, started and with its tenants registered but no feed; the
ratio says what the load adds. Flat means the memory after the warm-up (``--warmup-minutes``) grows by
less than ``FLAT_GROWTH`` between the second and the last quarter of the run (medians of the samples),
and the least-squares slope over the same samples is printed in MiB per hour.

    python -m bench.soak [--minutes 30] [--equipment 1000] [--tenants 1]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from typing import Any

import aiohttp
import asyncpg
import websockets

from bench.common import MemorySampler, emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from sim import demo_fleet, run_simulation
from store.admin import ensure_user

GIB = 1024**3
MIB = 1024**2
MEMORY_BAR_BYTES = 3 * GIB
FLAT_GROWTH = 0.05
# An operator polling every 5 s makes 1,440 requests an hour: past the default 1,000 per tenant.
RATE_LIMIT_USER_PER_MINUTE = 10_000
RATE_LIMIT_TENANT_PER_HOUR = 1_000_000


async def _tenant(stack: Any, tenant: str, count: int) -> tuple[list[str], str]:
    s = stack.settings
    fleet = demo_fleet(count)
    await stack.register_tenant(tenant, tenant, [(e.equipment_id, e.equipment_type.value, e.equipment_id)
                                                 for e in fleet])
    await asyncio.to_thread(ensure_user, s.database_url, tenant, f"operator@{tenant}.example", role="operator",
                            password_hash=None)
    token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, f"operator@{tenant}.example",
                                    24 * 60)
    return [e.equipment_id for e in fleet], token


async def _operator(base_url: str, token: str, ids: list[str], every: float, stop: asyncio.Event,
                    counts: dict[str, int]) -> None:
    """One operator's screen: the alert socket held open, the alert list and the latest values polled."""
    ws_url = base_url.replace("http", "ws", 1) + "/v1/alerts/ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as session, \
            websockets.connect(ws_url, additional_headers=headers, max_queue=None) as ws:
        reader = asyncio.create_task(_drain(ws, counts))
        try:
            while not stop.is_set():
                for path, params in (("/v1/alerts", {"state": "open", "limit": "20"}),
                                     ("/v1/telemetry/latest", {"equipment": ",".join(ids[:20])})):
                    async with session.get(path, params=params) as resp:
                        await resp.read()
                        key = "http_ok" if resp.status == 200 else f"http_{resp.status}"
                        counts[key] = counts.get(key, 0) + 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
        finally:
            reader.cancel()


async def _drain(ws: Any, counts: dict[str, int]) -> None:
    async for _ in ws:
        counts["ws_events"] = counts.get("ws_events", 0) + 1


async def _committed_values(database_url: str, tenants: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tenant_id, count(*) AS n FROM readings WHERE tenant_id = ANY($1)"
                                " GROUP BY tenant_id", tenants)
        return {t: 0 for t in tenants} | {r["tenant_id"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()


def flatness(samples: list[tuple[float, int]], warmup_s: float) -> dict[str, Any]:
    """Growth of the post-warm-up samples ((seconds since the feed started, bytes)): second against last quarter
    (medians), and the least-squares slope.

    >>> flat = flatness([(t, 1000 * MIB) for t in range(0, 400, 10)], warmup_s=60)
    >>> flat["growth"], flat["slope_mib_per_h"]
    (0.0, 0.0)
    """
    steady = [(t, b) for t, b in samples if t >= warmup_s]
    if len(steady) < 8:
        return {"samples": len(steady), "growth": None, "slope_mib_per_h": None}
    quarter = len(steady) // 4
    second = statistics.median(b for _, b in steady[quarter:2 * quarter])
    last = statistics.median(b for _, b in steady[-quarter:])
    ts = [t for t, _ in steady]
    mib = [b / MIB for _, b in steady]
    slope = statistics.linear_regression(ts, mib).slope * 3600
    return {"samples": len(steady), "second_quarter_mib": round(second / MIB, 1),
            "last_quarter_mib": round(last / MIB, 1), "growth": round(last / second - 1, 4),
            "slope_mib_per_h": round(slope, 1)}


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "soak", "minutes": args.minutes, "equipment": args.equipment,
                              "tenants": args.tenants, "values_per_s": args.equipment,
                              "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    result["rate_limits_raised_for_this_run"] = {"rate_limit_user_per_minute": RATE_LIMIT_USER_PER_MINUTE,
                                                 "rate_limit_tenant_per_hour": RATE_LIMIT_TENANT_PER_HOUR}
    stack = await asyncio.to_thread(start_stack, serve_http=True,
                                    rate_limit_user_per_minute=RATE_LIMIT_USER_PER_MINUTE,
                                    rate_limit_tenant_per_hour=RATE_LIMIT_TENANT_PER_HOUR)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        per_tenant = args.equipment // args.tenants
        tenants = [new_tenant("soak") for _ in range(args.tenants)]
        fleets = [await _tenant(stack, t, per_tenant) for t in tenants]
        sampler = MemorySampler(stack)
        await asyncio.sleep(10)  # the actors started by the registrations settle
        idle, idle_pss = await asyncio.to_thread(sampler.sample_rss_pss)
        result["baseline_idle"] = {"rss_mib": round(idle / MIB, 1), "pss_mib": round(idle_pss / MIB, 1),
                                   "rss_by_process_mib": sampler.rss_by_name()}

        counts: dict[str, int] = {}
        feeds = [asyncio.create_task(run_simulation(
            stack.nats_url, t, equipment=per_tenant, rate=float(per_tenant), fault_every=args.fault_every,
            stop=stop, ensure_stream=False, seed=n)) for n, t in enumerate(tenants)]
        tasks += feeds
        tasks += [asyncio.create_task(_operator(stack.base_url, token, ids, args.poll_every, stop, counts))
                  for ids, token in fleets]
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        pss: list[tuple[float, int]] = []
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            rss_now, pss_now = await asyncio.to_thread(sampler.sample_rss_pss)
            samples.append((elapsed, rss_now))
            pss.append((elapsed, pss_now))
            if any(t.done() for t in tasks):
                break  # a feed or an operator died: stop and say so below
            await asyncio.sleep(args.sample_every)
        by_process = sampler.rss_by_name()
        stop.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
        published = {t: o.readings for t, o in zip(tenants, outcomes, strict=False) if not isinstance(o, BaseException)}
        for _ in range(60):  # what was published is committed once the pipeline drains
            by_tenant = await _committed_values(stack.database_url, tenants)
            if all(by_tenant[t] >= n for t, n in published.items()):
                break
            await asyncio.sleep(1)
        lagging = {t: {"published": n, "committed": by_tenant[t]} for t, n in published.items() if by_tenant[t] < n}
        committed = sum(by_tenant.values())

        peak, end = sampler.peak, samples[-1][1]
        peak_pss = max(b for _, b in pss)
        flat = flatness(samples, args.warmup_minutes * 60)
        result.update({
            "ran_minutes": round(samples[-1][0] / 60, 1),
            "rss_mib": {"idle": round(idle / MIB, 1), "end": round(end / MIB, 1), "peak": round(peak / MIB, 1)},
            "pss_mib": {"idle": round(idle_pss / MIB, 1), "end": round(pss[-1][1] / MIB, 1),
                        "peak": round(peak_pss / MIB, 1)},
            "ratio_peak_vs_idle": {"rss": round(peak / idle, 2), "pss": round(peak_pss / idle_pss, 2)},
            "flat": flat,
            "flat_pss": flatness(pss, args.warmup_minutes * 60),
            "rss_by_process_mib_at_end": by_process,
            "timeline_rss_pss_mib": [[round(t), round(b / MIB), round(p / MIB)] for (t, b), (_, p)
                                     in list(zip(samples, pss, strict=True))[::max(1, len(samples) // 30)]],
            "values_published": sum(published.values()), "values_committed": committed,
            "tenants_lagging": lagging, "operators": counts,
            "failures": failures,
            "bars": {"pss_gib": 3, "pss_growth": FLAT_GROWTH},
            "load_average_1m_at_end": round(os.getloadavg()[0], 2)})
        flat_pss = result["flat_pss"]
        result["meets_bars"] = (peak_pss <= MEMORY_BAR_BYTES and flat_pss["growth"] is not None
                                and flat_pss["growth"] < FLAT_GROWTH and not lagging and not failures)
        emit(result)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--equipment", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--warmup-minutes", type=float, default=None,
                        help="samples before this are not judged for flatness (default: a sixth of the run)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--poll-every", type=float, default=5.0, help="seconds between an operator's polls")
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults, per tenant")
    parsed = parser.parse_args()
    if parsed.warmup_minutes is None:
        parsed.warmup_minutes = parsed.minutes / 6
    asyncio.run(main(parsed))
