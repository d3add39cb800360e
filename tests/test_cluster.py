"""Two Ray nodes: tenants spread over them, and a node lost while it hosts a tenant loses nothing.

A second node joins the session's cluster from this machine (``ray start --address``, a temp dir and CPUs of
its own), as a second machine would. The Supervisor spreads new tenants over the nodes (Ray's SPREAD);
killing the node (kill -9 of its processes) must move its tenants' actors to the head, where they go on
ingesting and alerting, every reading stored once.
"""

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import ray

from bench.common import SecondRayNode
from tests.helpers import create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.test_streaming_e2e import TUBING_RULE, pump_jack_values

NODE_CPUS = 2


@pytest.fixture
def second_node(stack: Any) -> Iterator[SecondRayNode]:
    """A second Ray node in the session's cluster; after the test, gone and declared dead by Ray (until then it
    may place the next test's tenants there)."""
    if stack.ray_address is None:
        pytest.skip("Ray was not started by these tests")
    node = SecondRayNode(stack.ray_address, cpus=NODE_CPUS)
    try:
        yield node
    finally:
        node.kill()
        node.wait_dead()


async def _node_of(stack: Any, tenant: str) -> str | None:
    actor = await stack.supervisor.tenant.remote(tenant)
    try:
        stats = await asyncio.wait_for(actor.stats.remote(), 5)
    except Exception:  # restarting on another node: not there yet
        return None
    return str(stats["node_id"])


async def test_tenants_spread_over_two_nodes_and_move_when_one_is_lost(
        stack: Any, second_node: SecondRayNode) -> None:
    head = ray.get_runtime_context().get_node_id()
    other = await second_node.joined()
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

        second_node.kill()  # kill -9 of the node's raylet (its workers follow when they notice)
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
