"""Maintenance over the REST API: jobs start and finish, the equipment's status follows them,
due preventive maintenance, the shared list conventions, bad input, and tenant isolation."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.helpers import auth, create_tenant, new_tenant_id, now_utc, publish, settled, snapshot, wait_for
from tests.test_api_wells import audit_rows, error_fields


@pytest.fixture(scope="module")
async def tenant(stack: Any) -> str:
    t = new_tenant_id("maint")
    await create_tenant(stack, t, [])
    return t


async def new_equipment(http: Any, tenant: str, **fields: Any) -> str:
    eid = f"CMP-{uuid.uuid4().hex[:6]}"
    r = await http.post("/v1/equipment", json={"id": eid, "type": "compressor", **fields},
                        headers=auth(tenant, "manager"))
    assert r.status_code == 201, r.text
    return eid


async def status_of(db_conn: Any, tenant: str, eid: str) -> tuple[str, str | None]:
    row = await db_conn.fetchrow("SELECT status, status_before_maintenance FROM equipment"
                                 " WHERE tenant_id = $1 AND id = $2", tenant, eid)
    return row["status"], row["status_before_maintenance"]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_start_and_finish_restores_status(http: Any, db_conn: Any, tenant: str) -> None:
    operator = auth(tenant, "operator")  # field crews hold field_data:write
    eid = await new_equipment(http, tenant)
    before = now_utc()
    r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator,
                        json={"kind": "corrective", "description": "valve packing", "performed_by": "Crew 3"})
    assert r.status_code == 201, r.text
    job = r.json()["data"]
    assert (job["equipment_id"], job["kind"], job["description"], job["performed_by"]) == (
        eid, "corrective", "valve packing", "Crew 3")
    assert before - timedelta(seconds=5) <= ts(job["started_at"]) <= now_utc()  # default: now
    assert job["ended_at"] is None and job["active"] is True and job["version"] == 1
    assert job["created_by"] == f"operator@{tenant}.example" and job["source"] == "api"
    # The two facts the alert pipeline silences by: the status, and the open record.
    assert await status_of(db_conn, tenant, eid) == ("maintenance", "operational")
    assert (await http.get(f"/v1/equipment/{eid}", headers=operator)).json()["data"]["status"] == "maintenance"

    r = await http.patch(f"/v1/equipment/{eid}/maintenance/{job['id']}", headers=operator,
                         json={"ended_at": now_utc().isoformat(), "version": 1})
    assert r.status_code == 200, r.text
    done = r.json()["data"]
    assert done["version"] == 2 and done["active"] is False and done["ended_at"] is not None
    assert await status_of(db_conn, tenant, eid) == ("operational", None)

    rows = await audit_rows(db_conn, tenant, "maintenance", job["id"])
    assert [r["action"] for r in rows] == ["create", "update"]
    assert '"to": "maintenance"' in rows[0]["new"] and '"to": "operational"' in rows[1]["new"]
    # An edit bumps the version; a stale version is refused.
    r = await http.patch(f"/v1/equipment/{eid}/maintenance/{job['id']}", headers=operator,
                         json={"description": "valve packing and seals"})
    assert r.status_code == 200 and r.json()["data"]["version"] == 3
    r = await http.patch(f"/v1/equipment/{eid}/maintenance/{job['id']}", headers=operator,
                         json={"description": "stale", "version": 2})
    assert r.status_code == 409 and error_fields(r) == ["version"]
    assert await status_of(db_conn, tenant, eid) == ("operational", None)


async def test_status_rules(http: Any, db_conn: Any, tenant: str) -> None:
    operator, manager = auth(tenant, "operator"), auth(tenant, "manager")
    now = now_utc()

    async def start(eid: str, **body: Any) -> dict[str, Any]:
        r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator, json=body)
        assert r.status_code == 201, r.text
        return r.json()["data"]

    async def finish(eid: str, job: dict[str, Any], **body: Any) -> dict[str, Any]:
        r = await http.patch(f"/v1/equipment/{eid}/maintenance/{job['id']}", headers=operator,
                             json=body or {"ended_at": now_utc().isoformat()})
        assert r.status_code == 200, r.text
        return r.json()["data"]

    # A failed equipment goes back to failed: the status before is what returns.
    failed = await new_equipment(http, tenant, status="failed")
    job = await start(failed, kind="failure_repair")
    assert await status_of(db_conn, tenant, failed) == ("maintenance", "failed")
    await finish(failed, job)
    assert await status_of(db_conn, tenant, failed) == ("failed", None)

    # Two open jobs: the status returns when the last one ends.
    eid = await new_equipment(http, tenant)
    first, second = await start(eid), await start(eid, kind="inspection")
    await finish(eid, first)
    assert await status_of(db_conn, tenant, eid) == ("maintenance", "operational")
    await finish(eid, second)
    assert await status_of(db_conn, tenant, eid) == ("operational", None)
    # Reopening a finished job (ended_at null) puts it back into maintenance.
    reopened = await finish(eid, second, ended_at=None)
    assert reopened["active"] is True and await status_of(db_conn, tenant, eid) == ("maintenance", "operational")
    await finish(eid, second)

    # A status set by hand wins: finishing the job afterwards restores nothing.
    eid = await new_equipment(http, tenant)
    job = await start(eid)
    r = await http.patch(f"/v1/equipment/{eid}", json={"status": "failed"}, headers=manager)
    assert r.status_code == 200
    assert await status_of(db_conn, tenant, eid) == ("failed", None)
    await finish(eid, job)
    assert await status_of(db_conn, tenant, eid) == ("failed", None)

    # Windows that change no status: a planned end, a past job recorded afterwards, a job starting later.
    eid = await new_equipment(http, tenant)
    planned = await start(eid, ended_at=(now + timedelta(hours=2)).isoformat())
    assert planned["active"] is True  # silenced by its window until then
    past = await start(eid, started_at=(now - timedelta(days=3)).isoformat(),
                       ended_at=(now - timedelta(days=3, hours=-2)).isoformat())
    future = await start(eid, started_at=(now + timedelta(days=1)).isoformat())
    assert past["active"] is False and future["active"] is False
    assert await status_of(db_conn, tenant, eid) == ("operational", None)

    # Decommissioned equipment takes no new jobs.
    eid = await new_equipment(http, tenant, status="decommissioned")
    r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator, json={})
    assert r.status_code == 409 and error_fields(r) == ["equipment_id"]


async def test_bad_input_permissions_and_unknown_ids(http: Any, tenant: str) -> None:
    operator, viewer = auth(tenant, "operator"), auth(tenant, "viewer")
    eid = await new_equipment(http, tenant)
    now = now_utc()
    for body, field in [
        ({"kind": "tune_up"}, "kind"),
        ({"started_at": "2026-01-01T00:00:00"}, "started_at"),  # no zone
        ({"started_at": "yesterday"}, "started_at"),
        ({"started_at": "0001-01-01T00:00:00+05:00"}, "started_at"),
        ({"started_at": now.isoformat(), "ended_at": (now - timedelta(minutes=1)).isoformat()}, "ended_at"),
        ({"description": "x" * 4001}, "description"),
        ({"description": "nul\u0000"}, "description"),
        ({"crew": "3"}, "crew"),
    ]:
        r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator, json=body)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=viewer, json={})
    assert r.status_code == 403
    job = (await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator,
                           json={"started_at": (now - timedelta(hours=1)).isoformat()})).json()["data"]
    path = f"/v1/equipment/{eid}/maintenance/{job['id']}"
    for body, field in [({"ended_at": (now - timedelta(hours=2)).isoformat()}, "ended_at"),
                        ({"kind": None}, "kind"), ({"started_at": None}, "started_at"), ({"version": 0}, "version"),
                        ({"id": "x"}, "id")]:
        r = await http.patch(path, headers=operator, json=body)
        assert r.status_code == 422 and field in error_fields(r), (body, r.text)
    await http.patch(path, headers=operator, json={"ended_at": now.isoformat()})
    r = await http.patch(path, headers=operator, json={"started_at": (now + timedelta(hours=1)).isoformat()})
    assert r.status_code == 422 and error_fields(r) == ["started_at"]
    assert (await http.patch(path, headers=viewer, json={})).status_code == 403

    other = await new_equipment(http, tenant)
    for method, p, body in [("GET", f"/v1/equipment/NOPE-{uuid.uuid4().hex[:4]}/maintenance", None),
                            ("POST", f"/v1/equipment/NOPE-{uuid.uuid4().hex[:4]}/maintenance", {}),
                            ("PATCH", f"/v1/equipment/{eid}/maintenance/{uuid.uuid4()}", {}),
                            ("PATCH", f"/v1/equipment/{other}/maintenance/{job['id']}", {})]:  # not its job
        r = await http.request(method, p, headers=operator, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, p, r.text)
    r = await http.patch(f"/v1/equipment/{eid}/maintenance/not-a-uuid", headers=operator, json={})
    assert r.status_code == 422 and error_fields(r) == ["maintenance_id"]
    # A deleted equipment's jobs are gone with it.
    assert (await http.delete(f"/v1/equipment/{eid}", headers=auth(tenant, "manager"))).status_code == 204
    assert (await http.patch(path, headers=operator, json={})).status_code == 404
    assert (await http.get(f"/v1/equipment/{eid}/maintenance", headers=viewer)).status_code == 404


async def test_list_uses_the_shared_conventions(http: Any, tenant: str) -> None:
    operator = auth(tenant, "operator")
    eid = await new_equipment(http, tenant)
    now = now_utc().replace(microsecond=0)
    ids = []
    for i, kind in enumerate(["preventive", "inspection", "corrective", "inspection"]):
        body: dict[str, Any] = {"kind": kind, "started_at": (now - timedelta(days=4 - i)).isoformat()}
        if i < 3:
            body["ended_at"] = (now - timedelta(days=4 - i, hours=-1)).isoformat()
        r = await http.post(f"/v1/equipment/{eid}/maintenance", headers=operator, json=body)
        ids.append(r.json()["data"]["id"])

    async def listed(**params: Any) -> list[str]:
        r = await http.get(f"/v1/equipment/{eid}/maintenance", headers=auth(tenant, "viewer"), params=params)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    assert await listed() == ids[::-1]  # newest first
    assert await listed(kind="inspection") == [ids[3], ids[1]]
    assert await listed(active="true") == [ids[3]]
    cutoff = (now - timedelta(days=2, hours=12)).isoformat()
    assert await listed(started_at=f"lt:{cutoff}", sort="started_at") == ids[:2]
    r = await http.get(f"/v1/equipment/{eid}/maintenance", headers=operator,
                       params={"fields": "kind", "limit": 1, "page": 2})
    assert r.json() == {"data": [{"id": ids[2], "kind": "corrective"}],
                        "meta": {"pagination": {"page": 2, "limit": 1, "total": 4}}}
    for params, field in [({"kind": "tune_up"}, "kind"), ({"active": "maybe"}, "active"), ({"id": "nope"}, "id"),
                          ({"version": "like:1*"}, "version"), ({"limit": 0}, "limit")]:
        r = await http.get(f"/v1/equipment/{eid}/maintenance", headers=operator, params=params)
        assert r.status_code == 422 and field in error_fields(r), (params, r.text)


async def test_due_maintenance(stack: Any, http: Any) -> None:
    t = new_tenant_id("due")
    await create_tenant(stack, t, [])
    manager, operator = auth(t, "manager"), auth(t, "operator")
    now = now_utc()
    today = now.date()

    async def make(eid: str, **fields: Any) -> None:
        r = await http.post("/v1/equipment", json={"id": eid, **fields}, headers=manager)
        assert r.status_code == 201, r.text

    async def job(eid: str, started: timedelta, ended: timedelta | None) -> None:
        body = {"started_at": (now - started).isoformat(), "ended_at": (now - ended).isoformat() if ended else None}
        r = await http.post(f"/v1/equipment/{eid}/maintenance", json=body, headers=operator)
        assert r.status_code == 201, r.text

    await make("A", maintenance_interval_days=30, install_date=str(today - timedelta(days=40)))  # 10 days overdue
    await make("B", maintenance_interval_days=30, install_date=str(today - timedelta(days=100)))
    await job("B", timedelta(days=28), timedelta(days=27))  # due in about 3 days
    await make("C", maintenance_interval_days=30, install_date=str(today - timedelta(days=10)))  # in 20 days
    await make("D", install_date=str(today - timedelta(days=1000)))  # no schedule
    await make("E", maintenance_interval_days=10)  # no baseline
    await make("F", maintenance_interval_days=5, install_date=str(today - timedelta(days=100)), status="decommissioned")
    await make("G", maintenance_interval_days=30, install_date=str(today - timedelta(days=400)))
    await job("G", timedelta(days=51), timedelta(days=50))  # due 20 days ago...
    await job("G", timedelta(days=1), None)  # ...an open job is not a finished one
    await make("H", maintenance_interval_days=1, install_date=str(today - timedelta(days=100)))
    assert (await http.delete("/v1/equipment/H", headers=manager)).status_code == 204

    r = await http.get("/v1/equipment/due-maintenance", headers=auth(t, "viewer"))
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    assert [i["id"] for i in items] == ["G", "A", "B"]  # overdue first
    assert [i["overdue"] for i in items] == [True, True, False]
    g, a, b = items
    assert -20.1 < g["days_until_due"] < -19.9 and ts(g["last_maintenance_at"]) < now - timedelta(days=49)
    assert -11.0 < a["days_until_due"] < -9.9 and a["last_maintenance_at"] is None
    assert 2.9 < b["days_until_due"] < 3.1
    assert ts(a["due_at"]).date() == today - timedelta(days=10) and a["maintenance_interval_days"] == 30
    assert r.json()["meta"]["pagination"]["total"] == 3

    async def due(**params: Any) -> list[str]:
        r = await http.get("/v1/equipment/due-maintenance", headers=manager, params=params)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["data"]]

    assert await due(within_days=0) == ["G", "A"]
    assert await due(within_days=30) == ["G", "A", "B", "C"]
    assert await due(within_days=30, overdue="false") == ["B", "C"]
    assert await due(within_days=30, sort="-due_at", limit=1) == ["C"]
    assert await due(fields="due_at") == ["G", "A", "B"]
    for params, field in [({"within_days": -1}, "within_days"), ({"within_days": "soon"}, "within_days"),
                          ({"overdue": "perhaps"}, "overdue"), ({"sort": "colour"}, "sort")]:
        r = await http.get("/v1/equipment/due-maintenance", headers=manager, params=params)
        assert r.status_code == 422 and field in error_fields(r), (params, r.text)


async def test_tenant_b_maintenance_is_404(stack: Any, http: Any, db_conn: Any) -> None:
    a, b = new_tenant_id("miso-a"), new_tenant_id("miso-b")
    await create_tenant(stack, a, [("CMP-1", "compressor")])
    await create_tenant(stack, b, [("CMP-1", "compressor"), ("CMP-B", "compressor")])
    r = await http.post("/v1/equipment/CMP-1/maintenance", json={}, headers=auth(b, "operator"))
    b_job = r.json()["data"]["id"]
    await http.patch("/v1/equipment/CMP-B", json={"maintenance_interval_days": 1, "install_date": "2020-01-01"},
                     headers=auth(b, "admin"))
    before = [dict(x) for x in await db_conn.fetch(
        "SELECT id, version, ended_at FROM maintenance_records WHERE tenant_id = $1", b)]
    admin_a = auth(a, "admin")
    for method, path, body in [("GET", "/v1/equipment/CMP-B/maintenance", None),
                               ("POST", "/v1/equipment/CMP-B/maintenance", {}),
                               ("PATCH", f"/v1/equipment/CMP-1/maintenance/{b_job}", {"description": "A"}),
                               ("PATCH", f"/v1/equipment/CMP-B/maintenance/{b_job}", {"description": "A"})]:
        r = await http.request(method, path, headers=admin_a, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path, r.text)
    r = await http.get("/v1/equipment/CMP-1/maintenance", headers=admin_a)
    assert r.status_code == 200 and r.json()["data"] == []
    r = await http.get("/v1/equipment/due-maintenance", headers=admin_a, params={"within_days": 3650})
    assert r.status_code == 200 and r.json()["data"] == []
    assert [dict(x) for x in await db_conn.fetch(
        "SELECT id, version, ended_at FROM maintenance_records WHERE tenant_id = $1", b)] == before


async def test_maintenance_over_the_api_silences_alerts(stack: Any, http: Any, db_conn: Any) -> None:
    """End to end with the alert pipeline: a job started over the API holds the equipment's alerts back;
    finishing it over the API lets the one still holding open."""
    t = new_tenant_id("msil")
    rule = {"id": "line_high", "kind": "threshold", "params": {"sensor": "line_psi", "high": 500.0}}
    await create_tenant(stack, t, [("MTR-1", "meter")], rules=[rule])
    operator = auth(t, "operator")
    r = await http.post("/v1/equipment/MTR-1/maintenance", headers=operator, json={"kind": "corrective"})
    assert r.status_code == 201, r.text
    job = r.json()["data"]
    start = now_utc() - timedelta(seconds=30)
    await publish(stack.settings.nats_url, t, [
        ("MTR-1", snapshot("MTR-1", start + timedelta(seconds=i), {"line_psi": 900.0})) for i in range(10)])

    async def stored() -> bool:
        return await db_conn.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", t) == 10

    async def alerts() -> list[str]:
        return [r["state"] for r in await db_conn.fetch(
            "SELECT state FROM alerts WHERE tenant_id = $1 AND rule_id = 'line_high'", t)]

    await wait_for(stored, timeout=60)
    await settled(stack, t)  # the models learned the batch and the pipeline decided
    assert await alerts() == []
    r = await http.patch(f"/v1/equipment/MTR-1/maintenance/{job['id']}", headers=operator,
                         json={"ended_at": now_utc().isoformat()})
    assert r.status_code == 200, r.text
    assert await wait_for(alerts, timeout=20) == ["open"]
