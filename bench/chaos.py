"""Chaos: one fault at a time under a steady feed, and proof that nothing was lost or doubled.

A feed of pump-jack snapshots (five sensors each) runs across ``--tenants`` tenants for the whole run, the
way a SCADA gateway sends: every message has a ``Nats-Msg-Id``, and one that JetStream did not acknowledge
(the server is down) is kept and sent again later (store and forward). Every so often a reading crosses a
threshold rule (``chaos_high``) for three snapshots: one incident, which must open exactly one alert. One
operator per tenant watches the alert WebSocket and, like the console, reconnects with ``since`` whenever
the socket drops.

Faults, one at a time, each followed by the time until ingest moves again:

- ``nats``: kill -9 of the NATS server, restarted after ``--nats-down`` seconds on its JetStream file store;
- ``postgres``: PostgreSQL stopped (fast shutdown) for ``--pg-down`` seconds: while it is down ``/health``
  must say degraded and the REST API answer 503 with the error envelope, and nothing may go to the DLQ;
- ``tenant_actor``, ``equipment_actor``, ``supervisor``, ``serve_replica``, ``serve_controller``: kill -9
  (``ray.kill``) of that Ray actor;
- ``node``: a second Ray node (started on this machine before the tenants, so Ray spreads some onto it)
  killed with kill -9 while it hosts tenants: they must restart on the head and lose nothing;
- ``ws``: one operator's socket closed for ``--ws-down`` seconds, then resumed with ``since``;
- ``flood``: the first tenant sends ten times its share for ``--flood-seconds`` (nine shares more, from equipment
  of its own): the other tenants' alert latency (an incident's first snapshot sent to its ``opened`` event on
  the operator's socket) during the flood is set against the same latency before the first fault.

After the last fault the feed stops and the checks run: every acknowledged reading stored exactly once (count
and checksum by key), every incident opened one ``chaos_high`` alert and no more, and every operator got
each of its tenant's alert events exactly once, in order. Prints JSON (``scenarios``, then ``lost`` and
``duplicated`` totals) and exits 1 on any loss or duplicate.

    python -m bench.chaos [--tenants 5] [--rate 2500] [--only nats,postgres] [--pg-down 60] [--nats-down 10]

Baseline in the same run: the feed's rate with no fault (readings per second stored, before the first
fault), against which each recovery is read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import nats
import ray
import websockets
from nats.errors import Error as NatsError

from actors.common import NAMESPACE
from actors.supervisor import SUPERVISOR_NAME, tenant_actor_name
from bench.common import SecondRayNode, emit, new_tenant, start_stack
from cli.tenant import mint_user_token
from schema.subjects import DLQ_STREAM, tele_subject
from serve.runtime import Stack
from store.admin import ensure_user

SCENARIOS = ("nats", "postgres", "tenant_actor", "equipment_actor", "supervisor", "serve_replica",
             "serve_controller", "node", "ws", "flood")
FLOOD_PREFIX = "FLOOD-"  # the flooding tenant's extra equipment; their readings are not part of the checks
EQUIPMENT_PER_TENANT = 4
SENSORS = ("motor_current_a", "polished_rod_load_lbf", "strokes_per_minute", "tubing_psi", "casing_psi")
INCIDENT_EVERY = 400  # snapshots of one equipment between two incidents
INCIDENT_LENGTH = 3
RULE = {"id": "chaos_high", "kind": "threshold",
        "params": {"sensor": "motor_current_a", "high": 1000, "for_seconds": 0, "severity": "warning"}}


def _values(i: int) -> dict[str, float]:
    """Snapshot ``i`` of an equipment: a gentle cycle, and an incident every `INCIDENT_EVERY` snapshots."""
    cycle = math.sin(2 * math.pi * i / 97.0)
    current = 5_000.0 if i % INCIDENT_EVERY < INCIDENT_LENGTH and i >= INCIDENT_EVERY else 40.0 + 2.0 * cycle
    return {"motor_current_a": current, "polished_rod_load_lbf": 12_000.0 + 300.0 * cycle,
            "strokes_per_minute": 8.0 + 0.1 * cycle, "tubing_psi": 150.0 + 3.0 * cycle, "casing_psi": 60.0 + cycle}


@dataclass
class Feed:
    """The gateway: paced publishing with store and forward; remembers what JetStream acknowledged."""

    url: str
    tenants: list[str]
    rate: float  # sensor values per second, all tenants together
    start: datetime
    acked: dict[tuple[str, str], set[int]] = field(default_factory=lambda: defaultdict(set))
    generated: int = 0
    retried: int = 0
    resent: set[tuple[str, str, int]] = field(default_factory=set)  # snapshots published more than once
    incident_sent: dict[tuple[str, str, int], float] = field(default_factory=dict)  # wall time, first send
    unacked_at_end: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def ts(self, i: int) -> datetime:
        return self.start + timedelta(milliseconds=250 * i)

    @property
    def snapshot_index(self) -> int:
        """The index of the snapshot each equipment is being sent now."""
        return self.generated // (len(self.tenants) * EQUIPMENT_PER_TENANT)

    async def run(self, flush_timeout: float = 120.0) -> None:
        pairs = [(t, f"PJ-{k + 1}") for t in self.tenants for k in range(EQUIPMENT_PER_TENANT)]
        per_second = self.rate / len(SENSORS)
        async def quiet(exc: Exception) -> None:  # a server that is down is the point here, not news
            pass

        nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=quiet)
        js = nc.jetstream(timeout=2.0)
        backlog: list[tuple[str, str, int]] = []
        began = time.monotonic()
        stopped_at: float | None = None
        try:
            while True:
                if self.stop.is_set() and stopped_at is None:
                    stopped_at = time.monotonic()
                if stopped_at is not None and (not backlog or time.monotonic() - stopped_at > flush_timeout):
                    break
                self.retried += len(backlog)
                self.resent.update(backlog)
                batch, backlog = backlog, []
                due = (time.monotonic() - began) * per_second
                while stopped_at is None and self.generated < due and len(batch) < 1_000:
                    tenant, equipment = pairs[self.generated % len(pairs)]
                    batch.append((tenant, equipment, self.generated // len(pairs)))
                    self.generated += 1
                futures = []
                for tenant, equipment, n in batch:
                    if n >= INCIDENT_EVERY and n % INCIDENT_EVERY == 0:
                        self.incident_sent.setdefault((tenant, equipment, n), time.time())
                    body = json.dumps({"equipment_id": equipment, "ts": self.ts(n).isoformat(),
                                       "values": _values(n)}).encode()
                    try:
                        fut = await js.publish_async(tele_subject(tenant, equipment), body,
                                                     headers={"Nats-Msg-Id": f"{tenant}:{equipment}:{n}"})
                        futures.append((tenant, equipment, n, fut))
                    except (NatsError, TimeoutError, OSError):
                        backlog.append((tenant, equipment, n))
                for tenant, equipment, n, fut in futures:
                    try:
                        await asyncio.wait_for(fut, 5.0)
                        self.acked[(tenant, equipment)].add(n)
                    except (NatsError, TimeoutError, OSError, asyncio.CancelledError):
                        backlog.append((tenant, equipment, n))
                await asyncio.sleep(0.05 if not backlog else 0.5)
        finally:
            self.unacked_at_end = len(backlog)
            with contextlib.suppress(Exception):
                await nc.close()


class Operator:
    """One tenant's operator on the alert WebSocket, reconnecting with ``since`` like the console does."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.seqs: list[int] = []
        self.opened: list[tuple[str, str, float]] = []  # chaos_high openings: equipment, occurred_at, received
        self.reconnects = 0
        self.paused = asyncio.Event()
        self.paused.set()  # set: allowed to be connected
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.paused.wait()
            since = f"&since={self.seqs[-1]}" if self.seqs else "&since=0"
            try:
                async with websockets.connect(f"{self.url}?min_severity=info{since}",
                                              additional_headers={"Authorization": f"Bearer {self.token}"},
                                              open_timeout=10) as ws:
                    while not self.stop.is_set() and self.paused.is_set():
                        with contextlib.suppress(TimeoutError):
                            message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                            if "seq" in message:
                                self.seqs.append(int(message["seq"]))
                                if message.get("kind") == "opened" and message.get("rule_id") == RULE["id"]:
                                    self.opened.append((message["equipment_id"], message["occurred_at"],
                                                        time.time()))
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass
            if not self.stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(0.5)


