"""REST under an operator's load, while the feed ingests: requests/s and latency, against plain uvicorn. Prints JSON.

The mix is what an operator's screens ask for (``MIX``): the open alerts, the latest values of 20 equipment,
one equipment's latest values and predictions, a 24 h chart of 1-minute buckets, the equipment list, and an
acknowledge now and then; ``--connections`` clients (keep-alive, each its own connection) for ``--seconds``
seconds, authenticated as an operator, with the rate limits on (raised for this run through configuration:
``rate_limit_user_per_minute`` and ``rate_limit_tenant_per_hour``, printed). Meanwhile the demo feed publishes
``--feed-rate`` sensor values per second to the same tenant, so ingest and the API share the two cores.

Baseline in the same run: the same FastAPI app (``serve.app.build_app``, same settings, same database and
NATS) served by plain uvicorn with one worker, under the same load. The load generator runs in a process of its
own (aiohttp), so its CPU is not the server's event loop.

    python -m bench.load [--connections 50] [--seconds 60] [--feed-rate 5000] [--replicas 1]

Embedded PostgreSQL and NATS unless WELLPULSE_DATABASE_URL / WELLPULSE_NATS_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats

from bench.api import _LOAD_DAY, SENSORS
from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from sim import demo_fleet, run_simulation
from store.admin import ensure_user
from store.embedded import free_port, wait_for_port
from store.readings import rebuild_latest

EQUIPMENT = 20
SCREEN = 20  # equipment on an operator's overview screen
# (name, weight): 70 % and more of the requests read what changes slowly (alerts, latest values, predictions).
MIX = (
    ("alerts_open", 25),
    ("latest_20_equipment", 25),
    ("latest_one", 15),
    ("predictions", 10),
    ("equipment_list", 10),
    ("chart_24h_1m", 10),
    ("acknowledge", 5),
)
RATE_LIMIT_USER_PER_MINUTE = 10**7
RATE_LIMIT_TENANT_PER_HOUR = 10**9


# -- the load generator (a process of its own) ------------------------------------------------------------------


def _request(kind: str, rng: random.Random, ids: list[str], alert_ids: list[str]) -> tuple[str, str, dict[str, str]]:
    equipment = ids[rng.randrange(len(ids))]
    pump_jacks = [e for e in ids if e.startswith("PJ-")]  # the charts are of tubing pressure
    if kind == "alerts_open":
        return "GET", "/v1/alerts", {"state": "open", "limit": "20"}
    if kind == "latest_20_equipment":
        start = rng.randrange(len(ids))
        screen = [ids[(start + k) % len(ids)] for k in range(min(SCREEN, len(ids)))]
        return "GET", "/v1/telemetry/latest", {"equipment": ",".join(screen)}
    if kind == "latest_one":
        return "GET", f"/v1/equipment/{equipment}/latest", {}
    if kind == "predictions":
        return "GET", f"/v1/equipment/{equipment}/predictions", {}
    if kind == "equipment_list":
        return "GET", "/v1/equipment", {"limit": "50"}
    if kind == "chart_24h_1m":
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        return "GET", f"/v1/equipment/{pump_jacks[rng.randrange(len(pump_jacks))]}/readings", {
            "bucket": "1m", "sensor": "tubing_psi", "from": (end - timedelta(hours=24)).isoformat(),
            "to": end.isoformat(), "limit": "2000"}
    alert = alert_ids[rng.randrange(len(alert_ids))]
    return "POST", f"/v1/alerts/{alert}/acknowledge", {}


async def _client(spec: dict[str, Any]) -> dict[str, Any]:
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    deadline = time.monotonic() + spec["seconds"]
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    statuses: dict[str, dict[str, int]] = {k: {} for k in kinds}
    headers = {"Authorization": f"Bearer {spec['token']}"}

    async def worker(n: int) -> None:
        rng = random.Random(n)
        # One connection per worker, kept alive: 50 workers are 50 operators' browsers.
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(spec["base_url"], connector=connector, timeout=timeout,
                                         headers=headers) as session:
            while time.monotonic() < deadline:
                kind = rng.choices(kinds, weights)[0]
                method, path, params = _request(kind, rng, spec["ids"], spec["alert_ids"])
                began = time.perf_counter()
                try:
                    body = {"comment": "seen"} if method == "POST" else None
                    async with session.request(method, path, params=params, json=body) as resp:
                        await resp.read()
                        status = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                samples[kind].append(time.perf_counter() - began)
                statuses[kind][status] = statuses[kind].get(status, 0) + 1

    began = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(spec["connections"])))
    return {"seconds": time.monotonic() - began, "samples": samples, "statuses": statuses}


def client_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(_client(spec))))


async def drive(base_url: str, token: str, ids: list[str], alert_ids: list[str], *, connections: int,
                seconds: float) -> dict[str, Any]:
    """Run the load generator against `base_url` and summarise what it measured."""
    spec_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"wellpulse-load-{os.getpid()}-{free_port()}.json"
    spec_path.write_text(json.dumps({"base_url": base_url, "token": token, "ids": ids, "alert_ids": alert_ids,
                                     "connections": connections, "seconds": seconds}))
    spec_path.chmod(0o600)  # it holds a token
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load", "--client", str(spec_path), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
    finally:
        spec_path.unlink(missing_ok=True)
    raw = json.loads(out)
    return summarise(raw["samples"], raw["statuses"], raw["seconds"])


def _ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _errors(statuses: dict[str, int], kind: str) -> int:
    # A second acknowledge of an alert is refused (409): expected under this mix, not an error.
    ok = {"200", "409"} if kind == "acknowledge" else {"200"}
    return sum(n for status, n in statuses.items() if status not in ok)


def summarise(samples: dict[str, list[float]], statuses: dict[str, dict[str, int]], seconds: float,
              ) -> dict[str, Any]:
    every = [s for values in samples.values() for s in values]
    per_endpoint = {
        kind: {"requests": len(values), "requests_per_s": round(len(values) / seconds, 1), "p50_ms": _ms(values, 0.5),
               "p95_ms": _ms(values, 0.95), "p99_ms": _ms(values, 0.99), "errors": _errors(statuses[kind], kind),
               "statuses": statuses[kind]}
        for kind, values in samples.items()}
    return {"overall": {"requests": len(every), "requests_per_s": round(len(every) / seconds, 1),
                        "p50_ms": _ms(every, 0.5), "p95_ms": _ms(every, 0.95), "p99_ms": _ms(every, 0.99),
                        "errors": sum(e["errors"] for e in per_endpoint.values())},
            "per_endpoint": per_endpoint}


# -- the baseline: the same app under plain uvicorn ------------------------------------------------------------


def uvicorn_app() -> Any:
    """``uvicorn --factory bench.load:uvicorn_app``: the app with the settings of the stack under test."""
    from config import load_settings
    from config.secrets import resolve_secrets
    from serve.app import build_app

    return build_app(resolve_secrets(load_settings()))


def start_uvicorn(stack: Any) -> tuple[subprocess.Popen[bytes], str]:
    s = stack.settings
    port = free_port()
    env = {**os.environ, "WELLPULSE_DATA_DIR": str(s.data_dir), "WELLPULSE_DATABASE_URL": s.database_url,
           "WELLPULSE_NATS_URL": s.nats_url, "WELLPULSE_RATE_LIMIT_USER_PER_MINUTE": str(RATE_LIMIT_USER_PER_MINUTE),
           "WELLPULSE_RATE_LIMIT_TENANT_PER_HOUR": str(RATE_LIMIT_TENANT_PER_HOUR)}
    with open(Path(s.data_dir) / "uvicorn.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.load:uvicorn_app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, 180, proc)  # importing Ray and the app takes a while on a busy machine
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"uvicorn did not start: see {s.data_dir}/uvicorn.log") from None
    return proc, f"http://127.0.0.1:{port}"


# -- the run ---------------------------------------------------------------------------------------------------


async def _prepare(stack: Any) -> tuple[str, list[str], str]:
    s = stack.settings
    tenant = new_tenant("load")
    fleet = demo_fleet(EQUIPMENT)  # what the feed publishes
    ids = [e.equipment_id for e in fleet]
    await stack.register_tenant(tenant, tenant, [(e.equipment_id, e.equipment_type.value, e.equipment_id)
                                                 for e in fleet])
    await _history(stack, tenant, ids)
    await asyncio.to_thread(ensure_user, s.database_url, tenant, "operator@load.example", role="operator",
                            password_hash=None)
    token = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, "operator@load.example", 60)
    return tenant, ids, token


async def _history(stack: Any, tenant: str, ids: list[str]) -> None:
    """A day of 1-minute readings of the pump jacks for the charts (as the owner), and a rule that keeps an alert
    open on each of them, opened by the real pipeline, to list and acknowledge."""
    pump_jacks = [e for e in ids if e.startswith("PJ-")]
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        end = (await conn.fetchval("SELECT now()")).replace(second=0, microsecond=0) - timedelta(minutes=5)
        await conn.execute(_LOAD_DAY, tenant, [s.name for s in SENSORS], [s.low for s in SENSORS],
                           [s.high for s in SENSORS], pump_jacks, end - timedelta(days=1), end, [], end,
                           timedelta(minutes=1), end)
        await rebuild_latest(conn, tenant)  # the day went in past the writer
        await conn.execute(
            "INSERT INTO alert_rules (tenant_id, id, equipment_type, kind, params) VALUES ($1, 'load_tubing', "
            " 'pump_jack', 'threshold', '{\"sensor\": \"tubing_psi\", \"high\": 1, \"for_seconds\": 0,"
            " \"severity\": \"warning\"}')", tenant)
        await conn.execute("VACUUM ANALYZE readings")
    finally:
        await conn.close()
    nc = await nats.connect(stack.nats_url)
    await nc.publish(f"ctl.{tenant}", b'{"reload": "rules"}')
    await nc.close()


async def _alert_ids(stack: Any, tenant: str, expect: int, timeout: float = 120.0) -> list[str]:
    """The open alerts of the rule, once the feed has opened one on each pump jack."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch("SELECT id::text FROM alerts WHERE tenant_id = $1 AND state <> 'resolved'",
                                    tenant)
            if len(rows) >= expect or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    finally:
        await conn.close()
    if not rows:
        raise RuntimeError("the feed opened no alert: is ingest running?")
    return [r["id"] for r in rows]


