"""Store-and-forward end to end: a gateway's steady feed through its edge buffer to the running stack, the WAN link
cut until the hub's stale-data alert opens, then restored. The backlog arrives marked historical: stored exactly
once, learned, no alert opened on its values, and the stale-data alert opened once and resolved by live data."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from gateway.config import EdgeConfig, NatsConfig
from gateway.publish import GatewayMetrics, open_publisher
from schema.telemetry import Reading
from store.embedded import EmbeddedNats
from tests.gateway_support import TcpProxy
from tests.helpers import auth, create_tenant, new_tenant_id, settled, wait_for

RULES = [{"id": "stale_data", "kind": "stale_data", "params": {"max_silence_seconds": 2}},
         {"id": "t_high", "kind": "threshold",
          "params": {"sensor": "tubing_psi", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}]
PERIOD_S = 0.1


async def test_the_backlog_after_a_cut_is_historical_and_the_stale_alert_fires_once(
        stack: Any, embedded_nats: EmbeddedNats, db_conn: asyncpg.Connection, http: Any, tmp_path: Path) -> None:
    tenant = new_tenant_id("edgeal")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack")], rules=RULES)
    embedded_nats.set_tenants(embedded_nats.tenants | {tenant})
    link = await TcpProxy(embedded_nats.port).start()
    hub_url = embedded_nats.feed_url(tenant).replace(f":{embedded_nats.port}", f":{link.port}")
    config = NatsConfig(tenant=tenant, edge=EdgeConfig(data_dir=tmp_path / "edge", late_after_s=1.0,
                                                       drain_timeout_s=10))
    metrics = GatewayMetrics()
    value = {"tubing_psi": 800.0}
    published = 0
    stop = asyncio.Event()

    async def count(where: str = "") -> int:
        return int(await db_conn.fetchval(f"SELECT count(*) FROM readings WHERE tenant_id = $1 {where}", tenant))

    async def alerts(rule: str) -> list[asyncpg.Record]:
        return list(await db_conn.fetch("SELECT state, opened_at FROM alerts WHERE tenant_id = $1 AND rule_id = $2",
                                        tenant, rule))

    try:
        async with open_publisher(config, hub_url, metrics, "test-edge-alerts") as publisher:
            async def feed() -> None:  # a steady 10 readings/s, timestamped when read, as a gateway does
                nonlocal published
                while not stop.is_set():
                    reading = Reading(equipment_id="PJ-1", ts=datetime.now(UTC), values=dict(value))
                    assert await publisher.publish(reading)  # the local buffer acknowledges, link or no link
                    published += 1
                    await asyncio.sleep(PERIOD_S)

            feeding = asyncio.create_task(feed())
            await wait_for(lambda: _at_least(count, 10), timeout=60)
            link.cut()
            value["tubing_psi"] = 1500.0  # out of limits, but only while the hub cannot see it
            await asyncio.sleep(1.5)
            value["tubing_psi"] = 800.0
            await wait_for(lambda: _true_async(alerts, "stale_data"), timeout=30, interval=0.2)
            await asyncio.sleep(1.5)  # what the buffer holds now is more than late_after_s old when it goes
            link.restore()

            async def stale_resolved() -> bool:
                return [r["state"] for r in await alerts("stale_data")] == ["resolved"]

            await wait_for(stale_resolved, timeout=30, interval=0.2)
            stop.set()
            await feeding
        await wait_for(lambda: _at_least(count, published), timeout=30)
        await settled(stack, tenant)
    finally:
        stop.set()
        await link.stop()

    assert await count() == published  # nothing lost, nothing doubled (one sensor: a row per reading)
    historical = await count("AND historical")
    assert historical == metrics.value("wellpulse_gateway_edge_forwarded_historical_total") >= 20
    assert await count("AND value > 1000 AND historical IS NOT TRUE") == 0  # every outage value came late
    assert len(await alerts("stale_data")) == 1  # opened once across the cut and the catch-up
    assert await alerts("t_high") == []  # learned from history, never alerted on
    others = await db_conn.fetch("SELECT rule_id, details FROM alerts WHERE tenant_id = $1 AND rule_id <> 'stale_data'",
                                 tenant)
    assert others == []  # nor did the anomaly rules open anything, on history or after it
    first_live = await db_conn.fetchval("SELECT min(ts) FROM readings WHERE tenant_id = $1 AND value > 1000",
                                        tenant)
    r = await http.get("/v1/equipment/PJ-1/readings", headers=auth(tenant), params={
        "from": first_live.isoformat(), "limit": 1, "include_quality": "true"})
    assert r.status_code == 200
    assert r.json()["data"][0] | {"ts": None} == {"sensor": "tubing_psi", "ts": None, "value": 1500.0,
                                                 "quality": "good", "historical": True}


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _true_async(alerts: Any, rule: str) -> bool:
    return bool(await alerts(rule))
