"""Equipment over the REST API: CRUD, sensors, well assignment, bad input, the running actors
picking changes up, and tenant isolation."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
import ray

from actors.common import NAMESPACE
from actors.supervisor import tenant_actor_name
from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, settled, snapshot, wait_for
from tests.test_api_wells import api_number, audit_rows, error_fields

SENSORS = [
    {"name": "tubing_psi", "unit": "psi", "min_value": 0, "max_value": 5000, "expected_interval_seconds": 60},
    {"name": "motor_current_a", "unit": "A", "min_value": 0.0, "max_value": 120.0, "expected_interval_seconds": None},
]


@pytest.fixture(scope="module")
async def tenant(stack: Any) -> str:
    t = new_tenant_id("equip")
    await create_tenant(stack, t, [("MTR-1", "meter")])
    return t


async def new_well(http: Any, tenant: str) -> str:
    r = await http.post("/v1/wells", json={"api_number": api_number(), "name": "w"}, headers=auth(tenant, "manager"))
    assert r.status_code == 201, r.text
    return r.json()["data"]["id"]


def sensor_view(sensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k not in ("created_at", "updated_at")} for s in sensors]


async def test_equipment_crud_sensors_wells_and_audit(http: Any, db_conn: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    w1, w2 = await new_well(http, tenant), await new_well(http, tenant)
    eid = f"PJ-{uuid.uuid4().hex[:6]}"
    body = {"id": eid, "name": "Pump jack 42", "type": "pump_jack", "serial": "LF-320-1", "manufacturer": "Lufkin",
            "install_date": "2021-06-15", "maintenance_interval_days": 90, "well_ids": [w2, w1, w1],
            "sensors": SENSORS, "metadata": {"stroke_in": 144}}
    r = await http.post("/v1/equipment", json=body, headers=manager)
    assert r.status_code == 201, r.text
    eq = r.json()["data"]
    assert (eq["id"], eq["name"], eq["type"], eq["status"]) == (eid, "Pump jack 42", "pump_jack", "operational")
    assert (eq["serial"], eq["manufacturer"], eq["install_date"]) == ("LF-320-1", "Lufkin", "2021-06-15")
    assert eq["maintenance_interval_days"] == 90 and eq["metadata"] == {"stroke_in": 144}
    assert eq["well_ids"] == sorted([w1, w2])
    assert sensor_view(eq["sensors"]) == sorted(
        [{**s, "min_value": float(s["min_value"]), "max_value": float(s["max_value"])} for s in SENSORS],
        key=lambda s: s["name"])
    assert (await http.get(f"/v1/equipment/{eid}", headers=auth(tenant, "viewer"))).json()["data"] == eq
    assert (await http.get(f"/v1/wells/{w1}", headers=manager)).json()["data"]["equipment_ids"] == [eid]

    # PATCH: fields, well list replaced, sensors replaced (a kept sensor keeps its created_at).
    kept = next(s for s in eq["sensors"] if s["name"] == "tubing_psi")
    r = await http.patch(f"/v1/equipment/{eid}", headers=manager, json={
        "status": "failed", "serial": None, "well_ids": [w2],
        "sensors": [{"name": "tubing_psi", "unit": "psi", "min_value": 0, "max_value": 5000,
                     "expected_interval_seconds": 60}, {"name": "casing_psi", "unit": "psi"}]})
    assert r.status_code == 200, r.text
    patched = r.json()["data"]
    assert (patched["status"], patched["serial"], patched["well_ids"]) == ("failed", None, [w2])
    assert [s["name"] for s in patched["sensors"]] == ["casing_psi", "tubing_psi"]
    assert next(s for s in patched["sensors"] if s["name"] == "tubing_psi")["created_at"] == kept["created_at"]
    assert patched["name"] == "Pump jack 42" and patched["manufacturer"] == "Lufkin"
    r = await http.patch(f"/v1/equipment/{eid}", headers=manager, json={})
    assert r.status_code == 200 and r.json()["data"]["updated_at"] == patched["updated_at"]

    # The sensor list on its own.
    r = await http.put(f"/v1/equipment/{eid}/sensors", headers=manager, json={"sensors": SENSORS[1:]})
    assert r.status_code == 200, r.text
    assert [s["name"] for s in r.json()["data"]] == ["motor_current_a"]
    r = await http.get(f"/v1/equipment/{eid}/sensors", headers=auth(tenant, "viewer"))
    assert sensor_view(r.json()["data"]) == [{**SENSORS[1]}]

    # A server-made id; the name defaults to it.
    r = await http.post("/v1/equipment", json={"type": "meter"}, headers=manager)
    assert r.status_code == 201, r.text
    made = r.json()["data"]
    assert made["id"].startswith("EQ-") and made["name"] == made["id"] and made["sensors"] == []

    r = await http.delete(f"/v1/equipment/{eid}", headers=manager)
    assert r.status_code == 204, r.text
    for method, path in (("GET", f"/v1/equipment/{eid}"), ("PATCH", f"/v1/equipment/{eid}"),
                         ("DELETE", f"/v1/equipment/{eid}"), ("GET", f"/v1/equipment/{eid}/sensors"),
                         ("PUT", f"/v1/equipment/{eid}/sensors")):
        r = await http.request(method, path, headers=manager,
                               json={"sensors": []} if method == "PUT" else {} if method == "PATCH" else None)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path, r.text)
    row = await db_conn.fetchrow("SELECT status, deleted_at FROM equipment WHERE tenant_id = $1 AND id = $2",
                                 tenant, eid)
    assert row["status"] == "decommissioned" and row["deleted_at"] is not None
    assert (await http.get(f"/v1/wells/{w2}", headers=manager)).json()["data"]["equipment_ids"] == []
    # The well can go now: its only equipment is decommissioned.
    assert (await http.delete(f"/v1/wells/{w2}", headers=manager)).status_code == 204

    rows = await audit_rows(db_conn, tenant, "equipment", eid)
    assert [r["action"] for r in rows] == ["create", "update", "replace_sensors", "delete"]
    assert '"failed"' in rows[1]["new"] and '"operational"' in rows[1]["old"]
    assert "casing_psi" in rows[2]["old"] and "casing_psi" not in rows[2]["new"]

    # The id may be taken again by new hardware: a fresh equipment under it.
    r = await http.post("/v1/equipment", json={"id": eid, "type": "compressor"}, headers=manager)
    assert r.status_code == 201, r.text
    again = r.json()["data"]
    assert (again["type"], again["status"], again["serial"], again["sensors"], again["well_ids"]) == (
        "compressor", "operational", None, [], [])


async def test_list_filters_sort_fields(stack: Any, http: Any) -> None:
    t = new_tenant_id("elist")
    await create_tenant(stack, t, [])
    manager = auth(t, "manager")
    for eid, etype, status, interval, installed in [
        ("CMP-1", "compressor", "operational", 30, "2020-01-01"), ("CMP-2", "compressor", "failed", None, None),
        ("PJ-1", "pump_jack", "operational", 90, "2022-05-01"), ("SEP-1", "separator", "maintenance", 180, None),
    ]:
        r = await http.post("/v1/equipment", headers=manager, json={
            "id": eid, "type": etype, "status": status, "maintenance_interval_days": interval,
            "install_date": installed, "name": f"{etype} {eid}"})
        assert r.status_code == 201, r.text

    async def ids(**params: Any) -> list[str]:
        r = await http.get("/v1/equipment", headers=manager, params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["data"]]

    assert await ids() == ["CMP-1", "CMP-2", "PJ-1", "SEP-1"]
    assert await ids(type="compressor") == ["CMP-1", "CMP-2"]
    assert await ids(status="in:failed,maintenance") == ["CMP-2", "SEP-1"]
    assert await ids(maintenance_interval_days="gte:90", sort="-maintenance_interval_days") == ["SEP-1", "PJ-1"]
    assert await ids(install_date="lt:2021-01-01") == ["CMP-1"]
    assert await ids(name="like:*pump*") == ["PJ-1"]
    r = await http.get("/v1/equipment", headers=manager, params={"fields": "type,status", "limit": 1, "page": 2,
                                                                  "sort": "-id"})
    assert r.json() == {"data": [{"id": "PJ-1", "type": "pump_jack", "status": "operational"}],
                        "meta": {"pagination": {"page": 2, "limit": 1, "total": 4}}}
    for params, field in [({"type": "rig"}, "type"), ({"sort": "sensors"}, "sort"), ({"fields": "nope"}, "fields"),
                          ({"maintenance_interval_days": "gt:x"}, "maintenance_interval_days"), ({"page": "0"}, "page"),
                          ({"well_id": "a.b"}, "well_id")]:
        r = await http.get("/v1/equipment", headers=manager, params=params)
        assert r.status_code == 422 and field in error_fields(r), (params, r.text)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"type": "drill_rig"}, 422, "type"),
    ({"status": "broken"}, 422, "status"),
    ({"id": "due-maintenance"}, 422, "id"),
    ({"id": "has space"}, 422, "id"),
    ({"well_ids": ["NOPE-WELL"]}, 422, "well_ids"),
    ({"well_ids": ["bad.id"]}, 422, "well_ids.0"),
    ({"maintenance_interval_days": 0}, 422, "maintenance_interval_days"),
    ({"maintenance_interval_days": 3651}, 422, "maintenance_interval_days"),
    ({"install_date": "2021-02-30"}, 422, "install_date"),
    ({"sensors": [{"name": "Tubing PSI"}]}, 422, "sensors.0.name"),
    ({"sensors": [{"name": "a", "min_value": 5, "max_value": 5}]}, 422, "sensors.0.max_value"),
    ({"sensors": [{"name": "a", "expected_interval_seconds": 0}]}, 422, "sensors.0.expected_interval_seconds"),
    ({"sensors": [{"name": "a", "min_value": 1e300}]}, 422, "sensors.0.min_value"),
    ({"sensors": [{"name": "a"}, {"name": "a"}]}, 422, "sensors"),
    ({"sensors": [{"name": "a", "colour": "red"}]}, 422, "sensors.0.colour"),
    ({"name": "x" * 201}, 422, "name"),
    ({"metadata": []}, 422, "metadata"),
])
async def test_bad_equipment_input(http: Any, tenant: str, body: dict[str, Any], status: int, field: str) -> None:
    r = await http.post("/v1/equipment", json=body, headers=auth(tenant, "manager"))
    assert r.status_code == status, r.text
    assert field in error_fields(r), r.text


async def test_conflicts_and_patch_errors(http: Any, tenant: str) -> None:
    manager = auth(tenant, "manager")
    r = await http.post("/v1/equipment", json={"id": "MTR-1"}, headers=manager)  # registered by create_tenant
    assert r.status_code == 409 and error_fields(r) == ["id"]
    for body, field in [({"name": None}, "name"), ({"type": None}, "type"), ({"well_ids": None}, "well_ids"),
                        ({"well_ids": ["NOPE"]}, "well_ids"), ({"status": "gone"}, "status"), ({"id": "x"}, "id"),
                        ({"sensors": [{"name": "a", "min_value": 2, "max_value": 1}]}, "sensors.0.max_value")]:
        r = await http.patch("/v1/equipment/MTR-1", json=body, headers=manager)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    r = await http.put("/v1/equipment/MTR-1/sensors", json={"sensors": [{"name": "x"}, {"name": "x"}]},
                       headers=manager)
    assert r.status_code == 422 and error_fields(r) == ["sensors"]
    for role in ("operator", "viewer"):
        assert (await http.patch("/v1/equipment/MTR-1", json={}, headers=auth(tenant, role))).status_code == 403
        assert (await http.delete("/v1/equipment/MTR-1", headers=auth(tenant, role))).status_code == 403


# ----------------------------------------------------------------------------- the running actors


async def _actor_view(tenant: str) -> tuple[int, set[str]]:
    """(equipment in the TenantActor's registry, equipment hosted by its EquipmentActors)."""
    actor = ray.get_actor(tenant_actor_name(tenant), namespace=NAMESPACE)
    stats = await actor.stats.remote()
    statuses = await actor.equipment_status.remote()
    return stats["equipment"], {e for s in statuses for e in s["entities"]}


async def test_actors_follow_the_registry(stack: Any, http: Any, db_conn: Any) -> None:
    t = new_tenant_id("eactor")
    await create_tenant(stack, t, [("MTR-1", "meter")])
    manager = auth(t, "manager")

    async def registered(n: int) -> bool:
        return (await _actor_view(t))[0] == n

    await wait_for(lambda: registered(1), timeout=30)

    r = await http.post("/v1/equipment", headers=manager, json={"id": "PJ-NEW", "type": "pump_jack",
                                                                "name": "New pump jack"})
    assert r.status_code == 201, r.text
    # Published right away: whichever comes first, ctl.<tenant> or the reading, the API's details stand.
    start = now_utc() - timedelta(minutes=5)
    values = {"motor_current_a": 42.0, "tubing_psi": 800.0}
    await publish(stack.settings.nats_url, t, [
        ("PJ-NEW", snapshot("PJ-NEW", start + timedelta(seconds=i), {k: v + i % 3 for k, v in values.items()}))
        for i in range(40)])

    async def stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1 AND equipment_id = 'PJ-NEW'",
                                      t) == 80

    async def learned() -> bool:
        return bool(await db_conn.fetchval("SELECT samples_seen FROM model_checkpoints WHERE tenant_id = $1"
                                           " AND equipment_id = 'PJ-NEW'", t))

    await wait_for(stored, timeout=60)
    await wait_for(learned, timeout=60)
    row = await db_conn.fetchrow("SELECT type, name FROM equipment WHERE tenant_id = $1 AND id = 'PJ-NEW'", t)
    assert (row["type"], row["name"]) == ("pump_jack", "New pump jack")

    async def hosted(present: bool) -> bool:
        count, entities = await _actor_view(t)
        return count == (2 if present else 1) and ("PJ-NEW" in entities) == present

    await wait_for(lambda: hosted(True), timeout=30)

    # Deleted: gone from the registry the actors hold, and further readings do not bring it back.
    assert (await http.delete("/v1/equipment/PJ-NEW", headers=manager)).status_code == 204
    await wait_for(lambda: hosted(False), timeout=30)
    await publish(stack.settings.nats_url, t, [
        ("PJ-NEW", snapshot("PJ-NEW", start + timedelta(seconds=100), values)),
        ("MTR-1", snapshot("MTR-1", start + timedelta(seconds=100), {"flow_mcfd": 500.0}))])

    async def later_stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", t) == 83

    await wait_for(later_stored, timeout=60)  # kept: a reading is never thrown away
    await settled(stack, t)
    row = await db_conn.fetchrow("SELECT type, status, deleted_at FROM equipment WHERE tenant_id = $1"
                                 " AND id = 'PJ-NEW'", t)
    assert (row["type"], row["status"]) == ("pump_jack", "decommissioned") and row["deleted_at"] is not None
    assert await hosted(False)
    assert (await http.get("/v1/equipment/PJ-NEW", headers=manager)).status_code == 404


