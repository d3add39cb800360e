"""Daily production records over HTTP: CRUD, the rules (no future day, no negative volume, one record per
well and day), batch and CSV import all or nothing, streamed CSV export, period sums, the shared list
conventions, audit, and tenant isolation."""

import csv
import io
import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import auth, create_tenant, new_tenant_id

CSV = {"Content-Type": "text/csv"}


async def add_wells(db_conn: Any, tenant: str, *ids: str) -> None:
    for well_id in ids:
        await db_conn.execute(
            "INSERT INTO wells (tenant_id, id, api_number, name) VALUES ($1, $2, $3, $2)",
            tenant, well_id, f"42{uuid.uuid4().int % 10**8:08d}")


async def tenant_today(db_conn: Any, tenant: str) -> date:
    zone = await db_conn.fetchval("SELECT coalesce(settings->>'timezone', 'UTC') FROM tenants WHERE id = $1", tenant)
    return datetime.now(ZoneInfo(zone)).date()


async def stored(db_conn: Any, tenant: str) -> int:
    return await db_conn.fetchval("SELECT count(*) FROM production_records WHERE tenant_id = $1", tenant)


async def audit_rows(db_conn: Any, tenant: str) -> list[dict[str, Any]]:
    rows = await db_conn.fetch("SELECT action, entity_id, old_values, new_values FROM audit_log"
                               " WHERE tenant_id = $1 AND entity_type = 'production_record' ORDER BY at, id", tenant)
    out = []
    for r in rows:
        row = dict(r)
        for column in ("old_values", "new_values"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        out.append(row)
    return out


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}, body
    return body["error"]


def fields(err: dict[str, Any]) -> list[str]:
    return [d["field"] for d in err["details"]]


@pytest.fixture(scope="module")
async def tenants(stack: Any) -> dict[str, str]:
    import asyncpg

    a, b = new_tenant_id("prod-a"), new_tenant_id("prod-b")
    await create_tenant(stack, a, [("PJ-1", "pump_jack")])
    await create_tenant(stack, b, [("PJ-1", "pump_jack")])
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await add_wells(conn, a, "W-1", "W-2", "W-3", "W-GONE")
        await conn.execute("UPDATE wells SET deleted_at = now() WHERE tenant_id = $1 AND id = 'W-GONE'", a)
        await add_wells(conn, b, "W-1", "W-B")
    finally:
        await conn.close()
    return {"a": a, "b": b}