async def _warm(base_url: str, token: str, ids: list[str], alert_ids: list[str]) -> None:
    await drive(base_url, token, ids, alert_ids, connections=4, seconds=3)


async def main(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"benchmark": "load", "connections": args.connections, "seconds": args.seconds,
                              "feed_values_per_s": args.feed_rate, "mix": dict(MIX),
                              "rate_limits_raised_for_this_run": {
                                  "rate_limit_user_per_minute": RATE_LIMIT_USER_PER_MINUTE,
                                  "rate_limit_tenant_per_hour": RATE_LIMIT_TENANT_PER_HOUR},
                              "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    stack = await asyncio.to_thread(start_stack, serve_http=True, serve_replicas=args.replicas,
                                    rate_limit_user_per_minute=RATE_LIMIT_USER_PER_MINUTE,
                                    rate_limit_tenant_per_hour=RATE_LIMIT_TENANT_PER_HOUR)
    stop = asyncio.Event()
    try:
        tenant, ids, token = await _prepare(stack)
        feed = asyncio.create_task(run_simulation(
            stack.nats_url, tenant, equipment=EQUIPMENT, rate=args.feed_rate, fault_every=None, stop=stop,
            ensure_stream=False))
        alert_ids = await _alert_ids(stack, tenant, expect=sum(e.startswith("PJ-") for e in ids))
        await _warm(stack.base_url, token, ids, alert_ids)
        result["wellpulse"] = await drive(stack.base_url, token, ids, alert_ids, connections=args.connections,
                                          seconds=args.seconds)
        proc, url = await asyncio.to_thread(start_uvicorn, stack)
        try:
            await _warm(url, token, ids, alert_ids)
            result["baseline_uvicorn"] = await drive(url, token, ids, alert_ids, connections=args.connections,
                                                     seconds=args.seconds)
        finally:
            proc.terminate()
            proc.wait(10)
        stop.set()
        await asyncio.wait_for(feed, 30)
        ours, base = result["wellpulse"]["overall"], result["baseline_uvicorn"]["overall"]
        result["overall"] = ours
        result["ratio_vs_uvicorn"] = round(ours["requests_per_s"] / max(base["requests_per_s"], 0.1), 2)
        result["bars"] = {"requests_per_s": 1000, "p95_ms": 200, "errors": 0, "ratio_vs_uvicorn": 0.6}
        result["meets_bars"] = (ours["requests_per_s"] >= 1000 and ours["p95_ms"] < 200 and ours["errors"] == 0
                                and result["ratio_vs_uvicorn"] >= 0.6)
        result.update({"serve_replicas": stack.settings.serve_replicas, "db_pool_size": stack.settings.db_pool_size,
                       "load_average_1m_at_end": round(os.getloadavg()[0], 2)})
        emit(result)
    finally:
        stop.set()
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--feed-rate", type=float, default=5000.0, help="sensor values per second, demo feed")
    parser.add_argument("--replicas", type=int, default=1, help="Serve replicas of the API")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the load generator's own process
    parsed = parser.parse_args()
    if parsed.client:
        client_main(parsed.client)
    else:
        asyncio.run(main(parsed))