# ----------------------------------------------------------------------------- tenant isolation


async def test_tenant_b_equipment_is_404_and_invisible(stack: Any, http: Any, db_conn: Any) -> None:
    a, b = new_tenant_id("eiso-a"), new_tenant_id("eiso-b")
    await create_tenant(stack, a, [("MTR-1", "meter")])
    await create_tenant(stack, b, [("MTR-1", "meter"), ("MTR-B", "meter")])
    r = await http.put("/v1/equipment/MTR-B/sensors", json={"sensors": SENSORS}, headers=auth(b, "admin"))
    assert r.status_code == 200
    before = [dict(x) for x in await db_conn.fetch(
        "SELECT id, name, status, deleted_at, updated_at FROM equipment WHERE tenant_id = $1 ORDER BY id", b)]
    admin_a = auth(a, "admin")
    for method, path, body in [("GET", "/v1/equipment/MTR-B", None), ("PATCH", "/v1/equipment/MTR-B", {"name": "A"}),
                               ("DELETE", "/v1/equipment/MTR-B", None), ("GET", "/v1/equipment/MTR-B/sensors", None),
                               ("PUT", "/v1/equipment/MTR-B/sensors", {"sensors": []})]:
        r = await http.request(method, path, headers=admin_a, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path, r.text)
    # Same id in both: A's own, with A's (no) sensors.
    r = await http.get("/v1/equipment/MTR-1", headers=admin_a)
    assert r.status_code == 200 and r.json()["data"]["sensors"] == []
    listed = (await http.get("/v1/equipment", headers=admin_a, params={"limit": 100})).json()
    assert [e["id"] for e in listed["data"]] == ["MTR-1"] and listed["meta"]["pagination"]["total"] == 1
    after = [dict(x) for x in await db_conn.fetch(
        "SELECT id, name, status, deleted_at, updated_at FROM equipment WHERE tenant_id = $1 ORDER BY id", b)]
    assert after == before
    assert await db_conn.fetchval("SELECT count(*) FROM equipment_sensors WHERE tenant_id = $1", b) == 2


