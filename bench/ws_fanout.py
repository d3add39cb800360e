"""WebSocket fan-out: many operators of many tenants on the alert socket while alert events are committed. Prints
JSON.

``--tenants`` tenants with ``--clients-per-tenant`` sockets each (``/v1/alerts/ws``, authenticated as an
operator of the tenant) while alert events are committed at ``--rate`` per second in all, spread over the
tenants, the way the equipment actors commit them (`store.alerts.persist_changes`, then the ALERTS publish).
Checked: every client gets exactly its own tenant's events, in commit order. Measured: per event, from its
commit to the moment the *last* of its tenant's clients has it (p50/p99/max); the memory per idle socket
(the replicas' resident memory before and after the sockets open).

Baseline in the same run: the same events published on core NATS to as many subscribers (one per socket, on
``--tenants`` connections), publish to the last subscriber.

    python -m bench.ws_fanout [--tenants 10] [--clients-per-tenant 100] [--rate 50] [--seconds 30]

The per-principal socket cap (``ws_max_per_principal``, 5 by default) is raised for this run so that one
operator account per tenant can hold its clients; the per-tenant cap is raised to the clients per tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil
import websockets

from bench.common import emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from store import db
from store.admin import ensure_user
from store.alerts import AlarmChange, persist_changes
from store.embedded import free_port

EQUIPMENT = "FAN-1"
RULE = "fanout"


# -- the clients (a process of their own) -----------------------------------------------------------------------


async def _clients(spec: dict[str, Any]) -> dict[str, Any]:
    """Open every socket (``spec["mode"]``: "ws", or "nats" for the baseline), say so on stdout, read until a line
    arrives on stdin; then (tenant, [(seq, received at)]) per socket."""
    received: list[list[tuple[int, float]]] = []
    tenants: list[str] = []
    closed: dict[str, int] = {}
    opened: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    conns: list[Any] = []

    async def socket(tenant: str, token: str, log: list[tuple[int, float]]) -> None:
        async with websockets.connect(f"{spec['ws_url']}?token={token}", max_queue=None, open_timeout=60) as ws:
            opened.append(1)
            try:
                while True:
                    raw = await ws.recv()
                    # Only the seq is read: parsing the whole event would make the clients the bottleneck.
                    at = raw.index('"seq":') + 6
                    log.append((int(raw[at:raw.index(",", at)]), time.time()))
            except websockets.ConnectionClosed as exc:
                code = str(exc.rcvd.code if exc.rcvd else "none")
                closed[code] = closed.get(code, 0) + 1

    for tenant, token in spec["tokens"].items():
        logs = [[] for _ in range(spec["per_tenant"])]
        received.extend(logs)
        tenants.extend([tenant] * len(logs))
        if spec["mode"] == "nats":
            nc = await nats.connect(spec["nats_url"])
            conns.append(nc)
            for log in logs:
                async def got(msg: Any, log: list[tuple[int, float]] = log) -> None:
                    log.append((int(msg.data), time.time()))
                await nc.subscribe(f"bench.fanout.{tenant}", cb=got)
                opened.append(1)
            continue
        for log in logs:
            tasks.append(asyncio.create_task(socket(tenant, token, log)))
            await asyncio.sleep(0.002)  # a connect storm is not what is measured
    deadline = time.monotonic() + 120
    while len(opened) < len(received) and time.monotonic() < deadline:  # noqa: ASYNC110  polls a count
        await asyncio.sleep(0.1)
    print(f"ready {len(opened)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(2)  # the last events are still on their way
    for task in tasks:
        task.cancel()
    for nc in conns:
        await nc.close()
    return {"opened": len(opened), "tenants": tenants, "received": received, "closed_codes": closed}


def client_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(_clients(spec))), flush=True)


class Clients:
    """The clients' process: opened with `start`, told to stop and read by `finish`."""

    def __init__(self, spec: dict[str, Any], work: Path) -> None:
        self.spec, self.work = spec, work
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> int:
        path = self.work / f"fanout-{free_port()}.json"
        await asyncio.to_thread(path.write_text, json.dumps(self.spec))
        await asyncio.to_thread(path.chmod, 0o600)  # it holds tokens
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.ws_fanout", "--client", str(path), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 300)
        if not line.startswith(b"ready"):
            raise RuntimeError("the client process ended before its sockets opened")
        return int(line.split()[1])

    async def finish(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        out, _ = await self.proc.communicate()
        return dict(json.loads(out))


# -- the run ---------------------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(ordered[-1], 1), "samples": len(ordered)}


async def _warm(base_url: str, token: str) -> None:
    """One socket opened and closed: the replica's connections and hub exist before memory is measured."""
    ws_url = base_url.replace("http://", "ws://") + f"/v1/alerts/ws?token={token}"
    async with websockets.connect(ws_url, open_timeout=60):
        await asyncio.sleep(0.5)


def replica_rss(stack: Any) -> int:
    """Resident bytes of the API replicas (the processes holding the sockets)."""
    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("ServeReplica" in part for part in proc.info["cmdline"] or ()):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


async def _prepare(stack: Any, tenants: int) -> dict[str, str]:
    s = stack.settings
    tokens = {}
    for _ in range(tenants):
        tenant = new_tenant("fan")
        await stack.register_tenant(tenant, tenant, [(EQUIPMENT, "pump_jack", EQUIPMENT)])
        conn = await asyncpg.connect(s.database_url)
        try:
            await conn.execute(
                "INSERT INTO alert_rules (tenant_id, id, equipment_type, kind, params) VALUES ($1, $2, 'pump_jack',"
                " 'threshold', '{\"sensor\": \"tubing_psi\", \"high\": 1e9, \"severity\": \"warning\"}')",
                tenant, RULE)
        finally:
            await conn.close()
        email = f"operator@{tenant}.example"
        await asyncio.to_thread(ensure_user, s.database_url, tenant, email, role="operator", password_hash=None)
        tokens[tenant] = await asyncio.to_thread(mint_user_token, s, s.database_url, tenant, email, 60)
    return tokens


async def _produce(stack: Any, tenants: list[str], rate: float, seconds: float, *, bus_only: bool = False,
                   ) -> tuple[dict[tuple[str, int], float], dict[int, float]]:
    """Alert events at `rate` per second, round robin over the tenants: committed, then published, as an actor
    does; or, `bus_only`, numbered messages on core NATS (the baseline). Returns (tenant, seq) -> commit time,
    and message number -> publish time."""
    from actors.equipment import publish_alert_events

    pool = await db.create_pool(stack.settings.database_url, min_size=2, max_size=4)
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    committed: dict[tuple[str, int], float] = {}
    published: dict[int, float] = {}
    began = time.monotonic()
    n = 0
    try:
        while time.monotonic() - began < seconds:
            tenant = tenants[n % len(tenants)]
            if bus_only:
                published[n] = time.time()
                await nc.publish(f"bench.fanout.{tenant}", str(n).encode())
                n += 1
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                continue
            kind = "opened" if (n // len(tenants)) % 2 == 0 else "resolved"
            change = AlarmChange(kind=kind, equipment_id=EQUIPMENT, rule_id=RULE, severity="warning",
                                 ts=datetime.now(UTC), message=f"fan-out {n}", details={})
            events = await persist_changes(pool, tenant, [change])
            at = time.time()
            for row in events:
                committed[(tenant, int(row["seq"]))] = at
            await publish_alert_events(js, tenant, events)
            n += 1
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
    finally:
        await nc.close()
        await pool.close()
    return committed, published


async def main(args: argparse.Namespace) -> None:
    per_tenant = args.clients_per_tenant
    result: dict[str, Any] = {
        "benchmark": "ws_fanout", "tenants": args.tenants, "clients": args.tenants * per_tenant,
        "events_per_s": args.rate, "seconds": args.seconds,
        "caps_raised_for_this_run": {"ws_max_per_principal": per_tenant, "ws_max_per_tenant": per_tenant},
        "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    stack = await asyncio.to_thread(start_stack, serve_http=True, ws_max_per_principal=per_tenant,
                                    ws_max_per_tenant=per_tenant, rate_limit_user_per_minute=10**6,
                                    rate_limit_tenant_per_hour=10**9)
    work = Path(stack.settings.data_dir)
    try:
        tokens = await _prepare(stack, args.tenants)
        await _warm(stack.base_url, next(iter(tokens.values())))
        rss_before = replica_rss(stack)
        ws_url = stack.base_url.replace("http://", "ws://") + "/v1/alerts/ws"
        spec = {"ws_url": ws_url, "nats_url": stack.nats_url, "tokens": tokens, "per_tenant": per_tenant}
        # The baseline first, alone: the same events on core NATS to as many subscribers.
        clients = Clients({**spec, "mode": "nats"}, work)
        await clients.start()
        _, published = await _produce(stack, list(tokens), args.rate, args.seconds, bus_only=True)
        baseline = await clients.finish()
        clients = Clients({**spec, "mode": "ws"}, work)
        await clients.start()
        await asyncio.sleep(2)  # idle sockets settle
        rss_idle = replica_rss(stack)
        committed, _ = await _produce(stack, list(tokens), args.rate, args.seconds)
        raw = await clients.finish()
        result.update(check_and_measure(raw, baseline, committed, published))
        result["memory"] = {"replica_rss_before_mb": round(rss_before / 2**20, 1),
                            "replica_rss_idle_sockets_mb": round(rss_idle / 2**20, 1),
                            "kib_per_idle_socket": round((rss_idle - rss_before) / max(raw["opened"], 1) / 1024, 1)}
        result["ratio_p99_vs_core_nats"] = round(result["commit_to_last_client"]["p99_ms"]
                                                 / max(result["baseline_core_nats"]["p99_ms"], 0.01), 1)
        result["bars"] = {"p99_ms": 100, "exact_delivery": True}
        result["meets_bars"] = result["exact_delivery"] and result["commit_to_last_client"]["p99_ms"] <= 100
        result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
        emit(result)
    finally:
        await asyncio.to_thread(stack.stop)


def check_and_measure(raw: dict[str, Any], baseline: dict[str, Any], committed: dict[tuple[str, int], float],
                      published: dict[int, float]) -> dict[str, Any]:
    """Exactly its tenant's events, in order, for every client; latency to the last client of each event."""
    expected: dict[str, list[int]] = {}
    for tenant, seq in sorted(committed, key=lambda k: k[1]):
        expected.setdefault(tenant, []).append(seq)
    wrong = 0
    last_seen: dict[tuple[str, int], float] = {}
    for tenant, log in zip(raw["tenants"], raw["received"], strict=True):
        seqs = [seq for seq, _ in log]
        if seqs != expected.get(tenant, []):
            wrong += 1
        for seq, at in log:
            key = (tenant, seq)
            last_seen[key] = max(last_seen.get(key, 0.0), at)
    latencies = [1000 * (last_seen[k] - at) for k, at in committed.items() if k in last_seen]
    base_last: dict[int, float] = {}
    for log in baseline["received"]:
        for n, at in log:
            base_last[n] = max(base_last.get(n, 0.0), at)
    base = [1000 * (base_last[n] - at) for n, at in published.items() if n in base_last]
    return {"sockets_opened": raw["opened"], "events_committed": len(committed),
            "clients_with_wrong_events": wrong, "exact_delivery": wrong == 0 and raw["opened"] > 0,
            "closed_codes": raw["closed_codes"], "commit_to_last_client": _percentiles(latencies),
            "baseline_core_nats": _percentiles(base)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--clients-per-tenant", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="alert events per second, all tenants")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the clients' own process
    parsed = parser.parse_args()
    if parsed.client:
        client_main(parsed.client)
    else:
        asyncio.run(main(parsed))
