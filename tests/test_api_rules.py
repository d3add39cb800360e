"""Alert rules over the API: CRUD, the shared list conventions, bad input, isolation, and changes reaching
the running actors without a restart (a reading crossing a new threshold opens an alert; after a PATCH the
new threshold applies; after a DELETE no alert opens)."""

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, settled, snapshot


class Feed:
    """One equipment's feed: each `send` publishes one snapshot `STEP` of reading time after the last (or at now,
    if later), so "for 5 s" rules see time pass without the test sleeping; it starts 30 s back, and the skew
    allowed into the future is minutes."""

    STEP = timedelta(milliseconds=800)

    def __init__(self, stack: Any, tenant: str, equipment: str) -> None:
        self.stack, self.tenant, self.equipment = stack, tenant, equipment
        self.ts = now_utc() - timedelta(seconds=30)

    async def send(self, **values: float) -> None:
        self.ts = max(self.ts + self.STEP, now_utc())
        await publish(self.stack.settings.nats_url, self.tenant,
                      [(self.equipment, snapshot(self.equipment, self.ts, values))])


async def feed_until(feed: Feed, values: dict[str, float], predicate: Any, timeout: float = 30.0) -> Any:
    """Send `values`, one snapshot once the tenant has taken the last, until the async `predicate` holds; returns
    its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await feed.send(**values)
        await settled(feed.stack, feed.tenant, timeout=timeout)
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")


async def alerts_of(conn: asyncpg.Connection, tenant: str, rule_id: str, equipment: str = "MTR-1",
                    ) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, state, severity, message FROM alerts WHERE tenant_id = $1 AND rule_id = $2"
                            " AND equipment_id = $3 ORDER BY id", tenant, rule_id, equipment)


async def open_alert(conn: asyncpg.Connection, tenant: str, rule_id: str, equipment: str = "MTR-1",
                     ) -> asyncpg.Record | None:
    return next((a for a in await alerts_of(conn, tenant, rule_id, equipment) if a["state"] != "resolved"), None)


def threshold(rule_id: str, sensor: str, high: float, **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "kind": "threshold", "params": {"sensor": sensor, "high": high}, **extra}


def error_fields(response: Any) -> list[str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return [d["field"] for d in body["error"]["details"]]


# ----------------------------------------------------------------------------- CRUD and conventions


async def test_rule_crud_and_list_conventions(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("rules")
    await create_tenant(stack, tenant, [("MTR-1", "meter"), ("PJ-1", "pump_jack")])
    h = auth(tenant, "manager")
    created = await http.post("/v1/rules", headers=h, json=threshold(
        "line_high", "line_psi", 500.0, equipment_id="MTR-1", severity="critical", name="Line pressure high",
        description="call the gauger"))
    assert created.status_code == 201, created.text
    rule = created.json()["data"]
    assert rule["id"] == "line_high" and rule["kind"] == "threshold" and rule["severity"] == "critical"
    assert rule["params"] == {"sensor": "line_psi", "high": 500.0} and rule["equipment_id"] == "MTR-1"
    assert rule["enabled"] is True and rule["created_by"] and rule["name"] == "Line pressure high"
    others = [
        {"kind": "rate_of_change", "equipment_type": "pump_jack",
         "params": {"sensor": "casing_psi", "max_rate": 50, "direction": "rising", "window_seconds": 300}},
        {"id": "quiet", "kind": "stale_data", "params": {"max_silence_seconds": 120}, "severity": "info"},
        {"id": "stuck", "kind": "stuck_sensor", "equipment_id": "PJ-1"},
        {"id": "weird", "kind": "anomaly", "params": {"sensitivity": "high", "for_count": 5}},
        {"id": "risk", "kind": "failure_risk", "params": {"level": 0.7}, "severity": "critical"},
    ]
    ids = []
    for body in others:
        r = await http.post("/v1/rules", headers=h, json=body)
        assert r.status_code == 201, (body, r.text)
        ids.append(r.json()["data"]["id"])
    assert ids[0].startswith("rule-") and ids[1:] == ["quiet", "stuck", "weird", "risk"]
    stored = await db_conn.fetchrow("SELECT severity, params, name FROM alert_rules WHERE tenant_id = $1"
                                    " AND id = 'risk'", tenant)
    assert stored["severity"] == "critical" and stored["name"] == "risk"

    got = await http.get("/v1/rules/line_high", headers=auth(tenant, "viewer"))
    assert got.status_code == 200 and got.json()["data"] == rule
    listed = (await http.get("/v1/rules", headers=auth(tenant, "viewer"), params={"limit": 100})).json()
    assert listed["meta"]["pagination"]["total"] == 6
    assert [r["id"] for r in listed["data"]] == sorted(r["id"] for r in listed["data"])  # default sort: id
    crit = (await http.get("/v1/rules", headers=h, params={"severity": "critical", "sort": "-id",
                                                             "fields": "kind"})).json()
    assert crit["data"] == [{"id": "risk", "kind": "failure_risk"}, {"id": "line_high", "kind": "threshold"}]
    page2 = (await http.get("/v1/rules", headers=h, params={"limit": 2, "page": 2})).json()
    assert len(page2["data"]) == 2 and page2["meta"]["pagination"] == {"page": 2, "limit": 2, "total": 6}
    typed = (await http.get("/v1/rules", headers=h, params={"equipment_type": "pump_jack"})).json()["data"]
    assert [r["kind"] for r in typed] == ["rate_of_change"]
    named = (await http.get("/v1/rules", headers=h, params={"name": "like:line*"})).json()["data"]
    assert [r["id"] for r in named] == ["line_high"]

    patched = await http.patch("/v1/rules/line_high", headers=h,
                               json={"params": {"high": 700, "hysteresis": 10}, "severity": "warning",
                                     "enabled": False})
    assert patched.status_code == 200, patched.text
    p = patched.json()["data"]
    assert p["params"] == {"sensor": "line_psi", "high": 700.0, "hysteresis": 10.0}
    assert (p["severity"], p["enabled"], p["equipment_id"], p["name"]) == ("warning", False, "MTR-1",
                                                                          "Line pressure high")
    # Naming one scope field replaces the scope.
    moved = await http.patch("/v1/rules/line_high", headers=h, json={"equipment_type": "meter"})
    assert (moved.json()["data"]["equipment_id"], moved.json()["data"]["equipment_type"]) == (None, "meter")
    widened = await http.patch("/v1/rules/line_high", headers=h, json={"equipment_type": None})
    assert (widened.json()["data"]["equipment_id"], widened.json()["data"]["equipment_type"]) == (None, None)
    removed = await http.patch("/v1/rules/line_high", headers=h, json={"params": {"hysteresis": None}})
    assert removed.json()["data"]["params"] == {"sensor": "line_psi", "high": 700.0}

    assert (await http.delete("/v1/rules/line_high", headers=h)).status_code == 204
    assert (await http.get("/v1/rules/line_high", headers=h)).status_code == 404
    assert (await http.delete("/v1/rules/line_high", headers=h)).status_code == 404
    assert (await http.patch("/v1/rules/line_high", headers=h, json={"name": "x"})).status_code == 404
    assert await db_conn.fetchval("SELECT deleted_at IS NOT NULL FROM alert_rules WHERE tenant_id = $1"
                                  " AND id = 'line_high'", tenant)  # soft: the row stays
    assert "line_high" not in {r["id"] for r in (await http.get("/v1/rules", headers=h)).json()["data"]}
    # The id is free again; a live one is not.
    again = await http.post("/v1/rules", headers=h, json=threshold("line_high", "line_psi", 900.0))
    assert again.status_code == 201 and again.json()["data"]["params"]["high"] == 900.0
    dup = await http.post("/v1/rules", headers=h, json=threshold("line_high", "line_psi", 900.0))
    assert dup.status_code == 409 and error_fields(dup) == ["id"]
    actions = [r["action"] for r in await db_conn.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND entity_type = 'alert_rule' AND entity_id = 'line_high'"
        " ORDER BY at, id", tenant)]
    assert actions == ["create", "update", "update", "update", "update", "delete", "create"]


async def test_rule_bad_input_is_422_naming_the_field(stack: Any, http: Any) -> None:
    tenant = new_tenant_id("rules-bad")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    h = auth(tenant, "manager")
    cases = [
        ({"kind": "magic", "params": {}}, "kind"),  # the message lists the kinds
        ({"kind": "threshold", "params": {"high": 5}}, "sensor"),
        ({"kind": "threshold", "params": {"sensor": "Bad Name", "high": 5}}, "sensor"),
        ({"kind": "threshold", "params": {"sensor": "p", "high": 5, "colour": "red"}}, "colour"),
        ({"kind": "threshold", "params": {"sensor": "p", "high": 5, "hysteresis": -1}}, "hysteresis"),
        ({"kind": "rate_of_change", "params": {"sensor": "p", "max_rate": 0}}, "max_rate"),
        ({"kind": "anomaly", "params": {"level": 1.5}}, "level"),
        ({"kind": "threshold", "params": {"sensor": "p", "high": 5}, "severity": "apocalyptic"}, "severity"),
        ({"kind": "threshold", "params": {"sensor": "p", "high": 5}, "id": "has space"}, "id"),
        ({"kind": "threshold", "params": {"sensor": "p", "high": 5}, "equipment_type": "rocket"}, "equipment_type"),
    ]
    for body, field in cases:
        r = await http.post("/v1/rules", headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(f == field or f.endswith("." + field) for f in error_fields(r)), (body, r.json())
    # Checked by the rule itself (models.build_rule), as the actors would.
    r = await http.post("/v1/rules", headers=h, json={"kind": "threshold", "params": {"sensor": "p"}})
    assert r.status_code == 422 and error_fields(r) == ["params"] and "needs high, low" in r.text
    r = await http.post("/v1/rules", headers=h, json={"kind": "threshold", "params": {"sensor": "p", "high": 1,
                                                                                      "low": 2}})
    assert r.status_code == 422 and error_fields(r) == ["params.low"]
    r = await http.post("/v1/rules", headers=h, json=threshold("x", "p", 1.0, equipment_id="MTR-1",
                                                                equipment_type="meter"))
    assert r.status_code == 422 and error_fields(r) == ["equipment_type"]
    r = await http.post("/v1/rules", headers=h, json=threshold("x", "p", 1.0, equipment_id="NOPE-1"))
    assert r.status_code == 422 and error_fields(r) == ["equipment_id"]
    assert (await http.post("/v1/rules", headers=h, json=threshold("ok", "p", 1.0))).status_code == 201
    for body, field in [({"params": {"low": 5}}, "params.low"), ({"params": {"nope": 1}}, "params.nope"),
                        ({"params": {"high": "x"}}, "params.high"), ({"kind": "anomaly"}, "kind"),
                        ({"equipment_id": "NOPE-1"}, "equipment_id")]:
        r = await http.patch("/v1/rules/ok", headers=h, json=body)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    assert (await http.get("/v1/rules/ok", headers=h)).json()["data"]["params"] == {"sensor": "p", "high": 1.0}
    for params in ({"colour": "red"}, {"sort": "colour"}, {"kind": "in:magic"}, {"limit": "101"}):
        r = await http.get("/v1/rules", headers=h, params=params)
        assert r.status_code == 422, (params, r.text)
    viewer = await http.post("/v1/rules", headers=auth(tenant, "viewer"), json=threshold("v", "p", 1.0))
    assert viewer.status_code == 403


async def test_rules_of_another_tenant_are_404(stack: Any, http: Any) -> None:
    a, b = new_tenant_id("rules-a"), new_tenant_id("rules-b")
    await create_tenant(stack, a, [("MTR-1", "meter")])
    await create_tenant(stack, b, [("MTR-1", "meter")])
    assert (await http.post("/v1/rules", headers=auth(b, "manager"), json=threshold("b_only", "p", 1.0))
            ).status_code == 201
    ha = auth(a, "admin")
    assert (await http.get("/v1/rules/b_only", headers=ha)).status_code == 404
    assert (await http.patch("/v1/rules/b_only", headers=ha, json={"name": "mine"})).status_code == 404
    assert (await http.delete("/v1/rules/b_only", headers=ha)).status_code == 404
    assert (await http.get("/v1/rules", headers=ha)).json()["data"] == []
    # The same id may exist in both tenants.
    assert (await http.post("/v1/rules", headers=ha, json=threshold("b_only", "p", 2.0))).status_code == 201
    kept = (await http.get("/v1/rules/b_only", headers=auth(b, "viewer"))).json()["data"]
    assert kept["params"]["high"] == 1.0 and kept["name"] == "b_only"


# ----------------------------------------------------------------------------- the running actors


async def test_rule_changes_reach_the_running_actors(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("rules-live")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    h = auth(tenant, "manager")
    feed = Feed(stack, tenant, "MTR-1")
    await feed_until(feed, {"flow_mcfd": 500.0, "line_psi": 100.0},
                     lambda: db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant))
    # The entity is running; a marker rule on the same snapshots proves they were learned.
    assert (await http.post("/v1/rules", headers=h, json=threshold("marker", "marker", 0.5))).status_code == 201
    r = await http.post("/v1/rules", headers=h, json=threshold("line_high", "line_psi", 500.0, equipment_id="MTR-1",
                                                                severity="critical"))
    assert r.status_code == 201

    first = await feed_until(feed, {"line_psi": 600.0}, lambda: open_alert(db_conn, tenant, "line_high"))
    assert first["severity"] == "critical" and "above 500" in first["message"]

    # PATCH: 600 is below the new threshold, so the alert resolves; 650 stays quiet; 750 opens a new one.
    assert (await http.patch("/v1/rules/line_high", headers=h, json={"params": {"high": 700}})).status_code == 200

    async def resolved() -> bool:
        return [a["state"] for a in await alerts_of(db_conn, tenant, "line_high")] == ["resolved"]

    await feed_until(feed, {"line_psi": 600.0}, resolved)
    await feed_until(feed, {"line_psi": 650.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    assert await open_alert(db_conn, tenant, "line_high") is None
    second = await feed_until(feed, {"line_psi": 750.0}, lambda: open_alert(db_conn, tenant, "line_high"))
    assert second["id"] != first["id"] and "above 700" in second["message"]

    # DELETE: the open alert resolves (rule removed), and a new crossing opens nothing.
    assert (await http.delete("/v1/rules/line_high", headers=h)).status_code == 204

    async def removed() -> bool:
        return await open_alert(db_conn, tenant, "line_high") is None

    await feed_until(feed, {"line_psi": 750.0, "marker": 0.0}, removed)
    event = await db_conn.fetchrow("SELECT kind, message FROM alert_events WHERE tenant_id = $1"
                                   " AND alert_id = $2 ORDER BY seq DESC LIMIT 1", tenant, second["id"])
    assert (event["kind"], event["message"]) == ("resolved", "rule line_high removed")
    await feed_until(feed, {"line_psi": 100.0, "marker": 0.0}, lambda: _no_open(db_conn, tenant, "marker"))
    await feed_until(feed, {"line_psi": 900.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    assert [a["id"] for a in await alerts_of(db_conn, tenant, "line_high")] == [first["id"], second["id"]]


async def _no_open(conn: asyncpg.Connection, tenant: str, rule_id: str) -> bool:
    return await open_alert(conn, tenant, rule_id) is None


async def test_custom_rule_replaces_the_type_default_of_the_same_id(stack: Any, http: Any, db_conn: Any) -> None:
    """flow_mcfd_high is a default meter rule (critical above 1250 for 5 s); a custom one of that id wins."""
    tenant = new_tenant_id("rules-override")
    await create_tenant(stack, tenant, [("MTR-1", "meter")])
    h = auth(tenant, "manager")
    r = await http.post("/v1/rules", headers=h, json=threshold("flow_mcfd_high", "flow_mcfd", 5000.0,
                                                                equipment_type="meter", severity="info"))
    assert r.status_code == 201
    assert (await http.post("/v1/rules", headers=h, json=threshold("marker", "marker", 0.5))).status_code == 201
    feed = Feed(stack, tenant, "MTR-1")
    # The marker rule was created last: its alert proves the actors read the custom rule too.
    await feed_until(feed, {"flow_mcfd": 500.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    # 2000 for well over 5 s of reading time: the default would have opened; the custom rule (5000) does not.
    for _ in range(8):
        await feed.send(flow_mcfd=2000.0, marker=0.0)
    # The marker closing and opening again proves those snapshots were evaluated.
    await feed_until(feed, {"flow_mcfd": 2000.0, "marker": 0.0}, lambda: _no_open(db_conn, tenant, "marker"))
    await feed_until(feed, {"flow_mcfd": 2000.0, "marker": 1.0}, lambda: open_alert(db_conn, tenant, "marker"))
    assert await alerts_of(db_conn, tenant, "flow_mcfd_high") == []
    opened = await feed_until(feed, {"flow_mcfd": 6000.0}, lambda: open_alert(db_conn, tenant, "flow_mcfd_high"))
    assert opened["severity"] == "info"
    # Deleting it brings the default back (critical).
    assert (await http.delete("/v1/rules/flow_mcfd_high", headers=h)).status_code == 204

    async def default_again() -> Any:
        a = await open_alert(db_conn, tenant, "flow_mcfd_high")
        return a if a is not None and a["severity"] == "critical" else None

    await feed_until(feed, {"flow_mcfd": 6000.0}, default_again)
