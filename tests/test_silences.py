"""Silences and maintenance: no alert opens while its equipment or rule is silenced; when the silence or
maintenance ends and the condition still holds, the alert opens then (within seconds)."""

import json
from datetime import timedelta
from typing import Any

from tests.helpers import auth, create_tenant, housekeeping_round, new_tenant_id, now_utc, wait_for
from tests.test_api_rules import Feed, alerts_of, error_fields, feed_until, open_alert

RULES = [{"id": "line_high", "kind": "threshold", "params": {"sensor": "line_psi", "high": 500.0}},
         {"id": "marker", "kind": "threshold", "params": {"sensor": "marker", "high": 0.5}}]


def window(minutes: float = 30, **extra: Any) -> dict[str, Any]:
    return {"ends_at": (now_utc() + timedelta(minutes=minutes)).isoformat(), "reason": "workover rig on site",
            **extra}


async def held(conn: Any, tenant: str, rule_id: str, equipment: str = "MTR-1") -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM suppressed_alerts WHERE tenant_id = $1 AND rule_id = $2"
                                    " AND equipment_id = $3", tenant, rule_id, equipment))


async def test_silence_crud_and_bad_input(stack: Any, http: Any, db_conn: Any) -> None:
    tenant, other = new_tenant_id("sil"), new_tenant_id("sil-b")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")])
    await create_tenant(stack, other, [("MTR-1", "meter")])
    op = auth(tenant, "operator")
    r = await http.post("/v1/silences", headers=op, json=window(equipment_id="MTR-1"))
    assert r.status_code == 201, r.text
    s = r.json()["data"]
    assert s["state"] == "active" and s["equipment_id"] == "MTR-1" and s["rule_id"] is None
    assert s["created_by"] and s["reason"] == "workover rig on site" and s["cancelled_at"] is None
    later = window(120, rule_id="stale_data", starts_at=(now_utc() + timedelta(minutes=60)).isoformat())
    scheduled = (await http.post("/v1/silences", headers=op, json=later)).json()["data"]
    assert scheduled["state"] == "scheduled" and scheduled["equipment_id"] is None
    both = (await http.post("/v1/silences", headers=op, json=window(equipment_id="MTR-2", rule_id="x"))).json()["data"]
    viewer = auth(tenant, "viewer")
    assert (await http.get(f"/v1/silences/{s['id']}", headers=viewer)).json()["data"] == s
    listed = (await http.get("/v1/silences", headers=viewer)).json()
    assert [x["id"] for x in listed["data"]] == [both["id"], scheduled["id"], s["id"]]  # newest first
    assert listed["meta"]["pagination"]["total"] == 3
    active = (await http.get("/v1/silences", headers=viewer, params={"state": "active", "sort": "equipment_id",
                                                                      "fields": "equipment_id"})).json()["data"]
    assert active == [{"id": s["id"], "equipment_id": "MTR-1"}, {"id": both["id"], "equipment_id": "MTR-2"}]

    ended = await http.delete(f"/v1/silences/{s['id']}", headers=op)
    assert ended.status_code == 200
    e = ended.json()["data"]
    assert e["state"] == "cancelled" and e["cancelled_at"] and e["cancelled_by"] == s["created_by"]
    assert (await http.get(f"/v1/silences/{s['id']}", headers=viewer)).json()["data"]["state"] == "cancelled"
    assert (await http.delete(f"/v1/silences/{s['id']}", headers=op)).json()["data"] == e  # already over: as is
    assert [x["id"] for x in (await http.get("/v1/silences", headers=viewer,
                                             params={"state": "cancelled"})).json()["data"]] == [s["id"]]
    assert await db_conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND entity_type = 'silence'",
                                  tenant) == 4

    now = now_utc()
    cases = [
        ({"equipment_id": "MTR-1", "ends_at": (now + timedelta(hours=1)).isoformat()}, "reason"),
        (window(equipment_id="MTR-1", reason="  "), "reason"),
        ({"equipment_id": "MTR-1", "reason": "x"}, "ends_at"),
        (window(-5, equipment_id="MTR-1"), "ends_at"),
        (window(31 * 24 * 60, equipment_id="MTR-1"), "ends_at"),
        (window(equipment_id="MTR-1", starts_at=(now + timedelta(hours=2)).isoformat()), "ends_at"),
        (window(), "equipment_id"),
        (window(equipment_id="NOPE-1"), "equipment_id"),
        (window(equipment_id="bad id"), "equipment_id"),
        (window(rule_id="bad rule!"), "rule_id"),
        ({**window(equipment_id="MTR-1"), "ends_at": "2030-01-01T00:00:00"}, "ends_at"),
        (window(equipment_id="MTR-1", colour="red"), "colour"),
    ]
    for body, field in cases:
        r = await http.post("/v1/silences", headers=op, json=body)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    assert (await http.post("/v1/silences", headers=viewer, json=window(equipment_id="MTR-1"))).status_code == 403
    assert (await http.delete(f"/v1/silences/{both['id']}", headers=viewer)).status_code == 403
    for params in ({"state": "asleep"}, {"colour": "red"}, {"starts_at": "gte:tomorrow"}):
        assert (await http.get("/v1/silences", headers=viewer, params=params)).status_code == 422
    # Another tenant sees none of it.
    b = auth(other, "admin")
    for method in ("GET", "DELETE"):
        r = await http.request(method, f"/v1/silences/{both['id']}", headers=b)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert (await http.get("/v1/silences", headers=b)).json()["data"] == []
    assert (await http.post("/v1/silences", headers=b, json=window(equipment_id="MTR-2"))).status_code == 422
    assert (await http.get(f"/v1/silences/{both['id']}", headers=viewer)).json()["data"]["state"] == "active"