async def test_crud_with_version_audit_and_soft_delete(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    day = today - timedelta(days=400)
    r = await http.post("/v1/production", headers=op, json={
        "well_id": "W-1", "day": day.isoformat(), "oil_bbl": 42.5, "gas_mcf": 130, "water_bbl": 88,
        "runtime_hours": 23.5, "tubing_psi": 180, "notes": "first"})
    assert r.status_code == 201, r.text
    rec = r.json()["data"]
    assert (rec["well_id"], rec["day"], rec["oil_bbl"], rec["version"], rec["source"]) == (
        "W-1", day.isoformat(), 42.5, 1, "api")
    assert rec["casing_psi"] is None
    rid = rec["id"]

    r = await http.get(f"/v1/production/{rid}", headers=auth(a, "viewer"))
    assert r.status_code == 200 and r.json()["data"] == rec

    r = await http.patch(f"/v1/production/{rid}", headers=op, json={"oil_bbl": 40.0, "notes": None, "version": 1})
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["oil_bbl"], r.json()["data"]["notes"], r.json()["data"]["version"]) == (40.0, None, 2)
    # A writer holding version 1 is refused: someone changed the record meanwhile.
    err = error(await http.patch(f"/v1/production/{rid}", headers=op, json={"oil_bbl": 1, "version": 1}), 409)
    assert fields(err) == ["version"]
    err = error(await http.patch(f"/v1/production/{rid}", headers=op, json={"oil_bbl": None}), 422)
    assert fields(err) == ["oil_bbl"]
    err = error(await http.patch(f"/v1/production/{rid}", headers=op, json={"water_bbl": -1}), 422)
    assert fields(err) == ["water_bbl"]
    err = error(await http.patch(f"/v1/production/{rid}", headers=op,
                                 json={"day": (today + timedelta(days=1)).isoformat()}), 422)
    assert fields(err) == ["day"]
    err = error(await http.patch(f"/v1/production/{rid}", headers=op, json={"well_id": "W-GONE"}), 422)
    assert fields(err) == ["well_id"]
    assert (await http.get(f"/v1/production/{rid}", headers=op)).json()["data"]["version"] == 2

    r = await http.delete(f"/v1/production/{rid}", headers=op)
    assert r.status_code == 204
    error(await http.get(f"/v1/production/{rid}", headers=op), 404)
    error(await http.delete(f"/v1/production/{rid}", headers=op), 404)
    error(await http.patch(f"/v1/production/{rid}", headers=op, json={"oil_bbl": 1}), 404)
    assert await db_conn.fetchval("SELECT deleted_at IS NOT NULL FROM production_records WHERE id = $1",
                                  uuid.UUID(rid))
    # The day is free again once the record is deleted.
    r = await http.post("/v1/production", headers=op, json={"well_id": "W-1", "day": day.isoformat()})
    assert r.status_code == 201, r.text

    actions = [(row["action"], row["entity_id"]) for row in await audit_rows(db_conn, a) if row["entity_id"] == rid]
    assert actions == [("create", rid), ("update", rid), ("delete", rid)]
    update = next(row for row in await audit_rows(db_conn, a) if row["action"] == "update" and row["entity_id"] == rid)
    assert update["old_values"] == {"oil_bbl": 42.5, "notes": "first", "version": 1}
    assert update["new_values"] == {"oil_bbl": 40.0, "notes": None, "version": 2}