async def _tenant_nodes(stack: Stack, tenants: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for tenant in tenants:
        actor = await stack.supervisor.tenant.remote(tenant)
        try:
            out[tenant] = (await asyncio.wait_for(actor.stats.remote(), 5))["node_id"]
        except Exception:  # restarting: not placed yet
            out[tenant] = None
    return out


async def _kill_node(stack: Stack, node: SecondRayNode, tenants: list[str], timeout: float) -> dict[str, Any]:
    """Kill the second node; seconds until every tenant it hosted answers from another node."""
    hosted = [t for t, n in (await _tenant_nodes(stack, tenants)).items() if n == node.node_id]
    node.kill()
    began = time.monotonic()
    moved_after = None
    while time.monotonic() - began < timeout:
        now = await _tenant_nodes(stack, hosted)
        if all(n not in (None, node.node_id) for n in now.values()):
            moved_after = round(time.monotonic() - began, 1)
            break
        await asyncio.sleep(1.0)
    return {"tenants_on_node": len(hosted), "tenants_moved_seconds": moved_after}


async def _flood(url: str, tenant: str, values_per_s: float, seconds: float) -> int:
    """Extra snapshots from the tenant's own `FLOOD_PREFIX` equipment, paced at `values_per_s` for `seconds`
    (no incidents among them); returns how many JetStream acknowledged."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=5.0)
    per_second = values_per_s / len(SENSORS)
    start = datetime.now(UTC) - timedelta(hours=1)
    sent = acked = 0
    began = time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            futures = []
            while sent < elapsed * per_second and len(futures) < 1_000:
                equipment, n = f"{FLOOD_PREFIX}{sent % EQUIPMENT_PER_TENANT + 1}", sent // EQUIPMENT_PER_TENANT
                quiet = n if n % INCIDENT_EVERY >= INCIDENT_LENGTH else INCIDENT_LENGTH
                ts = start + timedelta(milliseconds=250 * n)
                body = json.dumps({"equipment_id": equipment, "ts": ts.isoformat(), "values": _values(quiet)}).encode()
                futures.append(await js.publish_async(tele_subject(tenant, equipment), body))
                sent += 1
            results = await asyncio.gather(*futures, return_exceptions=True)
            acked += sum(1 for r in results if not isinstance(r, BaseException))
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return acked


def _percentiles(xs: list[float]) -> dict[str, Any]:
    xs = sorted(xs)
    if not xs:
        return {"incidents": 0}
    return {"incidents": len(xs), "p50_ms": round(1000 * xs[len(xs) // 2]),
            "p95_ms": round(1000 * xs[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)]), "max_ms": round(1000 * xs[-1])}


def alert_latency(feed: Feed, operators: list[Operator], tenants: list[str], windows: dict[str, tuple[float, float]],
                  skip_tenant: str) -> dict[str, Any]:
    """The other tenants' alert latency in each wall-clock window: an incident's first snapshot sent to its
    ``opened`` event received on the operator's socket."""
    received: dict[tuple[str, str, int], float] = {}
    for tenant, op in zip(tenants, operators, strict=True):
        for equipment, occurred_at, at in op.opened:
            k = round((datetime.fromisoformat(occurred_at) - feed.start).total_seconds() / 0.25)
            received.setdefault((tenant, equipment, k - k % INCIDENT_EVERY), at)
    out: dict[str, Any] = {}
    for name, (lo, hi) in windows.items():
        out[name] = _percentiles([received[key] - sent for key, sent in feed.incident_sent.items()
                                  if key[0] != skip_tenant and lo <= sent < hi and key in received])
    return out


async def _wait_progress(url: str, before: int, timeout: float) -> float | None:
    """Seconds until the readings table grows past `before` (None: it did not within `timeout`)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await _count_safe(url) > before:
            return round(time.monotonic() - began, 2)
        await asyncio.sleep(0.5)
    return None


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


async def _dlq_messages(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(DLQ_STREAM)).state.messages
    finally:
        await nc.close()


def _kill_named(name: str, namespace: str) -> bool:
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(handle, no_restart=False)
    return True


def _serve_actor(prefix: str) -> tuple[str, str] | None:
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["name"].startswith(prefix):
            return entry["name"], entry["namespace"]
    return None


async def run_scenario(name: str, stack: Stack, tenants: list[str], operators: list[Operator],
                       args: argparse.Namespace, http: httpx.AsyncClient, admin_token: str,
                       second_node: SecondRayNode | None = None) -> dict[str, Any]:
    url = stack.settings.database_url
    before = await _count(url)
    began = time.monotonic()
    out: dict[str, Any] = {"scenario": name}
    if name == "nats":
        assert stack.nats is not None and stack.nats.proc is not None
        stack.nats.proc.kill()
        stack.nats.proc.wait(10)
        await asyncio.sleep(args.nats_down)
        await asyncio.to_thread(stack.nats.start)
    elif name == "postgres":
        assert stack.pg is not None
        dlq_before = await _dlq_messages(stack.settings.nats_url)
        await asyncio.to_thread(stack.pg.stop)
        await asyncio.sleep(min(5.0, args.pg_down))
        health = await http.get("/health")
        api = await http.get("/v1/alerts", headers={"Authorization": f"Bearer {admin_token}"})
        out["while_down"] = {"health_status": health.status_code, "health": health.json().get("status"),
                             "api_status": api.status_code, "api_error_envelope": "error" in api.json()}
        await asyncio.sleep(max(0.0, args.pg_down - 5.0))
        await asyncio.to_thread(stack.pg.start)
        out["dlq_added"] = await _dlq_messages(stack.settings.nats_url) - dlq_before
    elif name == "tenant_actor":
        out["killed"] = _kill_named(tenant_actor_name(tenants[0]), NAMESPACE)
    elif name == "equipment_actor":
        found = _serve_actor(f"equipment:{tenants[1 % len(tenants)]}:")
        out["killed"] = found is not None and _kill_named(*found)
    elif name == "supervisor":
        out["killed"] = _kill_named(SUPERVISOR_NAME, NAMESPACE)
    elif name == "serve_replica":
        found = _serve_actor("SERVE_REPLICA::")
        out["killed"] = found is not None and _kill_named(*found)
    elif name == "serve_controller":
        out["killed"] = _kill_named("SERVE_CONTROLLER_ACTOR", "serve")
    elif name == "node":
        if second_node is None:
            out["skipped"] = "no second node"
        else:
            out.update(await _kill_node(stack, second_node, tenants, args.recover_timeout))
    elif name == "ws":
        operators[0].paused.clear()
        await asyncio.sleep(args.ws_down)
        operators[0].paused.set()
    elif name == "flood":
        window_start = time.time()
        out["flood_values_per_s"] = round(9 * args.rate / len(tenants))
        out["flood_snapshots_acked"] = await _flood(stack.settings.nats_url or "", tenants[0],
                                                    9 * args.rate / len(tenants), args.flood_seconds)
        out["window"] = (window_start, time.time())
    out["fault_seconds"] = round(time.monotonic() - began, 2)
    out["recovery_seconds"] = await _wait_progress(url, max(before, await _count_safe(url)), args.recover_timeout)
    if name in ("serve_replica", "serve_controller", "postgres"):
        out["http_recovery_seconds"] = await _wait_http(http, args.recover_timeout)
    return out


async def _count_safe(url: str) -> int:
    with contextlib.suppress(Exception):
        return await _count(url)
    return 0


async def _wait_http(http: httpx.AsyncClient, timeout: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/health/db", timeout=3)).status_code == 200:
                return round(time.monotonic() - began, 2)
        await asyncio.sleep(0.5)
    return None


async def check(stack: Stack, feed: Feed, operators: list[Operator], tenants: list[str],
                timeout: float, phases: list[tuple[str, int]]) -> dict[str, Any]:
    """What was acknowledged against what is stored; incidents against alerts; events against sockets."""
    expected = sum(len(ns) * len(SENSORS) for ns in feed.acked.values())
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if int(await conn.fetchval("SELECT count(*) FROM readings WHERE equipment_id NOT LIKE $1",
                                       FLOOD_PREFIX + "%")) >= expected:
                break
            await asyncio.sleep(1.0)
        lost = duplicated = 0
        mismatched = 0
        for (tenant, equipment), ns in feed.acked.items():
            rows = await conn.fetch(
                "SELECT ts, count(*) AS c, sum(value) AS s FROM readings WHERE tenant_id = $1 AND equipment_id = $2"
                " GROUP BY ts", tenant, equipment)
            got = {r["ts"]: (r["c"], r["s"]) for r in rows}
            for k in ns:
                c, s = got.get(feed.ts(k), (0, 0.0))
                lost += max(0, len(SENSORS) - c)
                duplicated += max(0, c - len(SENSORS))
                if c == len(SENSORS) and not math.isclose(s, sum(_values(k).values()), rel_tol=1e-9):
                    mismatched += 1
        # An incident counts when all its snapshots were acknowledged (and the one after it, which ends it).
        incidents = {(t, e): {k for k in range(INCIDENT_EVERY, max(ns, default=0), INCIDENT_EVERY)
                              if all(k + j in ns for j in range(INCIDENT_LENGTH + 1))}
                     for (t, e), ns in feed.acked.items()}
        opened = await conn.fetch("SELECT tenant_id, equipment_id, opened_at FROM alerts WHERE rule_id = $1",
                                  RULE["id"])
        hits: dict[tuple[str, str, int], int] = defaultdict(int)
        for r in opened:
            k = round((r["opened_at"] - feed.start).total_seconds() / 0.25)
            hits[(r["tenant_id"], r["equipment_id"], k - k % INCIDENT_EVERY)] += 1
        missing = [(t, e, k) for (t, e), ks in incidents.items() for k in ks if hits.get((t, e, k), 0) == 0]
        alerts_missing = len(missing)
        alerts_doubled = sum(c - 1 for c in hits.values() if c > 1)
        ws_lost = ws_doubled = ws_out_of_order = 0
        for tenant, op in zip(tenants, operators, strict=True):
            seqs = [r["seq"] for r in await conn.fetch(
                "SELECT seq FROM alert_events WHERE tenant_id = $1 ORDER BY seq", tenant)]
            got_seqs = op.seqs
            ws_doubled += len(got_seqs) - len(set(got_seqs))
            ws_out_of_order += sum(1 for a, b in itertools.pairwise(got_seqs) if b <= a)
            ws_lost += len(set(seqs) - set(got_seqs))
    finally:
        await conn.close()
    return {
        "readings": {"acked": expected, "lost": lost, "duplicated": duplicated, "checksum_mismatches": mismatched},
        "alerts": {"incidents": sum(len(v) for v in incidents.values()), "missing": alerts_missing,
                   "doubled": alerts_doubled, "missing_by_phase": _missing_by_phase(missing, feed, phases)},
        "websocket": {"lost": ws_lost, "duplicated": ws_doubled, "out_of_order": ws_out_of_order,
                      "reconnects": sum(op.reconnects for op in operators)},
    }


def _missing_by_phase(missing: list[tuple[str, str, int]], feed: Feed,
                      phases: list[tuple[str, int]]) -> dict[str, dict[str, int]]:
    """Missing incidents by the fault (or the settling after it) during which they were sent, and how many of
    them had a snapshot sent again after a refused publish (it then reached the models after later ones)."""
    out: dict[str, dict[str, int]] = {}
    for t, e, k in missing:
        phase = "before_faults"
        for name, first in phases:
            if k >= first:
                phase = name
        row = out.setdefault(phase, {"missing": 0, "with_resent_snapshot": 0})
        row["missing"] += 1
        if any((t, e, k + j) in feed.resent for j in range(INCIDENT_LENGTH + 1)):
            row["with_resent_snapshot"] += 1
    return out


async def main(args: argparse.Namespace) -> int:
    stack = await asyncio.to_thread(start_stack, serve_http=True)
    chosen = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    second_node = None
    try:
        if "node" in chosen and stack.ray_address is not None:
            second_node = SecondRayNode(stack.ray_address)  # before the tenants, so that some are placed on it
            await second_node.joined()
        tenants = [new_tenant("chaos") for _ in range(args.tenants)]
        conn = await asyncpg.connect(stack.settings.database_url)
        try:
            for tenant in tenants:
                await stack.register_tenant(tenant, tenant, [(f"PJ-{k + 1}", "pump_jack", f"PJ-{k + 1}")
                                                             for k in range(EQUIPMENT_PER_TENANT)])
                await conn.execute("INSERT INTO alert_rules (tenant_id, id, kind, params) VALUES ($1, $2, $3, $4)",
                                   tenant, RULE["id"], RULE["kind"], json.dumps(RULE["params"]))
        finally:
            await conn.close()
        tokens = []
        for tenant in tenants:
            ensure_user(stack.settings.database_url, tenant, "operator@chaos.example", role="admin", password_hash=None)
            tokens.append(mint_user_token(stack.settings, stack.settings.database_url, tenant,
                                          "operator@chaos.example", 600))
        nc = await nats.connect(stack.settings.nats_url)
        for tenant in tenants:
            await nc.publish(f"ctl.{tenant}", b'{"reload": "rules"}')
        await nc.close()
        ws_url = f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws"
        operators = [Operator(ws_url, t) for t in tokens]
        op_tasks = [asyncio.create_task(op.run()) for op in operators]
        feed = Feed(stack.settings.nats_url, tenants, args.rate, datetime.now(UTC) - timedelta(hours=2))
        feed_task = asyncio.create_task(feed.run())
        results: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
            await asyncio.sleep(args.warmup)
            c0, t0 = await _count(stack.settings.database_url), time.monotonic()
            await asyncio.sleep(args.settle)
            baseline = (await _count(stack.settings.database_url) - c0) / (time.monotonic() - t0)
            phases: list[tuple[str, int]] = []
            faults_began = time.time()
            for name in chosen:
                phases.append((name, feed.snapshot_index))
                print(f"chaos: {name} ...", file=sys.stderr, flush=True)
                results.append(await run_scenario(name, stack, tenants, operators, args, http, tokens[0],
                                                  second_node))
                print(f"chaos: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
                await asyncio.sleep(args.settle)
        feed.stop.set()
        await feed_task
        await asyncio.sleep(args.settle)
        checks = await check(stack, feed, operators, tenants, args.recover_timeout, phases)
        for result in results:
            if result["scenario"] == "flood":
                during = result.pop("window")
                latency = alert_latency(feed, operators, tenants, {
                    "before_faults": (0.0, faults_began), "during_flood": (during[0], during[1])}, tenants[0])
                result["other_tenants_alert_latency"] = latency
                before, flood = latency["before_faults"], latency["during_flood"]
                if before.get("incidents") and flood.get("incidents"):
                    result["p95_ratio"] = round(flood["p95_ms"] / max(before["p95_ms"], 1), 2)
                    result["fair"] = result["p95_ratio"] <= 2.0  # the bar: within 2x of normal
        for op in operators:
            op.stop.set()
        await asyncio.gather(*op_tasks, return_exceptions=True)
        lost = checks["readings"]["lost"] + checks["alerts"]["missing"] + checks["websocket"]["lost"]
        duplicated = (checks["readings"]["duplicated"] + checks["alerts"]["doubled"]
                      + checks["websocket"]["duplicated"] + checks["websocket"]["out_of_order"])
        emit({"benchmark": "chaos", "lost": lost, "duplicated": duplicated, "scenarios": results, **checks,
              "feed": {"target_values_per_s": args.rate, "tenants": args.tenants,
                       "equipment": args.tenants * EQUIPMENT_PER_TENANT, "snapshots": feed.generated,
                       "resent_after_refusal": feed.retried, "never_acknowledged": feed.unacked_at_end},
              "baseline_values_per_s_without_faults": round(baseline * 1.0)})
        return 0 if lost == 0 and duplicated == 0 else 1
    finally:
        if second_node is not None:
            second_node.kill()
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2_500.0, help="sensor values per second, all tenants")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--nats-down", type=float, default=10.0)
    parser.add_argument("--pg-down", type=float, default=60.0)
    parser.add_argument("--ws-down", type=float, default=30.0)
    parser.add_argument("--flood-seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--recover-timeout", type=float, default=120.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
