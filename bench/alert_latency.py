"""Alert latency: from publishing the reading that crosses a rule to the operator's WebSocket.

A background feed (the simulator) keeps ``--background-rate`` sensor values per second
flowing through the same tenant while a probe equipment flips a threshold rule open and
closed. Baseline in the same run: core NATS publish -> subscriber latency on the same server.
Prints JSON.

    python -m bench.alert_latency [--background-rate 5000] [--probes 60]
"""

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import websockets

from bench.common import MemorySampler, emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from schema.subjects import tele_subject
from serve.runtime import Stack
from sim import demo_fleet, run_simulation
from store.admin import ensure_user

PROBE = "PROBE"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 0.5), 2), "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2), "mean_ms": round(statistics.fmean(ms), 2), "samples": len(ms)}


async def core_nats_latency(url: str, samples: int) -> list[float]:
    nc = await nats.connect(url)
    got: asyncio.Queue = asyncio.Queue()

    async def received(msg: Any) -> None:
        got.put_nowait(time.perf_counter())

    await nc.subscribe("bench.latency", cb=received)
    out = []
    for _ in range(samples):
        sent = time.perf_counter()
        await nc.publish("bench.latency", b"x")
        await nc.flush()
        out.append((await asyncio.wait_for(got.get(), 5) - sent) * 1000)
    await nc.close()
    return out


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    tenant = new_tenant("latency")
    fleet = demo_fleet(args.background_equipment)
    # One probe equipment per alert: flipping one rule open and closed every quarter second is chattering, which
    # the alarm management holds open (ISA-18.2) instead of resolving, so each probe opens one fresh alert.
    probes = [f"{PROBE}-{i + 1}" for i in range(args.probes)]
    await stack.register_tenant(tenant, tenant, [(e.equipment_id, e.equipment_type.value, e.equipment_id)
                                                 for e in fleet] + [(p, "meter", p) for p in probes])
    import asyncpg

    conn = await asyncpg.connect(stack.settings.database_url)
    await conn.executemany(
        "INSERT INTO alert_rules (tenant_id, id, equipment_id, kind, params) VALUES ($1, $2, $3, 'threshold',"
        " '{\"sensor\": \"flow_mcfd\", \"high\": 1000, \"for_seconds\": 0, \"severity\": \"critical\"}')",
        [(tenant, f"probe-{i + 1}", p) for i, p in enumerate(probes)])
    await conn.close()
    nc = await nats.connect(stack.settings.nats_url)
    await nc.publish(f"ctl.{tenant}", b'{"reload": "rules"}')
    js = nc.jetstream()
    stop = asyncio.Event()
    background = asyncio.create_task(run_simulation(
        stack.settings.nats_url, tenant, equipment=args.background_equipment, rate=args.background_rate,
        fault_every=None, stop=stop, ensure_stream=False))
    ensure_user(stack.settings.database_url, tenant, "bench@example.com", role="operator", password_hash=None)
    token = mint_user_token(stack.settings, stack.settings.database_url, tenant, "bench@example.com", 30)
    url = f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws?equipment={','.join(probes)}"
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    try:
        with MemorySampler(stack) as memory:
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                await asyncio.sleep(args.warmup)  # background flowing, models past warm-up
                for probe in probes:
                    ts = datetime.now(UTC) - timedelta(seconds=1)
                    body = json.dumps({"equipment_id": probe, "ts": ts.isoformat(), "values": {"flow_mcfd": 5000.0}})
                    sent_at[ts.isoformat()] = time.perf_counter()
                    await js.publish(tele_subject(tenant, probe), body.encode())
                    async with asyncio.timeout(10):
                        while True:
                            event = json.loads(await ws.recv())
                            key = datetime.fromisoformat(event["occurred_at"]).astimezone(UTC).isoformat()
                            if key in sent_at:
                                latencies.append((time.perf_counter() - sent_at.pop(key)) * 1000)
                                break
                    await asyncio.sleep(args.interval)
            memory.sample()
    finally:
        stop.set()
        stats = await background
        await nc.close()
    return {"latency": summary(latencies), "background": {
        "target_values_per_s": args.background_rate, "achieved_values_per_s": round(stats.readings / stats.elapsed_s),
        "equipment": args.background_equipment}, "peak_rss_mib_all_processes": round(memory.peak / 2**20)}


async def main(args: argparse.Namespace) -> None:
    stack = await asyncio.to_thread(start_stack, serve_http=True)
    try:
        result = await measure(stack, args)
        baseline = summary(await core_nats_latency(stack.settings.nats_url, 200))
        emit({"benchmark": "alert_latency", **result, "baseline_core_nats": baseline,
              "ratio_p50_to_core_nats_p50": round(result["latency"]["p50_ms"] / max(baseline["p50_ms"], 1e-3), 1),
              "bar_p99_ms": 50})
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--background-rate", type=float, default=5000.0, help="sensor values per second")
    parser.add_argument("--background-equipment", type=int, default=50)
    parser.add_argument("--probes", type=int, default=60, help="alerts opened, each on a probe equipment of its own")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between probe readings")
    parser.add_argument("--warmup", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