async def test_a_silence_holds_an_alert_back_until_it_ends(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("sil-live")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=RULES)
    op = auth(tenant, "operator")
    r = await http.post("/v1/silences", headers=op, json=window(equipment_id="MTR-1", rule_id="line_high"))
    silence = r.json()["data"]
    feed = Feed(stack, tenant, "MTR-1")
    # The marker (not silenced) opens on the same snapshot: it was learned, and line_high held back.
    await feed_until(feed, {"line_psi": 600.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    await wait_for(lambda: held(db_conn, tenant, "line_high"))
    for _ in range(3):
        await feed.send(line_psi=650.0, marker=1.0)
    assert await alerts_of(db_conn, tenant, "line_high") == []
    before = await db_conn.fetchval("SELECT coalesce(max(seq), 0) FROM alert_events WHERE tenant_id = $1", tenant)

    ended = await http.delete(f"/v1/silences/{silence['id']}", headers=op)
    assert ended.status_code == 200
    # No new reading is needed: the condition still holds, so the alert opens now.
    opened = await wait_for(lambda: open_alert(db_conn, tenant, "line_high"), timeout=15)
    event = await db_conn.fetchrow("SELECT kind, seq, message, details FROM alert_events WHERE alert_id = $1",
                                   opened["id"])
    assert event["kind"] == "opened" and event["seq"] > before and "held since" in event["message"]
    details = json.loads(event["details"])  # this test connection has no jsonb codec
    assert details["sensor"] == "line_psi" and "held_since" in details
    assert not await held(db_conn, tenant, "line_high")
    # From here on it behaves like any alert: it resolves when the value comes back.
    await feed_until(feed, {"line_psi": 100.0}, lambda: _state_is(db_conn, opened["id"], "resolved"))


async def test_a_condition_that_clears_during_the_silence_opens_nothing(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("sil-clear")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=RULES)
    op = auth(tenant, "operator")
    silence = (await http.post("/v1/silences", headers=op, json=window(rule_id="line_high"))).json()["data"]
    feed = Feed(stack, tenant, "MTR-1")
    await feed_until(feed, {"line_psi": 600.0}, lambda: held(db_conn, tenant, "line_high"))

    async def released() -> bool:
        return not await held(db_conn, tenant, "line_high")

    await feed_until(feed, {"line_psi": 100.0}, released)
    await feed_until(feed, {"line_psi": 100.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    assert (await http.delete(f"/v1/silences/{silence['id']}", headers=op)).status_code == 200
    await housekeeping_round(stack, tenant)  # has released whatever was held, whether or not the ctl message did
    assert await alerts_of(db_conn, tenant, "line_high") == []
    # And a new crossing after the silence opens as usual.
    await feed_until(feed, {"line_psi": 700.0}, lambda: open_alert(db_conn, tenant, "line_high"))


async def test_maintenance_silences_its_equipment(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("sil-maint")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("MTR-2", "meter")], rules=RULES)
    await db_conn.execute("UPDATE equipment SET status = 'maintenance' WHERE tenant_id = $1 AND id = 'MTR-1'", tenant)
    feed, control = Feed(stack, tenant, "MTR-1"), Feed(stack, tenant, "MTR-2")
    await feed_until(feed, {"line_psi": 600.0, "marker": 1.0}, lambda: held(db_conn, tenant, "marker"))
    await wait_for(lambda: held(db_conn, tenant, "line_high"))
    await feed_until(control, {"marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker", "MTR-2"))
    assert await alerts_of(db_conn, tenant, "line_high") == [] and await alerts_of(db_conn, tenant, "marker") == []

    await db_conn.execute("UPDATE equipment SET status = 'operational' WHERE tenant_id = $1 AND id = 'MTR-1'", tenant)
    # Back in operation with the conditions still holding: both open within a housekeeping round or two.
    for rule_id in ("line_high", "marker"):
        await wait_for(lambda rule_id=rule_id: open_alert(db_conn, tenant, rule_id), timeout=20)
    await feed_until(feed, {"line_psi": 100.0, "marker": 0.0}, lambda: _state_is_rule(db_conn, tenant, "line_high"))

    # A maintenance job in progress silences too; finishing it releases what it held back.
    job = await db_conn.fetchval(
        "INSERT INTO maintenance_records (tenant_id, equipment_id, started_at, created_by)"
        " VALUES ($1, 'MTR-1', now() - interval '1 minute', 'test') RETURNING id", tenant)
    await feed_until(feed, {"line_psi": 900.0}, lambda: held(db_conn, tenant, "line_high"))
    assert await open_alert(db_conn, tenant, "line_high") is None
    await db_conn.execute("UPDATE maintenance_records SET ended_at = now() WHERE tenant_id = $1 AND id = $2",
                          tenant, job)
    opened = await wait_for(lambda: open_alert(db_conn, tenant, "line_high"), timeout=20)
    assert len(await alerts_of(db_conn, tenant, "line_high")) == 2 and opened["state"] == "open"


async def test_escalation_waits_while_silenced(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("sil-esc")
    await create_tenant(stack, tenant, [("MTR-1", "meter")], rules=RULES)
    feed = Feed(stack, tenant, "MTR-1")
    alert = await feed_until(feed, {"line_psi": 600.0}, lambda: open_alert(db_conn, tenant, "line_high"))
    op = auth(tenant, "operator")
    silence = (await http.post("/v1/silences", headers=op, json=window(equipment_id="MTR-1"))).json()["data"]
    # Overdue under the server default (15 min), but its equipment is silenced.
    await db_conn.execute("UPDATE alerts SET opened_at = now() - interval '1 hour' WHERE id = $1", alert["id"])
    await housekeeping_round(stack, tenant)
    row = await db_conn.fetchrow("SELECT state, severity, escalated_at FROM alerts WHERE id = $1", alert["id"])
    assert (row["state"], row["severity"], row["escalated_at"]) == ("open", "warning", None)
    assert (await http.delete(f"/v1/silences/{silence['id']}", headers=op)).status_code == 200

    async def escalated() -> bool:
        return await db_conn.fetchval("SELECT escalated_at IS NOT NULL FROM alerts WHERE id = $1", alert["id"])

    await housekeeping_round(stack, tenant)
    await wait_for(escalated, timeout=20)


async def _state_is(conn: Any, alert_id: int, state: str) -> bool:
    return await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert_id) == state


async def _state_is_rule(conn: Any, tenant: str, rule_id: str) -> bool:
    """The rule's alerts (there is at least one) are all resolved."""
    states = [a["state"] for a in await alerts_of(conn, tenant, rule_id)]
    return bool(states) and set(states) == {"resolved"}
