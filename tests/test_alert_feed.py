"""The operator's alert feed: resume with since, tenant isolation, filters."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import websockets

from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for


def threshold_rule(rule_id: str, sensor: str, high: float, severity: str = "warning") -> dict[str, Any]:
    return {"id": rule_id, "kind": "threshold",
            "params": {"sensor": sensor, "high": high, "for_seconds": 0, "severity": severity}}


def ws_url(stack: Any, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws" + (f"?{query}" if query else "")


async def drain(ws: Any, seconds: float) -> list[dict[str, Any]]:
    out = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                out.append(json.loads(await ws.recv()))
    except TimeoutError:
        return out


async def flip(stack: Any, tenant: str, equipment: str, start_s: int, values: list[float]) -> None:
    """Publish one meter reading per second starting ``start_s`` seconds after a fixed base."""
    base = now_utc().replace(microsecond=0) - timedelta(seconds=600)
    await publish(stack.settings.nats_url, tenant, [
        (equipment, snapshot(equipment, base + timedelta(seconds=start_s + i), {"flow_mcfd": v}))
        for i, v in enumerate(values)])


async def tenant_events(db_conn: Any, tenant: str, since: int) -> list[int]:
    rows = await db_conn.fetch("SELECT seq FROM alert_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq",
                               tenant, since)
    return [r["seq"] for r in rows]


async def test_reconnect_with_since_replays_exactly_what_was_missed(stack: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("resume")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")],
                        rules=[threshold_rule("flow_high", "flow_mcfd", 1000.0)])
    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant)) as ws:
        await flip(stack, tenant, "MTR-1", 0, [500.0] * 5 + [1500.0] * 3)
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["kind"] == "opened" and first["equipment_id"] == "MTR-1"
    since = first["seq"]
    # While the operator is away: MTR-1 recovers, MTR-2 opens and recovers.
    await flip(stack, tenant, "MTR-1", 8, [500.0] * 3)
    await flip(stack, tenant, "MTR-2", 0, [500.0] * 3 + [2000.0] * 2 + [400.0] * 2)

    async def missed() -> list[int]:
        seqs = await tenant_events(db_conn, tenant, since)
        return seqs if len(seqs) >= 3 else []

    expected = await wait_for(missed)
    async with websockets.connect(ws_url(stack, since=since), additional_headers=auth(tenant)) as ws:
        replayed = await drain(ws, 3)
    assert [e["seq"] for e in replayed] == expected
    assert [(e["equipment_id"], e["kind"]) for e in replayed] == [
        ("MTR-1", "resolved"), ("MTR-2", "opened"), ("MTR-2", "resolved")]


async def test_a_tenant_never_sees_another_tenants_alerts(stack: Any, http: Any) -> None:
    a, b = new_tenant_id("iso-a"), new_tenant_id("iso-b")
    rule = threshold_rule("flow_high", "flow_mcfd", 1000.0, severity="critical")
    await create_tenant(stack, a, [("MTR-1", "meter")], rules=[rule])
    await create_tenant(stack, b, [("MTR-1", "meter")], rules=[rule])  # same equipment id, other tenant
    async with (websockets.connect(ws_url(stack), additional_headers=auth(a)) as ws_a,
                websockets.connect(ws_url(stack), additional_headers=auth(b)) as ws_b,
                websockets.connect(ws_url(stack, min_severity="critical", equipment="MTR-9"),
                                   additional_headers=auth(a)) as ws_a_filtered):
        await flip(stack, a, "MTR-1", 0, [500.0, 5000.0])
        got_a = json.loads(await asyncio.wait_for(ws_a.recv(), 30))
        assert got_a["tenant_id"] == a
        assert await drain(ws_b, 2) == []
        assert await drain(ws_a_filtered, 0.5) == []  # equipment filter excludes MTR-1
    alert_id = got_a["alert_id"]
    assert (await http.get(f"/v1/alerts/{alert_id}", headers=auth(a))).status_code == 200
    assert (await http.get(f"/v1/alerts/{alert_id}", headers=auth(b))).status_code == 404
    assert (await http.post(f"/v1/alerts/{alert_id}/acknowledge", headers=auth(b))).status_code == 404
    listed_b = (await http.get("/v1/alerts", headers=auth(b))).json()
    assert listed_b["data"] == [] and listed_b["meta"]["pagination"]["total"] == 0
    readings_b = (await http.get("/v1/equipment/MTR-1/readings", headers=auth(b),
                                 params={"from": (now_utc() - timedelta(hours=1)).isoformat()})).json()
    assert readings_b["data"] == []
    viewer_ack = await http.post(f"/v1/alerts/{alert_id}/acknowledge", headers=auth(a, "viewer"))
    assert viewer_ack.status_code == 403


async def test_slow_client_is_closed_with_1013_and_can_resume(stack: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("slow")
    rules = [threshold_rule(f"flow_high_{i}", "flow_mcfd", 1000.0 + i) for i in range(30)]
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=rules)
    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant), max_queue=1) as ws:
        # 30 rules open and resolve 3 times: 180 events against a server queue of 50, unread.
        await flip(stack, tenant, "MTR-1", 0, [500.0, 5000.0, 500.0] * 3)

        async def enough() -> bool:
            return len(await tenant_events(db_conn, tenant, 0)) >= 150

        await wait_for(enough)
        received = []
        try:
            async with asyncio.timeout(20):
                while True:
                    received.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1013
            assert "since=" in closed.rcvd.reason
        else:
            raise AssertionError("a slow client was never closed")
    last = received[-1]["seq"]
    async with websockets.connect(ws_url(stack, since=last), additional_headers=auth(tenant)) as ws:
        rest = await drain(ws, 3)
    assert [e["seq"] for e in received + rest] == await tenant_events(db_conn, tenant, 0)
