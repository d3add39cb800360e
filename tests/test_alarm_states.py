"""Alarm states beyond open/acknowledged/resolved (issue 11, ISA-18.2): shelving (expiry, the condition clearing
and coming back, the tenant's maximum), latched alerts, sensors out of service, suppression by design (the
equipment not running, an upstream compressor down), and chattering held open at the source. Each change is
an ``alert_events`` row and a WebSocket event."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import websockets

from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.test_api_rules import error_fields


def threshold(rule_id: str, sensor: str, *, high: float | None = None, low: float | None = None,
              **options: Any) -> dict[str, Any]:
    params = {"sensor": sensor, **({"high": high} if high is not None else {}),
              **({"low": low} if low is not None else {}), **options}
    return {"id": rule_id, "kind": "threshold", "params": params}


class Feed:
    """One equipment's readings, timestamps strictly increasing from a minute and a half ago (one second apart
    unless told), published in order."""

    def __init__(self, stack: Any, tenant: str, equipment: str, ago: float = 90.0) -> None:
        self.stack, self.tenant, self.equipment = stack, tenant, equipment
        self.ts = now_utc() - timedelta(seconds=ago)

    async def send(self, *values: dict[str, float], step: float = 1.0) -> None:
        messages = []
        for v in values:
            self.ts += timedelta(seconds=step)
            messages.append((self.equipment, snapshot(self.equipment, self.ts, v)))
        await publish(self.stack.settings.nats_url, self.tenant, messages)


async def alert_of(conn: asyncpg.Connection, tenant: str, rule_id: str, equipment: str = "MTR-1",
                   **where: Any) -> Any:
    """The newest alert of the key, once it exists (and matches `where`)."""
    async def found() -> Any:
        row = await conn.fetchrow("SELECT * FROM alerts WHERE tenant_id = $1 AND rule_id = $2 AND equipment_id = $3"
                                  " ORDER BY id DESC LIMIT 1", tenant, rule_id, equipment)
        return row if row is not None and all(row[k] == v for k, v in where.items()) else None

    return await wait_for(found, timeout=30)


async def kinds(conn: asyncpg.Connection, alert_id: int) -> list[str]:
    return [r["kind"] for r in await conn.fetch("SELECT kind FROM alert_events WHERE alert_id = $1 ORDER BY seq",
                                                alert_id)]


def ws_url(stack: Any) -> str:
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws"


async def next_event(ws: Any, kind: str, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event.get("kind") == kind:
                return event


# ----------------------------------------------------------------------------- shelving


async def test_shelve_expiry_tenant_maximum_and_bad_input(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("shelve")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[threshold("p_high", "p", high=20.0)])
    admin = auth(tenant, "admin")
    assert (await http.get("/v1/tenant/settings", headers=admin)).json()["data"]["max_shelve_minutes"] == 480
    r = await http.patch("/v1/tenant/settings", headers=admin, json={"max_shelve_minutes": 0})
    assert r.status_code == 422 and error_fields(r) == ["max_shelve_minutes"], r.text
    r = await http.patch("/v1/tenant/settings", headers=admin, json={"max_shelve_minutes": 60})
    assert r.status_code == 200 and r.json()["data"]["max_shelve_minutes"] == 60, r.text
    feed = Feed(stack, tenant, "MTR-1")
    await feed.send({"p": 25.0})
    alert = await alert_of(db_conn, tenant, "p_high", state="open")
    op = auth(tenant, "operator")
    url = f"/v1/alerts/{alert['id']}"
    # Beyond the tenant's maximum, no reason, a viewer: refused, nothing changes.
    r = await http.post(f"{url}/shelve", headers=op, json={"minutes": 61, "reason": "later"})
    assert r.status_code == 422 and error_fields(r) == ["minutes"], r.text
    r = await http.post(f"{url}/shelve", headers=op, json={"minutes": 10})
    assert r.status_code == 422 and error_fields(r) == ["reason"], r.text
    assert (await http.post(f"{url}/shelve", headers=auth(tenant, "viewer"),
                            json={"minutes": 10, "reason": "x"})).status_code == 403
    assert (await http.post(f"{url}/unshelve", headers=op)).status_code == 409
    assert await kinds(db_conn, alert["id"]) == ["opened"]
    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant, "viewer")) as ws:
        r = await http.post(f"{url}/shelve", headers=op, json={"minutes": 60, "reason": "crew due at noon"})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert (data["state"], data["shelve_reason"]) == ("shelved", "crew due at noon")
        assert data["shelved_until"] and data["shelved_by"]
        shelved = await next_event(ws, "shelved")
        assert shelved["alert_id"] == alert["id"] and shelved["details"]["minutes"] == 60
        # The time ends (moved here to now): the housekeeping returns it open and unacknowledged.
        await db_conn.execute("UPDATE alerts SET shelved_until = now() WHERE id = $1", alert["id"])
        back = await next_event(ws, "unshelved")
        assert back["alert_id"] == alert["id"] and back["state"] == "open"
    row = await alert_of(db_conn, tenant, "p_high", state="open")
    assert row["shelved_until"] is None and row["acknowledged_at"] is None
    # Acknowledged, shelved, unshelved by hand: back unacknowledged.
    assert (await http.post(f"{url}/acknowledge", headers=op)).status_code == 200
    assert (await http.post(f"{url}/shelve", headers=op, json={"minutes": 5, "reason": "x"})).status_code == 200
    r = await http.post(f"{url}/unshelve", headers=op)
    assert r.status_code == 200 and r.json()["data"]["state"] == "open" and r.json()["data"]["acknowledged_at"] is None
    assert await kinds(db_conn, alert["id"]) == ["opened", "shelved", "unshelved", "acknowledged", "shelved",
                                                 "unshelved"]
    # A resolved alert cannot be shelved; another tenant's is not found.
    assert (await http.post(f"{url}/resolve", headers=op)).status_code == 200
    r = await http.post(f"{url}/shelve", headers=op, json={"minutes": 5, "reason": "x"})
    assert r.status_code == 409 and error_fields(r) == ["state"], r.text
    other = new_tenant_id("shelve-b")
    await create_tenant(stack, other, [("MTR-1", "meter")])
    r = await http.post(f"{url}/shelve", headers=auth(other, "operator"), json={"minutes": 5, "reason": "x"})
    assert r.status_code == 404
    assert (await db_conn.fetchrow("SELECT state FROM alerts WHERE id = $1", alert["id"]))["state"] == "resolved"
    # The default maximum is 8 hours.
    await db_conn.execute("UPDATE tenants SET settings = settings - 'max_shelve_minutes' WHERE id = $1", tenant)
    await feed.send({"p": 5.0}, {"p": 26.0})
    again = await alert_of(db_conn, tenant, "p_high", state="open")
    assert again["id"] != alert["id"]
    r = await http.post(f"/v1/alerts/{again['id']}/shelve", headers=op, json={"minutes": 481, "reason": "x"})
    assert r.status_code == 422 and error_fields(r) == ["minutes"]
    assert (await http.post(f"/v1/alerts/{again['id']}/shelve", headers=op,
                            json={"minutes": 480, "reason": "x"})).status_code == 200


async def test_shelved_alert_returns_when_the_condition_clears_and_comes_back(stack: Any, http: Any,
                                                                               db_conn: Any) -> None:
    tenant = new_tenant_id("shelve-ret")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[threshold("p_high", "p", high=20.0)])
    feed = Feed(stack, tenant, "MTR-1")
    await feed.send({"p": 25.0})
    alert = await alert_of(db_conn, tenant, "p_high", state="open")
    op = auth(tenant, "operator")
    assert (await http.post(f"/v1/alerts/{alert['id']}/shelve", headers=op,
                            json={"minutes": 120, "reason": "known"})).status_code == 200
    await feed.send({"p": 5.0})  # clears: still shelved, one alert
    row = await wait_for(lambda: db_conn.fetchrow("SELECT * FROM alerts WHERE id = $1 AND cleared_at IS NOT NULL",
                                                  alert["id"]))
    assert row["state"] == "shelved"
    await feed.send({"p": 27.0})  # comes back: unshelved, unacknowledged, the same alert counted twice
    row = await alert_of(db_conn, tenant, "p_high", state="open")
    assert row["id"] == alert["id"] and row["cleared_at"] is None and row["occurrences"] == 2
    assert row["shelved_until"] is None
    assert await kinds(db_conn, alert["id"]) == ["opened", "shelved", "cleared", "unshelved"]
    # Shelved, cleared, and the time ends: resolved (nothing to show).
    assert (await http.post(f"/v1/alerts/{alert['id']}/shelve", headers=op,
                            json={"minutes": 30, "reason": "known"})).status_code == 200
    await feed.send({"p": 5.0})
    await wait_for(lambda: db_conn.fetchval("SELECT cleared_at FROM alerts WHERE id = $1", alert["id"]))
    await db_conn.execute("UPDATE alerts SET shelved_until = now() WHERE id = $1", alert["id"])
    await alert_of(db_conn, tenant, "p_high", state="resolved")
    assert (await kinds(db_conn, alert["id"]))[-3:] == ["shelved", "cleared", "resolved"]


# ----------------------------------------------------------------------------- latched


async def test_latched_alert_stays_until_acknowledged(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("latch")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    admin = auth(tenant, "admin")
    r = await http.post("/v1/rules", headers=admin, json={
        "id": "p_high", "kind": "threshold", "params": {"sensor": "p", "high": 20.0, "latched": True}})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["params"]["latched"] is True
    r = await http.post("/v1/rules", headers=admin, json={
        "id": "bad", "kind": "threshold", "params": {"sensor": "p", "high": 20.0, "latched": "sometimes"}})
    assert r.status_code == 422 and error_fields(r) == ["threshold.params.latched"], r.text
    feed = Feed(stack, tenant, "MTR-1")

    async def opened() -> Any:
        await feed.send({"p": 25.0})
        return await db_conn.fetchrow("SELECT * FROM alerts WHERE tenant_id = $1 AND rule_id = 'p_high'"
                                      " AND state = 'open'", tenant)

    alert = await wait_for(opened, timeout=30, interval=1.0)  # the rule reaches the actors within a reload
    assert alert["latched"]
    await feed.send({"p": 5.0})  # clears: stays open, "cleared, awaiting acknowledgement"
    await wait_for(lambda: db_conn.fetchval("SELECT cleared_at FROM alerts WHERE id = $1", alert["id"]))
    row = await db_conn.fetchrow("SELECT state FROM alerts WHERE id = $1", alert["id"])
    assert row["state"] == "open"
    r = await http.get(f"/v1/alerts/{alert['id']}", headers=auth(tenant, "viewer"))
    assert r.json()["data"]["cleared_at"] and [e["kind"] for e in r.json()["data"]["events"]] == ["opened", "cleared"]
    # Acknowledging it resolves it.
    r = await http.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=auth(tenant, "operator"))
    assert r.status_code == 200 and r.json()["data"]["state"] == "resolved", r.text
    assert await kinds(db_conn, alert["id"]) == ["opened", "cleared", "acknowledged", "resolved"]
    # Acknowledged before it clears: it resolves when it clears, like any alert.
    await feed.send({"p": 25.0})
    second = await alert_of(db_conn, tenant, "p_high", state="open")
    assert second["id"] != alert["id"]
    assert (await http.post(f"/v1/alerts/{second['id']}/acknowledge", headers=auth(tenant, "operator"))
            ).status_code == 200
    await feed.send({"p": 5.0})
    await alert_of(db_conn, tenant, "p_high", state="resolved")
    assert await kinds(db_conn, second["id"]) == ["opened", "acknowledged", "resolved"]


# ----------------------------------------------------------------------------- out of service


async def test_sensor_out_of_service_suppresses_its_alerts(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("oos")
    await create_tenant(stack, tenant, [("MTR-1", "meter")],
                        rules=[threshold("p_high", "p", high=20.0), threshold("q_high", "q", high=20.0)])
    feed = Feed(stack, tenant, "MTR-1")
    await feed.send({"p": 25.0, "q": 25.0})
    p_alert = await alert_of(db_conn, tenant, "p_high", state="open")
    q_alert = await alert_of(db_conn, tenant, "q_high", state="open")
    op, url = auth(tenant, "operator"), "/v1/equipment/MTR-1/sensors/p/out-of-service"
    # Bad input: nothing changes.
    past = (now_utc() - timedelta(minutes=1)).isoformat()
    for path, body, status, field in [
            (url, {"reason": "x", "until": past}, 422, "until"), (url, {}, 422, "reason"),
            (url, {"reason": "x", "until": "2030-01-01T00:00:00"}, 422, "until"),
            ("/v1/equipment/MTR-1/sensors/Bad-Name/out-of-service", {"reason": "x"}, 422, "sensor"),
            ("/v1/equipment/MTR-9/sensors/p/out-of-service", {"reason": "x"}, 404, None)]:
        r = await http.post(path, headers=op, json=body)
        assert r.status_code == status and (field is None or error_fields(r) == [field]), (path, body, r.text)
    assert (await http.post(url, headers=auth(tenant, "viewer"), json={"reason": "x"})).status_code == 403
    assert (await http.delete(url, headers=op)).status_code == 404
    assert await kinds(db_conn, p_alert["id"]) == ["opened"]
    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant, "viewer")) as ws:
        r = await http.post(url, headers=op, json={"reason": "transmitter replaced"})
        assert r.status_code == 200, r.text
        assert (r.json()["data"]["sensor"], r.json()["data"]["until"]) == ("p", None)
        event = await next_event(ws, "suppressed")
        assert event["alert_id"] == p_alert["id"] and event["details"]["suppressed"] == "out_of_service"
        row = await db_conn.fetchrow("SELECT state, suppressed_reason FROM alerts WHERE id = $1", p_alert["id"])
        assert tuple(row) == ("suppressed", "out_of_service")
        assert (await db_conn.fetchval("SELECT state FROM alerts WHERE id = $1", q_alert["id"])) == "open"
        # While it lasts, a new alert of that sensor opens suppressed.
        await feed.send({"p": 5.0, "q": 25.0}, {"p": 26.0, "q": 25.0})
        await wait_for(lambda: db_conn.fetchval("SELECT count(*) = 2 FROM alerts WHERE tenant_id = $1"
                                                " AND rule_id = 'p_high'", tenant))
        new = await alert_of(db_conn, tenant, "p_high", state="suppressed")
        assert new["id"] != p_alert["id"] and await kinds(db_conn, new["id"]) == ["suppressed"]
        assert (await http.delete(url, headers=op)).status_code == 204
        back = await next_event(ws, "opened")  # never annunciated before: an opening now
        assert back["alert_id"] == new["id"] and back["state"] == "open"
    assert await kinds(db_conn, p_alert["id"]) == ["opened", "suppressed", "resolved"]


# ----------------------------------------------------------------------------- suppression by design


async def test_suppressed_while_the_equipment_is_not_running(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("running")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[
        threshold("flow_low", "flow_mcfd", low=100.0),  # a low flow: needs the equipment running anyway
        threshold("p_low", "p", low=10.0, requires_running=True),
        threshold("t_high", "t", high=20.0)])
    feed = Feed(stack, tenant, "MTR-1")
    await db_conn.execute("UPDATE equipment SET status = 'failed' WHERE tenant_id = $1 AND id = 'MTR-1'", tenant)
    await feed.send({"flow_mcfd": 50.0, "p": 5.0, "t": 25.0})
    for rule_id in ("flow_low", "p_low"):
        row = await alert_of(db_conn, tenant, rule_id, state="suppressed")
        assert row["suppressed_reason"] == "equipment_stopped" and await kinds(db_conn, row["id"]) == ["suppressed"]
    assert (await alert_of(db_conn, tenant, "t_high"))["state"] == "open"  # does not depend on running
    # Running again: they open (their first annunciation).
    await db_conn.execute("UPDATE equipment SET status = 'operational' WHERE tenant_id = $1 AND id = 'MTR-1'",
                          tenant)
    flow = await alert_of(db_conn, tenant, "flow_low", state="open")
    assert await kinds(db_conn, flow["id"]) == ["suppressed", "opened"]
    # Into maintenance while open: suppressed, and back to open afterwards.
    await db_conn.execute("UPDATE equipment SET status = 'maintenance' WHERE tenant_id = $1 AND id = 'MTR-1'",
                          tenant)
    row = await alert_of(db_conn, tenant, "flow_low", state="suppressed")
    assert row["suppressed_reason"] == "maintenance"
    assert (await alert_of(db_conn, tenant, "t_high"))["state"] == "open"
    await db_conn.execute("UPDATE equipment SET status = 'operational' WHERE tenant_id = $1 AND id = 'MTR-1'",
                          tenant)
    await alert_of(db_conn, tenant, "flow_low", state="open")
    assert await kinds(db_conn, flow["id"]) == ["suppressed", "opened", "suppressed", "unsuppressed"]
    listed = (await http.get("/v1/alerts", headers=auth(tenant, "viewer"), params={"state": "suppressed"})).json()
    assert listed["data"] == []


async def test_upstream_compressor_suppresses_low_pressure_on_its_wells(stack: Any, http: Any,
                                                                        db_conn: Any) -> None:
    tenant = new_tenant_id("upstream")
    await create_tenant(stack, tenant, [("CMP-1", "compressor"), ("PJ-1", "pump_jack"), ("PJ-2", "pump_jack")],
                        rules=[threshold("vib_high", "vibration_mm_s", high=20.0),
                               threshold("tubing_low", "tubing_psi", low=300.0)])
    await db_conn.execute("INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, 'W-1', '4201234567', 'a'),"
                          " ($1, 'W-2', '4201234568', 'b')", tenant)
    await db_conn.execute("INSERT INTO equipment_wells (tenant_id, equipment_id, well_id) VALUES"
                          " ($1, 'CMP-1', 'W-1'), ($1, 'PJ-1', 'W-1'), ($1, 'PJ-2', 'W-2')", tenant)
    # Recent readings: the compressor's stale-data alert (a minute without data) must not be the cause here.
    await Feed(stack, tenant, "CMP-1", ago=2.0).send({"vibration_mm_s": 30.0})
    cause = await alert_of(db_conn, tenant, "vib_high", "CMP-1", state="open")
    await Feed(stack, tenant, "PJ-1").send({"tubing_psi": 150.0})
    await Feed(stack, tenant, "PJ-2").send({"tubing_psi": 150.0})
    served = await alert_of(db_conn, tenant, "tubing_low", "PJ-1", state="suppressed")
    assert served["suppressed_reason"] == "upstream" and served["low_pressure"]
    assert (await alert_of(db_conn, tenant, "tubing_low", "PJ-2"))["state"] == "open"  # another well
    # The cause resolved: the dependent alert is annunciated.
    assert (await http.post(f"/v1/alerts/{cause['id']}/resolve", headers=auth(tenant, "operator"))).status_code == 200
    await alert_of(db_conn, tenant, "tubing_low", "PJ-1", state="open")
    assert await kinds(db_conn, served["id"]) == ["suppressed", "opened"]


# ----------------------------------------------------------------------------- chattering


async def test_chattering_key_is_held_open_with_a_count(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("chatter")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=[threshold("p_high", "p", high=20.0)])
    feed = Feed(stack, tenant, "MTR-1", ago=200.0)
    # Crossing every 10 s of reading time: opens at 0, 10, 20 (three in a minute: held open), back at 30, 40.
    await feed.send(*[{"p": 25.0 if i % 2 == 0 else 5.0} for i in range(9)], step=5.0)
    held = await alert_of(db_conn, tenant, "p_high", occurrences=3)
    assert held["state"] == "open"
    rows = await db_conn.fetch("SELECT state FROM alerts WHERE tenant_id = $1 AND rule_id = 'p_high' ORDER BY id",
                               tenant)
    assert [r["state"] for r in rows] == ["resolved", "resolved", "open"]
    assert await kinds(db_conn, held["id"]) == ["opened", "updated", "updated"]
    assert json.loads(held["details"])["chattering"] is True
    opened = await db_conn.fetchval("SELECT count(*) FROM alert_events WHERE tenant_id = $1 AND kind = 'opened'"
                                    " AND rule_id = 'p_high'", tenant)
    assert opened == 3
    # Clear for a minute of reading time: resolved once.
    await feed.send({"p": 5.0}, {"p": 5.0}, {"p": 5.0}, step=35.0)
    row = await alert_of(db_conn, tenant, "p_high", state="resolved")
    assert row["id"] == held["id"] and row["occurrences"] == 3
    r = await http.get("/v1/alerts", headers=auth(tenant, "viewer"), params={"occurrences": "gte:3"})
    assert [a["id"] for a in r.json()["data"]] == [held["id"]]