async def test_anomaly_sensitivity_per_tenant_type_and_equipment(stack: Any, http: Any) -> None:
    """The most specific choice wins (equipment, then the tenant's per type, then its default) and a change
    reaches the running models without a restart."""
    t = new_tenant_id("esens")
    await create_tenant(stack, t, [])
    r = await http.patch("/v1/tenant/settings", headers=auth(t, "admin"), json={
        "anomaly_sensitivity": "low", "anomaly_sensitivity_by_type": {"compressor": "high"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["anomaly_sensitivity_by_type"] == {"compressor": "high"}
    r = await http.patch("/v1/tenant/settings", headers=auth(t, "admin"),
                         json={"anomaly_sensitivity_by_type": {"drill_rig": "high"}})
    assert r.status_code == 422 and "anomaly_sensitivity_by_type" in error_fields(r)[0]
    manager = auth(t, "manager")
    for body in ({"id": "PJ-S", "type": "pump_jack"}, {"id": "CMP-S", "type": "compressor"},
                 {"id": "PJ-H", "type": "pump_jack", "anomaly_sensitivity": "high"}):
        r = await http.post("/v1/equipment", headers=manager, json=body)
        assert r.status_code == 201, r.text
    assert r.json()["data"]["anomaly_sensitivity"] == "high"
    start = now_utc() - timedelta(minutes=1)
    await publish(stack.settings.nats_url, t, [
        (e, snapshot(e, start, {"motor_current_a": 40.0})) for e in ("PJ-S", "CMP-S", "PJ-H")])

    async def sensitivities() -> dict[str, str]:
        actor = ray.get_actor(tenant_actor_name(t), namespace=NAMESPACE)
        statuses = await actor.equipment_status.remote()
        return {e: s["anomaly_sensitivity"] for status in statuses for e, s in status["entities"].items()}

    async def expected(want: dict[str, str]) -> bool:
        return await sensitivities() == want

    await wait_for(lambda: expected({"PJ-S": "low", "CMP-S": "high", "PJ-H": "high"}), timeout=60)
    r = await http.patch("/v1/equipment/PJ-H", headers=manager, json={"anomaly_sensitivity": None})
    assert r.status_code == 200 and r.json()["data"]["anomaly_sensitivity"] is None, r.text
    await wait_for(lambda: expected({"PJ-S": "low", "CMP-S": "high", "PJ-H": "low"}), timeout=30)
