"""End to end through real NATS, PostgreSQL, Ray and Serve: readings in, rows stored, alerts out."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import websockets

from tests.helpers import (
    auth,
    create_tenant,
    metrics_auth,
    new_tenant_id,
    now_utc,
    publish,
    settled,
    snapshot,
    token,
    wait_for,
)

TUBING_RULE = {"id": "tubing_high", "kind": "threshold",
               "params": {"sensor": "tubing_psi", "high": 1000.0, "for_seconds": 0, "severity": "critical"}}


def ws_url(stack: Any, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws" + (f"?{query}" if query else "")


async def next_event(ws: Any, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if predicate(event):
                return event


def pump_jack_values(i: int, tubing: float | None = None) -> dict[str, float]:
    wobble = ((i * 37) % 11 - 5) * 0.5
    return {"motor_current_a": 42.0 + wobble, "polished_rod_load_lbf": 15000.0 + 20 * wobble,
            "strokes_per_minute": 9.0, "tubing_psi": tubing if tubing is not None else 800.0 + wobble,
            "casing_psi": 250.0 + wobble}


async def test_readings_stored_once_and_alert_reaches_operator(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("e2e")
    await create_tenant(stack, tenant, [("PJ-A", "pump_jack"), ("CMP-B", "compressor"), ("MTR-C", "meter")],
                        rules=[TUBING_RULE])
    start = now_utc() - timedelta(seconds=120)
    messages: list[tuple[str, bytes]] = []
    expected_rows = 0
    for i in range(80):
        ts = start + timedelta(seconds=i)
        tubing = 4_000.0 if i >= 60 else None  # the fault: tubing pressure jumps and stays up
        for equipment, values in (
            ("PJ-A", pump_jack_values(i, tubing)),
            ("CMP-B", {"vibration_mm_s": 3.0 + (i % 5) * 0.1, "discharge_temp_f": 220.0, "discharge_psi": 1000.0}),
            ("MTR-C", {"flow_mcfd": 500.0 + (i % 7)}),
        ):
            messages.append((equipment, snapshot(equipment, ts, values)))
            expected_rows += len(values)

    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant)) as ws:
        await publish(stack.settings.nats_url, tenant, messages)

        opened = await next_event(ws, lambda e: e["rule_id"] == "tubing_high" and e["kind"] == "opened")
        assert opened["equipment_id"] == "PJ-A"
        assert opened["severity"] == "critical"
        assert opened["tenant_id"] == tenant

        async def stored() -> int:
            n = await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant)
            return n if n == expected_rows else 0

        await wait_for(stored)
        row = await db_conn.fetchrow("SELECT state, severity FROM alerts WHERE id = $1", opened["alert_id"])
        assert row["severity"] == "critical"

        resp = await http.post(f"/v1/alerts/{opened['alert_id']}/acknowledge", json={"comment": "crew sent"},
                               headers=auth(tenant))
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["state"] == "acknowledged"
        assert resp.json()["data"]["acknowledged_by"] == f"operator@{tenant}.example"
        acked = await next_event(ws, lambda e: e["kind"] == "acknowledged")
        assert acked["alert_id"] == opened["alert_id"]
        assert acked["seq"] > opened["seq"]

    # Publishing the same readings again (a gateway resending after an outage) stores nothing twice.
    await publish(stack.settings.nats_url, tenant, messages[:30])
    await settled(stack, tenant)
    assert await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant) == expected_rows
    metrics = (await http.get("/metrics", headers=metrics_auth(stack))).text
    assert f'wellpulse_readings_ingested_total{{tenant="{tenant}"}} {float(expected_rows)}' in metrics

    # The REST view of the same data.
    resp = await http.get("/v1/equipment/PJ-A/readings", headers=auth(tenant, "viewer"),
                          params={"sensor": "tubing_psi", "from": start.isoformat(), "limit": 50})
    assert resp.status_code == 200
    page = resp.json()
    assert len(page["data"]) == 50 and page["meta"]["pagination"]["next_cursor"]
    resp = await http.get("/v1/equipment/PJ-A/readings", headers=auth(tenant, "viewer"),
                          params={"sensor": "tubing_psi", "from": start.isoformat(), "limit": 50,
                                  "cursor": page["meta"]["pagination"]["next_cursor"]})
    assert len(resp.json()["data"]) == 30
    assert max(r["value"] for r in resp.json()["data"]) == 4000.0
    resp = await http.get("/v1/equipment/PJ-A/readings", headers=auth(tenant, "viewer"),
                          params={"sensor": "tubing_psi", "from": start.isoformat(), "bucket": "1m"})
    buckets = resp.json()["data"]
    assert sum(b["count"] for b in buckets) == 80
    assert max(b["max"] for b in buckets) == 4000.0


async def test_websocket_refuses_bad_tokens(stack: Any) -> None:
    tenant = new_tenant_id("wsauth")
    await create_tenant(stack, tenant, [])
    for headers, params in (({}, {}), ({"Authorization": "Bearer nonsense"}, {}), ({}, {"token": "x.y.z"})):
        try:
            async with websockets.connect(ws_url(stack, **params), additional_headers=headers) as ws:
                await ws.recv()
        except (websockets.InvalidStatus, websockets.ConnectionClosed):
            continue
        raise AssertionError("a WebSocket without a valid token was accepted")
    # The browser form works.
    async with websockets.connect(ws_url(stack, token=token(tenant))) as ws:
        assert ws.protocol.state.name == "OPEN"


async def test_health_reports_every_part(stack: Any, http: Any) -> None:
    resp = await http.get("/health")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["storage"] in ("postgresql", "timescaledb")
    assert set(body["checks"]) == {"db", "nats", "ray", "notifications"}
    assert resp.headers["x-request-id"]
    assert (await http.get("/health", headers={"X-Request-ID": "abc-123"})).headers["x-request-id"] == "abc-123"
