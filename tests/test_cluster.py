"""Two Ray nodes: tenants spread over them, and a node lost while it hosts a tenant loses nothing.

A second node joins the session's cluster from this machine (``ray start --address``, a temp dir and CPUs of
its own), as a second machine would. The Supervisor spreads new tenants over the nodes (Ray's SPREAD);
killing the node (kill -9 of its processes) must move its tenants' actors to the head, where they go on
ingesting and alerting, every reading stored once.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import ray

from actors.supervisor import alive_nodes
from tests.helpers import create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.test_streaming_e2e import TUBING_RULE, pump_jack_values

NODE_CPUS = 2


@pytest.fixture
def second_node(stack: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A second Ray node in the session's cluster, in its own process group so a test can kill all of it."""
    if stack.ray_address is None:
        pytest.skip("Ray was not started by these tests")
    ray_cli = Path(sys.executable).parent / "ray"
    # Short (Ray's socket paths must stay under 108 bytes) and outside pytest's temp dirs, whose parents are
    # private to their owner (the embedded PostgreSQL runs as another user and must reach its own dir there).
    temp_dir = Path(tempfile.mkdtemp(prefix="wp-node-"))
    log_file = open(temp_dir / "node.log", "ab")
    proc = subprocess.Popen(
        [str(ray_cli), "start", "--block", f"--address={stack.ray_address}", f"--temp-dir={temp_dir}",
         "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--num-cpus={NODE_CPUS}"],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    log_file.close()
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(temp_dir, ignore_errors=True)
        # Until Ray declares the node dead it may place the next test's tenants there: wait for that.
        deadline = time.monotonic() + 120
        while len(alive_nodes()) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)


async def _node_of(stack: Any, tenant: str) -> str | None:
    actor = await stack.supervisor.tenant.remote(tenant)
    try:
        stats = await asyncio.wait_for(actor.stats.remote(), 5)
    except Exception:  # restarting on another node: not there yet
        return None
    return str(stats["node_id"])


async def test_tenants_spread_over_two_nodes_and_move_when_one_is_lost(
        stack: Any, second_node: subprocess.Popen[bytes]) -> None:
    head = ray.get_runtime_context().get_node_id()

    async def two_nodes() -> dict[str, float] | None:
        nodes = alive_nodes()
        return nodes if len(nodes) == 2 else None

    nodes = await wait_for(two_nodes, timeout=120)  # a node starts in seconds, on a loaded machine in a minute
    other = next(n for n in nodes if n != head)
    tenants = [new_tenant_id("node") for _ in range(4)]
    for tenant in tenants:
        await create_tenant(stack, tenant, [("PJ-A", "pump_jack")], rules=[TUBING_RULE])
    placed = {tenant: await wait_for(lambda t=tenant: _node_of(stack, t)) for tenant in tenants}
    assert set(placed.values()) == {head, other}  # spread, not all on the head
    on_other = next(t for t, node in placed.items() if node == other)

    start = now_utc() - timedelta(minutes=5)

    def batch(first: int, last: int, incident: range = range(0)) -> list[tuple[str, bytes]]:
        return [("PJ-A", snapshot("PJ-A", start + timedelta(seconds=i),
                                  pump_jack_values(i, 4_000.0 if i in incident else None)))
                for i in range(first, last)]

    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        async def stored(tenant: str, rows: int) -> bool:
            n = await conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant)
            return int(n) == rows

        await publish(stack.settings.nats_url, on_other, batch(0, 20))
        await wait_for(lambda: stored(on_other, 20 * 5))

        os.killpg(second_node.pid, signal.SIGKILL)  # the node's raylet (its workers follow when they notice)
        # Ray declares the node dead after missed health checks, then restarts its actors on the head.

        async def moved() -> str | None:
            node = await _node_of(stack, on_other)
            return node if node not in (None, other) else None

        assert await wait_for(moved, timeout=120) == head

        await publish(stack.settings.nats_url, on_other, batch(20, 40, incident=range(30, 33)))
        await wait_for(lambda: stored(on_other, 40 * 5), timeout=60)
        opened = await wait_for(lambda: conn.fetchval(
            "SELECT count(*) FROM alerts WHERE tenant_id = $1 AND rule_id = 'tubing_high'", on_other), timeout=60)
        assert opened == 1
        per_ts = await conn.fetch("SELECT count(*) AS n FROM readings WHERE tenant_id = $1 GROUP BY ts", on_other)
        assert len(per_ts) == 40 and {r["n"] for r in per_ts} == {5}
    finally:
        await conn.close()