async def test_rules_future_day_negative_runtime_duplicate_unknown_well(
        http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    day = (today - timedelta(days=300)).isoformat()

    async def post(**body: Any) -> Any:
        return await http.post("/v1/production", headers=op, json={"well_id": "W-2", "day": day, **body})

    assert fields(error(await post(day=(today + timedelta(days=1)).isoformat()), 422)) == ["day"]
    assert fields(error(await post(oil_bbl=-0.5), 422)) == ["oil_bbl"]
    assert fields(error(await post(gas_mcf="NaN"), 422)) == ["gas_mcf"]
    assert fields(error(await post(runtime_hours=24.5), 422)) == ["runtime_hours"]
    assert fields(error(await post(well_id="W-NOPE"), 422)) == ["well_id"]
    assert fields(error(await post(well_id="W-B"), 422)) == ["well_id"]  # tenant B's well
    assert fields(error(await post(well_id="W-GONE"), 422)) == ["well_id"]  # deleted
    assert fields(error(await post(surprise=1), 422)) == ["surprise"]
    assert (await post(runtime_hours=24, oil_bbl=0)).status_code == 201
    err = error(await post(oil_bbl=3), 409)
    assert err["code"] == "CONFLICT" and fields(err) == ["day"]
    # Today is allowed (in the tenant's zone).
    assert (await post(day=today.isoformat())).status_code == 201


async def test_today_is_the_tenants_day(stack: Any, http: Any, db_conn: Any) -> None:
    """UTC+14: the tenant's today is ahead of UTC's for ten hours a day; its tomorrow is always refused."""
    tenant = new_tenant_id("prod-tz")
    await create_tenant(stack, tenant, [])
    await add_wells(db_conn, tenant, "W-1")
    await db_conn.execute("UPDATE tenants SET settings = settings || '{\"timezone\": \"Pacific/Kiritimati\"}'"
                          " WHERE id = $1", tenant)
    today = await tenant_today(db_conn, tenant)
    op = auth(tenant, "operator")
    r = await http.post("/v1/production", headers=op, json={"well_id": "W-1", "day": today.isoformat()})
    assert r.status_code == 201, r.text
    err = error(await http.post("/v1/production", headers=op,
                                json={"well_id": "W-1", "day": (today + timedelta(days=1)).isoformat()}), 422)
    assert str(today) in err["message"]


async def test_batch_is_all_or_nothing(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    days = [(today - timedelta(days=200 + i)).isoformat() for i in range(4)]
    good = [{"well_id": "W-3", "day": d, "oil_bbl": 10 + i} for i, d in enumerate(days)]
    before = await stored(db_conn, a)

    bad = [dict(r) for r in good]
    bad[2]["gas_mcf"] = -1
    err = error(await http.post("/v1/production/batch", headers=op, json={"records": bad}), 422)
    assert fields(err) == ["records.2.gas_mcf"]
    bad = [dict(r) for r in good]
    bad[1]["day"] = (today + timedelta(days=3)).isoformat()
    bad[3]["well_id"] = "W-NOPE"
    err = error(await http.post("/v1/production/batch", headers=op, json={"records": bad}), 422)
    assert sorted(fields(err)) == ["records.1.day", "records.3.well_id"]
    err = error(await http.post("/v1/production/batch", headers=op, json={"records": [*good, good[0]]}), 422)
    assert fields(err) == ["records.4.day"] and "records.0.day" in err["details"][0]["message"]
    error(await http.post("/v1/production/batch", headers=op, json={"records": []}), 422)
    error(await http.post("/v1/production/batch", headers=op, json={"records": [good[0]] * 1001}), 422)
    assert await stored(db_conn, a) == before

    r = await http.post("/v1/production/batch", headers=op, json={"records": good})
    assert r.status_code == 201, r.text
    created = r.json()["data"]
    assert created["count"] == 4 and len(created["ids"]) == 4
    for rid, record in zip(created["ids"], good, strict=True):
        got = (await http.get(f"/v1/production/{rid}", headers=op)).json()["data"]
        assert (got["day"], got["oil_bbl"]) == (record["day"], record["oil_bbl"])
    # One conflicting record (with a stored well and day) and nothing more is stored.
    again = [{"well_id": "W-3", "day": (today - timedelta(days=250)).isoformat()}, good[1]]
    err = error(await http.post("/v1/production/batch", headers=op, json={"records": again}), 409)
    assert fields(err) == ["records.1.day"]
    assert await stored(db_conn, a) == before + 4
    batch_audit = [row for row in await audit_rows(db_conn, a) if row["action"] == "batch_create"]
    assert batch_audit[-1]["new_values"] == {"count": 4, "ids": created["ids"]} and batch_audit[-1]["entity_id"] is None


async def test_csv_import_all_or_nothing_and_export_round_trip(http: Any, db_conn: Any,
                                                               tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    d = [(today - timedelta(days=100 + i)).isoformat() for i in range(3)]
    text = ("well_id,day,oil_bbl,gas_mcf,water_bbl,runtime_hours,notes\n"
            f"W-2,{d[0]},1.5,10,3,24,\"comma, quoted\"\n"
            f"W-2,{d[1]},2.5,,4,,\n"
            "\n"
            f"W-1,{d[2]},3.25,30,,12,=1+2 cmd\n")  # a formula, to a spreadsheet
    before = await stored(db_conn, a)

    bad = text.replace(f"W-2,{d[1]},2.5", f"W-2,{d[1]},-2.5").replace(f"W-1,{d[2]},3.25,30,,12", f"W-1,{d[2]},3,x,,99")
    err = error(await http.post("/v1/production/import", headers={**op, **CSV}, content=bad), 422)
    assert sorted(fields(err)) == ["line 3.oil_bbl", "line 5.gas_mcf", "line 5.runtime_hours"]
    assert "line 3" in err["details"][0]["message"]
    err = error(await http.post("/v1/production/import", headers={**op, **CSV},
                                content="well_id,day,oil,pressure\nW-1,2020-01-01,1,2\n"), 422)
    assert sorted(fields(err)) == ["line 1.oil", "line 1.pressure"]
    err = error(await http.post("/v1/production/import", headers={**op, **CSV}, content="well_id,oil_bbl\nW-1,1\n"),
                422)
    assert fields(err) == ["line 1.day"]
    future = text.replace(d[2], (today + timedelta(days=1)).isoformat())
    err = error(await http.post("/v1/production/import", headers={**op, **CSV}, content=future), 422)
    assert fields(err) == ["line 5.day"]
    err = error(await http.post("/v1/production/import", headers={**op, **CSV}, content=text + f"W-2,{d[0]},1,,,,\n"),
                422)
    assert fields(err) == ["line 6.day"]
    err = error(await http.post("/v1/production/import", headers={**op, **CSV},
                                content=text.replace(",3,24,", ",3,24,x,")), 422)
    assert fields(err) == ["line 2"]
    error(await http.post("/v1/production/import", headers=op, json={"records": []}), 415)
    error(await http.post("/v1/production/import", headers={**op, **CSV}, content=b"\xff\xfe"), 422)
    error(await http.post("/v1/production/import", headers={**op, **CSV}, content=""), 422)
    assert await stored(db_conn, a) == before

    r = await http.post("/v1/production/import", headers={**op, **CSV}, content=text)
    assert r.status_code == 201, r.text
    ids = r.json()["data"]["ids"]
    assert r.json()["data"]["count"] == 3
    first = (await http.get(f"/v1/production/{ids[0]}", headers=op)).json()["data"]
    assert (first["notes"], first["source"], first["runtime_hours"]) == ("comma, quoted", "import", 24.0)
    second = (await http.get(f"/v1/production/{ids[1]}", headers=op)).json()["data"]
    assert (second["gas_mcf"], second["runtime_hours"]) == (0.0, None)
    assert fields(error(await http.post("/v1/production/import", headers={**op, **CSV}, content=text), 409)) == [
        "line 2.day", "line 3.day", "line 5.day"]
    imported = [row for row in await audit_rows(db_conn, a) if row["action"] == "import"]
    assert imported[-1]["new_values"]["ids"] == ids

    # Export: CSV streamed, header first, one well and a day range, ordered by well and day.
    r = await http.get("/v1/production/export", headers=auth(a, "viewer"),
                       params={"well_id": "W-2", "from": d[1], "to": d[0]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["well_id"], x["day"], x["oil_bbl"]) for x in rows] == [("W-2", d[1], "2.5"), ("W-2", d[0], "1.5")]
    assert rows[1]["notes"] == "comma, quoted" and rows[0]["runtime_hours"] == ""
    error(await http.get("/v1/production/export", headers=op, params={"well_id": "W-B"}), 404)
    error(await http.get("/v1/production/export", headers=op, params={"from": d[0], "to": d[1]}), 422)
    # The export imports as it is, here into tenant B (which has a W-1 too, and no W-2).
    whole = await http.get("/v1/production/export", headers=op, params={"well_id": "W-1"})
    exported = list(csv.DictReader(io.StringIO(whole.text)))
    assert len(exported) >= 2 and {x["well_id"] for x in exported} == {"W-1"}
    # A note that a spreadsheet would run as a formula leaves as text ('=...), and comes back as it was.
    assert [x["notes"] for x in exported if x["day"] == d[2]] == ["'=1+2 cmd"]
    r = await http.post("/v1/production/import", headers={**auth(b, "operator"), **CSV}, content=whole.text)
    assert r.status_code == 201, r.text
    b_rows = (await http.get("/v1/production", headers=auth(b, "viewer"), params={"limit": 100})).json()["data"]
    assert sorted((x["day"], x["oil_bbl"]) for x in b_rows) == sorted(
        (x["day"], float(x["oil_bbl"])) for x in exported)
    assert [x["notes"] for x in b_rows if x["day"] == d[2]] == ["=1+2 cmd"]


async def test_summary_by_day_week_month(stack: Any, http: Any, db_conn: Any) -> None:
    tenant = new_tenant_id("prod-sum")
    await create_tenant(stack, tenant, [])
    await add_wells(db_conn, tenant, "W-1", "W-2")
    op = auth(tenant, "operator")
    # Monday 2025-03-03 .. Sunday 2025-03-09, and Monday 2025-03-10; March and April.
    records = [
        {"well_id": "W-1", "day": "2025-03-03", "oil_bbl": 10, "gas_mcf": 100, "water_bbl": 1, "runtime_hours": 24},
        {"well_id": "W-2", "day": "2025-03-03", "oil_bbl": 5, "gas_mcf": 50, "water_bbl": 2, "runtime_hours": 12},
        {"well_id": "W-1", "day": "2025-03-09", "oil_bbl": 1.5, "gas_mcf": 0, "water_bbl": 0},
        {"well_id": "W-1", "day": "2025-03-10", "oil_bbl": 2, "gas_mcf": 3, "water_bbl": 4, "runtime_hours": 6},
        {"well_id": "W-2", "day": "2025-04-01", "oil_bbl": 7, "gas_mcf": 7, "water_bbl": 7, "runtime_hours": 18},
    ]
    r = await http.post("/v1/production/batch", headers=op, json={"records": records})
    assert r.status_code == 201, r.text

    async def summary(**params: Any) -> list[dict[str, Any]]:
        resp = await http.get("/v1/production/summary", headers=auth(tenant, "viewer"), params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    days = await summary(period="day", **{"from": "2025-03-02", "to": "2025-03-04"})
    assert [(x["period_start"], x["oil_bbl"], x["gas_mcf"], x["records"], x["wells"], x["avg_runtime_hours"])
            for x in days] == [("2025-03-02", 0, 0, 0, 0, None), ("2025-03-03", 15, 150, 2, 2, 18.0),
                               ("2025-03-04", 0, 0, 0, 0, None)]
    weeks = await summary(period="week", **{"from": "2025-03-01", "to": "2025-03-16"})
    assert [(x["period_start"], x["oil_bbl"], x["water_bbl"], x["records"]) for x in weeks] == [
        ("2025-02-24", 0, 0, 0), ("2025-03-03", 16.5, 3, 3), ("2025-03-10", 2, 4, 1)]
    assert weeks[1]["avg_runtime_hours"] == 18.0  # a record without runtime does not count as 0
    months = await summary(period="month", **{"from": "2025-03-01", "to": "2025-04-30"})
    assert [(x["period_start"], x["oil_bbl"], x["gas_mcf"], x["wells"]) for x in months] == [
        ("2025-03-01", 18.5, 153, 2), ("2025-04-01", 7, 7, 1)]
    one_well = await summary(period="month", well_id="W-2", **{"from": "2025-03-01", "to": "2025-04-30"})
    assert [(x["well_id"], x["oil_bbl"]) for x in one_well] == [("W-2", 5), ("W-2", 7)]
    # Only days in [from, to] count: a partial first week.
    partial = await summary(period="week", **{"from": "2025-03-09", "to": "2025-03-09"})
    assert [(x["period_start"], x["oil_bbl"]) for x in partial] == [("2025-03-03", 1.5)]
    default = await summary()
    assert len(default) == 30 and default[-1]["period_start"] == (await tenant_today(db_conn, tenant)).isoformat()

    viewer = auth(tenant, "viewer")
    for params, field in (({"period": "year"}, "period"), ({"from": "2025-03-05", "to": "2025-03-01"}, "from"),
                          ({"from": "2020-01-01", "to": "2025-01-01"}, "from"), ({"from": "nope"}, "from"),
                          ({"well_id": "bad id"}, "well_id")):
        err = error(await http.get("/v1/production/summary", headers=viewer, params=params), 422)
        assert fields(err) == [field], (params, err)
    error(await http.get("/v1/production/summary", headers=viewer, params={"well_id": "W-9"}), 404)


async def test_lists_use_the_shared_conventions(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    viewer = auth(a, "viewer")
    today = await tenant_today(db_conn, a)
    days = [(today - timedelta(days=30 + i)).isoformat() for i in range(5)]
    r = await http.post("/v1/production/batch", headers=auth(a, "operator"), json={"records": [
        {"well_id": "W-3", "day": d, "oil_bbl": i * 10, "water_bbl": 1} for i, d in enumerate(days)]})
    assert r.status_code == 201, r.text

    r = await http.get("/v1/production", headers=viewer,
                       params={"well_id": "W-3", "oil_bbl": "gte:20", "day": f"gte:{days[-1]}", "sort": "oil_bbl",
                               "fields": "day,oil_bbl", "limit": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["day"], x["oil_bbl"]) for x in body["data"]] == [(days[2], 20.0), (days[3], 30.0)]
    assert set(body["data"][0]) == {"id", "day", "oil_bbl"}
    assert body["meta"]["pagination"] == {"page": 1, "limit": 2, "total": 3}
    r = await http.get("/v1/production", headers=viewer, params={"source": "in:import,sync", "well_id": "W-3"})
    assert r.json()["data"] == []
    for params, field in (({"nope": "1"}, "nope"), ({"oil_bbl": "like:1*"}, "oil_bbl"), ({"day": "yesterday"}, "day"),
                          ({"sort": "notes"}, "sort"), ({"limit": "101"}, "limit"), ({"source": "fax"}, "source")):
        assert fields(error(await http.get("/v1/production", headers=viewer, params=params), 422))[0] == field

    # Per well: the same module, the well fixed by the path.
    r = await http.get("/v1/wells/W-3/production", headers=viewer, params={"sort": "-oil_bbl", "limit": 1,
                                                                            "day": f"lte:{days[0]}"})
    assert r.status_code == 200, r.text
    assert [x["oil_bbl"] for x in r.json()["data"]] == [40.0]
    assert all(x["well_id"] == "W-3" for x in
               (await http.get("/v1/wells/W-3/production", headers=viewer, params={"limit": 100})).json()["data"])
    error(await http.get("/v1/wells/W-NOPE/production", headers=viewer), 404)
    error(await http.get("/v1/wells/W-GONE/production", headers=viewer), 404)
    error(await http.get("/v1/wells/W-3/production", headers=viewer, params={"oil_bbl": "zz"}), 422)


async def test_isolation_and_permissions(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    today = await tenant_today(db_conn, b)
    r = await http.post("/v1/production", headers=auth(b, "operator"),
                        json={"well_id": "W-B", "day": (today - timedelta(days=5)).isoformat(), "oil_bbl": 777})
    assert r.status_code == 201, r.text
    b_id = r.json()["data"]["id"]
    a_admin = auth(a, "admin")
    error(await http.get(f"/v1/production/{b_id}", headers=a_admin), 404)
    error(await http.patch(f"/v1/production/{b_id}", headers=a_admin, json={"oil_bbl": 1}), 404)
    error(await http.delete(f"/v1/production/{b_id}", headers=a_admin), 404)
    error(await http.get("/v1/wells/W-B/production", headers=a_admin), 404)
    listed = (await http.get("/v1/production", headers=a_admin, params={"limit": 100, "oil_bbl": "eq:777"})).json()
    assert listed["data"] == []
    export = await http.get("/v1/production/export", headers=a_admin)
    assert export.status_code == 200 and "W-B" not in export.text
    summary = (await http.get("/v1/production/summary", headers=a_admin, params={"period": "month"})).json()["data"]
    assert all(x["oil_bbl"] != 777 for x in summary)
    assert (await http.get(f"/v1/production/{b_id}", headers=auth(b, "viewer"))).json()["data"]["oil_bbl"] == 777

    # Viewers read; writing is field_data:write.
    viewer = auth(a, "viewer")
    day = (today - timedelta(days=6)).isoformat()
    assert error(await http.post("/v1/production", headers=viewer, json={"well_id": "W-1", "day": day}), 403)
    assert error(await http.post("/v1/production/import", headers={**viewer, **CSV}, content="well_id,day\n"), 403)
    assert (await http.get("/v1/production", headers=viewer)).status_code == 200
