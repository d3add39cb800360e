"""Alerts over the API: the shared list conventions and filters (well included), an alert with its events,
manual resolve (published like acknowledge), and escalation after the tenant's own delay."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import websockets

from tests.helpers import auth, create_tenant, housekeeping_round, new_tenant_id, now_utc, publish, snapshot, wait_for
from tests.test_api_rules import error_fields, open_alert


def rule(rule_id: str, sensor: str, high: float, severity: str) -> dict[str, Any]:
    return {"id": rule_id, "kind": "threshold", "params": {"sensor": sensor, "high": high, "severity": severity}}


RULES = [rule("p_info", "p", 10.0, "info"), rule("p_warn", "p", 20.0, "warning"), rule("p_crit", "p", 30.0, "critical")]


async def _open_alerts(stack: Any, db_conn: Any, tenant: str, values: dict[str, float], count: int) -> None:
    """One reading of `p` per equipment ({equipment: value}); wait until `count` p_ alerts are open."""
    ts = now_utc() - timedelta(seconds=5)
    await publish(stack.settings.nats_url, tenant, [(e, snapshot(e, ts, {"p": v})) for e, v in values.items()])

    async def opened() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM alerts WHERE tenant_id = $1 AND rule_id LIKE 'p_%'"
                                      " AND state = 'open'", tenant) >= count

    await wait_for(opened, timeout=60)


def ws_url(stack: Any) -> str:
    return f"ws://{stack.settings.host}:{stack.settings.port}/v1/alerts/ws"


async def test_list_filters_sort_fields_and_well(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("alist")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter"), ("MTR-3", "meter")], rules=RULES)
    # MTR-1: info, warning, critical; MTR-2: info, warning; MTR-3: info.
    await _open_alerts(stack, db_conn, tenant, {"MTR-1": 35.0, "MTR-2": 25.0, "MTR-3": 15.0}, 6)
    await db_conn.execute("INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, 'W-1', '4201234567', 'a'),"
                          " ($1, 'W-2', '4201234568', 'b')", tenant)
    await db_conn.execute("INSERT INTO equipment_wells (tenant_id, equipment_id, well_id) VALUES ($1, 'MTR-1', 'W-1'),"
                          " ($1, 'MTR-2', 'W-1'), ($1, 'MTR-3', 'W-2')", tenant)
    h = auth(tenant, "viewer")

    async def ids(**params: Any) -> list[tuple[str, str]]:
        r = await http.get("/v1/alerts", headers=h, params={"rule_id": "like:p_*", "limit": 100, **params})
        assert r.status_code == 200, r.text
        return sorted((a["equipment_id"], a["rule_id"]) for a in r.json()["data"])

    assert len(await ids()) == 6
    assert await ids(severity="critical") == [("MTR-1", "p_crit")]
    assert await ids(min_severity="warning") == [("MTR-1", "p_crit"), ("MTR-1", "p_warn"), ("MTR-2", "p_warn")]
    assert await ids(equipment_id="MTR-2") == [("MTR-2", "p_info"), ("MTR-2", "p_warn")]
    assert await ids(well_id="W-2") == [("MTR-3", "p_info")]
    assert len(await ids(well_id="W-1")) == 5
    assert len(await ids(well_id="in:W-1,W-2")) == 6
    assert await ids(well_id="W-9") == []
    assert await ids(rule_id="p_warn", well_id="W-1", min_severity="warning") == [("MTR-1", "p_warn"),
                                                                                   ("MTR-2", "p_warn")]
    assert len(await ids(state="open")) == 6 and await ids(state="in:acknowledged,resolved") == []
    since = (now_utc() - timedelta(hours=1)).isoformat()
    assert len(await ids(opened_at=f"gte:{since}")) == 6
    assert await ids(opened_at=f"lt:{since}") == []
    # Sorting, sparse fields, pagination (all from the shared list module).
    r = (await http.get("/v1/alerts", headers=h, params={"rule_id": "like:p_*", "sort": "equipment_id,-rule_id",
                                                          "fields": "equipment_id,rule_id", "limit": 4})).json()
    assert [(a["equipment_id"], a["rule_id"]) for a in r["data"]] == [
        ("MTR-1", "p_warn"), ("MTR-1", "p_info"), ("MTR-1", "p_crit"), ("MTR-2", "p_warn")]
    assert set(r["data"][0]) == {"id", "equipment_id", "rule_id"}
    assert r["meta"]["pagination"] == {"page": 1, "limit": 4, "total": 6}
    newest = (await http.get("/v1/alerts", headers=h)).json()["data"]
    assert [a["opened_at"] for a in newest] == sorted((a["opened_at"] for a in newest), reverse=True)
    for params, field in [({"severity": "fatal"}, "severity"), ({"state": "closed"}, "state"),
                          ({"colour": "red"}, "colour"), ({"opened_at": "gte:yesterday"}, "opened_at"),
                          ({"min_severity": "fatal"}, "min_severity"), ({"well_id": "bad id"}, "well_id"),
                          ({"sort": "details"}, "sort"), ({"limit": 101}, "limit")]:
        r = await http.get("/v1/alerts", headers=h, params=params)
        assert r.status_code == 422 and field in error_fields(r), (params, r.text)


async def test_get_resolve_and_events(stack: Any, http: Any, db_conn: Any) -> None:
    tenant, other = new_tenant_id("aresolve"), new_tenant_id("aresolve-b")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")], rules=RULES[:1])
    await create_tenant(stack, other, [("MTR-1", "meter")])
    await _open_alerts(stack, db_conn, tenant, {"MTR-1": 15.0, "MTR-2": 15.0}, 2)
    first = await open_alert(db_conn, tenant, "p_info", "MTR-1")
    second = await open_alert(db_conn, tenant, "p_info", "MTR-2")
    op = auth(tenant, "operator")
    assert (await http.post(f"/v1/alerts/{second['id']}/acknowledge", headers=op,
                            json={"comment": "crew on the way"})).status_code == 200
    async with websockets.connect(ws_url(stack), additional_headers=auth(tenant, "viewer")) as ws:
        for alert in (first, second):  # open and acknowledged ones alike
            r = await http.post(f"/v1/alerts/{alert['id']}/resolve", headers=op, json={"comment": "valve reseated"})
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            assert (data["state"], data["resolve_comment"]) == ("resolved", "valve reseated")
            assert data["resolved_by"] and data["resolved_at"]
        live = []
        async with asyncio.timeout(20):
            while len(live) < 2:
                event = json.loads(await ws.recv())
                if event["kind"] == "resolved":
                    live.append(event)
    assert sorted(e["alert_id"] for e in live) == sorted([first["id"], second["id"]])
    assert all(e["actor"] == data["resolved_by"] and e["details"]["comment"] == "valve reseated" for e in live)
    # Resolving again changes nothing and answers the same.
    again = await http.post(f"/v1/alerts/{first['id']}/resolve", headers=op)
    assert again.status_code == 200 and again.json()["data"]["resolve_comment"] == "valve reseated"
    detail = (await http.get(f"/v1/alerts/{second['id']}", headers=auth(tenant, "viewer"))).json()["data"]
    assert [e["kind"] for e in detail["events"]] == ["opened", "acknowledged", "resolved"]
    assert detail["events"][1]["details"] == {"comment": "crew on the way"}
    assert [e["seq"] for e in detail["events"]] == sorted(e["seq"] for e in detail["events"])
    assert {e["alert_id"] for e in detail["events"]} == {second["id"]}
    assert detail["state"] == "resolved" and detail["ack_comment"] == "crew on the way"
    acked_late = await http.post(f"/v1/alerts/{first['id']}/acknowledge", headers=op)
    assert acked_late.status_code == 409
    audit = await db_conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'resolve'",
                                   tenant)
    assert audit == 2
    # Unknown, another tenant's, a viewer: 404, 404, 403.
    assert (await http.post("/v1/alerts/999999999/resolve", headers=op)).status_code == 404
    for path in (f"/v1/alerts/{first['id']}/resolve", f"/v1/alerts/{first['id']}"):
        r = await http.request("POST" if path.endswith("resolve") else "GET", path, headers=auth(other, "admin"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert (await http.post(f"/v1/alerts/{first['id']}/resolve", headers=auth(tenant, "viewer"))).status_code == 403
    bad = await http.post(f"/v1/alerts/{first['id']}/resolve", headers=op, json={"comment": "x" * 2001})
    assert bad.status_code == 422 and error_fields(bad) == ["comment"]


async def test_escalation_after_the_tenant_delay(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("aesc")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")], rules=RULES[1:2])
    await _open_alerts(stack, db_conn, tenant, {"MTR-1": 25.0, "MTR-2": 25.0}, 2)
    quiet = await open_alert(db_conn, tenant, "p_warn", "MTR-1")
    acked = await open_alert(db_conn, tenant, "p_warn", "MTR-2")
    assert (await http.post(f"/v1/alerts/{acked['id']}/acknowledge", headers=auth(tenant, "operator"))
            ).status_code == 200
    # Both opened 3 minutes ago: under the server default (15 min) neither is overdue.
    await db_conn.execute("UPDATE alerts SET opened_at = now() - interval '3 minutes' WHERE tenant_id = $1", tenant)
    admin = auth(tenant, "admin")
    settings = (await http.get("/v1/tenant/settings", headers=admin)).json()["data"]
    assert settings["escalate_after_minutes"] is None
    await housekeeping_round(stack, tenant)
    assert [(a["severity"], a["escalated_at"]) for a in await db_conn.fetch(
        "SELECT severity, escalated_at FROM alerts WHERE tenant_id = $1 AND rule_id = 'p_warn'", tenant)
            ] == [("warning", None)] * 2
    for bad in (0, 7 * 24 * 60 + 1, "soon", 1.5):
        r = await http.patch("/v1/tenant/settings", headers=admin, json={"escalate_after_minutes": bad})
        assert r.status_code == 422 and error_fields(r) == ["escalate_after_minutes"], (bad, r.text)
    assert (await http.patch("/v1/tenant/settings", headers=auth(tenant, "manager"),
                             json={"escalate_after_minutes": 2})).status_code == 403
    r = await http.patch("/v1/tenant/settings", headers=admin, json={"escalate_after_minutes": 2})
    assert r.status_code == 200 and r.json()["data"]["escalate_after_minutes"] == 2

    async def escalated() -> Any:
        row = await db_conn.fetchrow("SELECT severity, escalated_at FROM alerts WHERE id = $1", quiet["id"])
        return row if row["escalated_at"] is not None else None

    await housekeeping_round(stack, tenant)
    row = await wait_for(escalated, timeout=30)
    assert row["severity"] == "critical"
    detail = (await http.get(f"/v1/alerts/{quiet['id']}", headers=admin)).json()["data"]
    assert [e["kind"] for e in detail["events"]] == ["opened", "escalated"]
    assert detail["events"][-1]["severity"] == "critical" and detail["events"][-1]["actor"] == "system"
    assert detail["severity"] == "critical" and detail["escalated_at"]
    acked_now = await db_conn.fetchrow("SELECT severity, escalated_at FROM alerts WHERE id = $1", acked["id"])
    assert (acked_now["severity"], acked_now["escalated_at"]) == ("warning", None)
    # Escalation happens once.
    await housekeeping_round(stack, tenant)
    assert await db_conn.fetchval("SELECT count(*) FROM alert_events WHERE alert_id = $1 AND kind = 'escalated'",
                                  quiet["id"]) == 1
