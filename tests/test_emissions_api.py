"""Emissions over HTTP against the running stack: factors and their versions, the calculation (gaps, supersede on
a production correction, idempotent), summaries with intensity, CSV and XLSX export round trips, thresholds whose
80 % alert goes through the alert lifecycle, compliance reports the database keeps immutable, the daily job,
bad input named by field, roles and tenant isolation.

Numbers use the default factors (derivations in tests/test_emissions_model.py): 2 Mcf vented = 30.2592 kg CH4,
2.104 kg CO2, 8.4120576 kg VOC; tank flashing 0.2304 kg CH4 and 1.195 kg VOC per bbl of oil.
"""

import csv
import hashlib
import io
import uuid
from datetime import date, timedelta
from typing import Any

import openpyxl
import pytest

from tests.helpers import auth, create_tenant, housekeeping_round, new_tenant_id
from tests.test_api_production import add_wells, error, fields, tenant_today


async def add_production(db_conn: Any, tenant: str, well: str, day: date, oil: float = 0.0, gas: float = 0.0) -> None:
    await db_conn.execute(
        "INSERT INTO production_records (tenant_id, well_id, day, oil_bbl, gas_mcf, runtime_hours, created_by)"
        " VALUES ($1, $2, $3, $4, $5, 24, 'test')", tenant, well, day, oil, gas)


def previous_month(today: date) -> tuple[date, date]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


@pytest.fixture(scope="module")
async def tenants(stack: Any) -> dict[str, str]:
    import asyncpg

    a, b = new_tenant_id("esg-a"), new_tenant_id("esg-b")
    await create_tenant(stack, a, [("PJ-1", "pump_jack")])
    await create_tenant(stack, b, [("PJ-1", "pump_jack")])
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await add_wells(conn, a, "W-1", "W-2", "W-3")
        await add_wells(conn, b, "W-1")
    finally:
        await conn.close()
    return {"a": a, "b": b}


async def test_factors_defaults_versions_and_bad_input(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    r = await http.get("/v1/emissions/factors", headers=auth(a, "viewer"))
    assert r.status_code == 200, r.text
    defaults = {f["key"]: f for f in r.json()["data"] if f["origin"] == "default"}
    assert defaults["flaring.destruction_efficiency"]["value"] == 0.98
    assert "98.233(n)" in defaults["flaring.destruction_efficiency"]["citation"]
    good = {"key": "gas.co2_mole_fraction", "value": 0.03, "unit": "mol/mol", "citation": "lab 2026-114",
            "valid_from": "2000-01-01"}
    assert fields(error(await http.post("/v1/emissions/factors", headers=op, json={**good, "unit": "%"}), 422)) \
        == ["unit"]
    assert fields(error(await http.post("/v1/emissions/factors", headers=op, json={**good, "value": 0}), 422)) \
        == ["value"]
    no_period = {k: v for k, v in good.items() if k != "valid_from"}
    assert fields(error(await http.post("/v1/emissions/factors", headers=op, json=no_period), 422)) == ["valid_from"]
    assert fields(error(await http.post("/v1/emissions/factors", headers=op,
                                        json={**good, "valid_to": "1999-12-31"}), 422)) == ["valid_to"]
    assert fields(error(await http.post("/v1/emissions/factors", headers=op, json={**good, "key": "gas.nope"}),
                        422)) == ["key"]
    error(await http.post("/v1/emissions/factors", headers=auth(a, "viewer"), json=good), 403)

    r = await http.post("/v1/emissions/factors", headers=op, json=good)
    assert r.status_code == 201, r.text
    assert (r.json()["data"]["version"], r.json()["data"]["origin"]) == ("tenant:1", "tenant")
    r = await http.patch("/v1/emissions/factors/gas.co2_mole_fraction", headers=op, json={"value": 0.02})
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["version"], r.json()["data"]["value"], r.json()["data"]["citation"]) == (
        "tenant:2", 0.02, "lab 2026-114")  # carried over from version 1
    audited = await db_conn.fetch("SELECT action, entity_id FROM audit_log WHERE tenant_id = $1"
                                  " AND entity_type = 'emission_factor' ORDER BY at", a)
    assert [(x["action"], x["entity_id"]) for x in audited] == [
        ("create", "gas.co2_mole_fraction@1"), ("update", "gas.co2_mole_fraction@2")]
    # A factor version is never edited, by the API or directly.
    with pytest.raises(Exception, match="append-only"):
        await db_conn.execute("UPDATE emission_factors SET value = 1 WHERE tenant_id = $1", a)


async def test_calculate_gaps_supersede_and_idempotence(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    d1, d2, d3 = (today - timedelta(days=n) for n in (30, 29, 28))
    await add_production(db_conn, a, "W-1", d1, oil=10.0, gas=60.0)
    await add_production(db_conn, a, "W-1", d2, oil=10.0, gas=60.0)
    r = await http.post("/v1/emissions/activity", headers=op, json={"records": [
        {"well_id": "W-1", "day": d1.isoformat(), "vented_mcf": 2.0, "flared_mcf": 0, "fuel_gas_mcf": 0}]})
    assert r.status_code == 200, r.text

    body = {"start": d1.isoformat(), "end": d3.isoformat(), "well_ids": ["W-1"]}
    r = await http.post("/v1/emissions/calculate", headers=op, json=body)
    assert r.status_code == 200, r.text
    calc = r.json()["data"]
    # d3 has no production record: a gap, and nothing stored for it (not zero).
    assert [(g["day"], g["reason"]) for g in calc["gaps"]] == [(d3.isoformat(), "no production record")]
    assert {(g["day"], g["source"]) for g in calc["missing_activity"]} == {
        (d2.isoformat(), "flared"), (d2.isoformat(), "vented"), (d2.isoformat(), "fuel_gas")}
    # d1: venting CH4, CO2, VOC + tank flashing CH4, VOC; d2: tank flashing only.
    assert (calc["inserted"], calc["superseded"], calc["unchanged"]) == (7, 0, 0)

    async def records(**query: str) -> list[dict[str, Any]]:
        resp = await http.get("/v1/emissions", headers=auth(a, "viewer"),
                              params={"well_id": "W-1", "limit": "100", **query})
        assert resp.status_code == 200, resp.text
        return list(resp.json()["data"])

    got = {(x["day"], x["source"], x["gas"]): x for x in await records()}
    assert got[(d1.isoformat(), "venting", "CH4")]["kg"] == pytest.approx(30.2592)
    assert got[(d1.isoformat(), "venting", "CH4")]["co2e_kg"] == pytest.approx(30.2592 * 28)
    assert got[(d1.isoformat(), "tank_flashing", "VOC")]["kg"] == pytest.approx(11.95)  # 10 bbl x 1.195
    assert not [k for k in got if k[0] == d3.isoformat()]
    versions = {f["key"]: f["version"] for f in got[(d1.isoformat(), "venting", "CO2")]["factors"]}
    assert versions == {"gas.co2_mole_fraction": "tenant:2"}  # the tenant's version of the first test

    # Recalculating unchanged data changes nothing.
    again = (await http.post("/v1/emissions/calculate", headers=op, json=body)).json()["data"]
    assert (again["inserted"], again["superseded"], again["unchanged"]) == (0, 0, 7)

    # A production correction (oil 10 -> 20 bbl on d2) supersedes d2's tank flashing records and keeps them.
    record_id = await db_conn.fetchval("SELECT id FROM production_records WHERE tenant_id = $1 AND well_id = 'W-1'"
                                       " AND day = $2", a, d2)
    r = await http.patch(f"/v1/production/{record_id}", headers=op, json={"oil_bbl": 20.0})
    assert r.status_code == 200, r.text
    fixed = (await http.post("/v1/emissions/calculate", headers=op, json=body)).json()["data"]
    assert (fixed["inserted"], fixed["superseded"], fixed["unchanged"]) == (2, 2, 5)
    history = [x for x in await records(include_superseded="true", day=d2.isoformat(), source="tank_flashing",
                                        gas="CH4")]
    old = next(x for x in history if x["superseded_at"] is not None)
    new = next(x for x in history if x["superseded_at"] is None)
    assert (old["kg"], new["kg"]) == (pytest.approx(2.304), pytest.approx(4.608))
    assert old["superseded_by"] == new["id"]
    assert len(await records(day=d2.isoformat(), source="tank_flashing", gas="CH4")) == 1  # live only by default

    # d3 reported late: only its records are new.
    await add_production(db_conn, a, "W-1", d3, oil=1.0)
    late = (await http.post("/v1/emissions/calculate", headers=op, json=body)).json()["data"]
    assert (late["inserted"], late["superseded"], late["unchanged"], late["gaps"]) == (2, 0, 7, [])
    # d3's record deleted: its records are withdrawn (superseded by nothing), kept, and d3 is a gap again.
    d3_id = await db_conn.fetchval("SELECT id FROM production_records WHERE tenant_id = $1 AND well_id = 'W-1'"
                                   " AND day = $2", a, d3)
    assert (await http.delete(f"/v1/production/{d3_id}", headers=op)).status_code == 204
    gone = (await http.post("/v1/emissions/calculate", headers=op, json=body)).json()["data"]
    assert (gone["inserted"], gone["superseded"], [g["day"] for g in gone["gaps"]]) == (0, 2, [d3.isoformat()])
    withdrawn = await records(include_superseded="true", day=d3.isoformat())
    assert len(withdrawn) == 2 and all(x["superseded_at"] and x["superseded_by"] is None for x in withdrawn)
    assert await records(day=d3.isoformat()) == []

    # Bad input, named by field.
    err = error(await http.post("/v1/emissions/calculate", headers=op, json={
        "start": d1.isoformat(), "end": (today + timedelta(days=1)).isoformat()}), 422)
    assert fields(err) == ["end"]
    err = error(await http.post("/v1/emissions/calculate", headers=op, json={**body, "well_ids": ["W-1", "W-404"]}),
                422)
    assert fields(err) == ["well_ids.1"]
    assert fields(error(await http.post("/v1/emissions/calculate", headers=op,
                                        json={**body, "start": d3.isoformat(), "end": d1.isoformat()}), 422)) \
        == ["start"]
    err = error(await http.post("/v1/emissions/activity", headers=op, json={"records": [
        {"well_id": "W-1", "day": d1.isoformat(), "vented_mcf": -1}]}), 422)
    assert fields(err) == ["records.0.vented_mcf"]
    error(await http.post("/v1/emissions/calculate", headers=auth(a, "viewer"), json=body), 403)
    assert await db_conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND entity_type = 'emissions'"
                                  " AND action = 'calculate'", a) == 5

    # Summary: kg CO2e per BOE for the well's days (BOE = 10 + 60/6 = 20 on d1, 20 + 10 = 30 on d2).
    r = await http.get("/v1/emissions/summary", headers=auth(a, "viewer"), params={
        "period": "day", "group_by": "well", "from": d1.isoformat(), "to": d2.isoformat(), "well_id": "W-1"})
    assert r.status_code == 200, r.text
    rows = {x["period_start"]: x for x in r.json()["data"]}
    d2_co2e = 20 * 0.2304 * 28  # tank flashing CH4 of 20 bbl (VOC has no GWP)
    assert rows[d2.isoformat()]["co2e_kg"] == pytest.approx(d2_co2e)
    assert rows[d2.isoformat()]["boe"] == pytest.approx(30.0)
    assert rows[d2.isoformat()]["kg_co2e_per_boe"] == pytest.approx(d2_co2e / 30.0)
    assert rows[d2.isoformat()]["ch4_kg"] == pytest.approx(4.608)
    r = await http.get("/v1/analytics/emissions-summary", headers=auth(a, "viewer"), params={
        "period": "year", "group_by": "gas", "from": d1.isoformat(), "to": d2.isoformat()})
    assert r.status_code == 200 and {x["key"] for x in r.json()["data"]} == {"CH4", "CO2", "VOC"}
    assert fields(error(await http.get("/v1/emissions/summary", headers=op, params={"group_by": "nope"}), 422)) \
        == ["group_by"]


async def test_export_round_trips(http: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    viewer = auth(a, "viewer")
    listed = (await http.get("/v1/emissions", headers=viewer, params={"limit": "100", "sort": "id"})).json()["data"]
    assert listed, "the calculation test stores records first"
    expected = {x["id"]: (x["well_id"], x["day"], x["source"], x["gas"], x["kg"], x["co2e_kg"]) for x in listed}

    r = await http.get("/v1/emissions/export", headers=viewer, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {x["id"]: (x["well_id"], x["day"], x["source"], x["gas"], float(x["kg"]), float(x["co2e_kg"]))
            for x in rows} == expected
    assert all(x["factor_versions"] for x in rows)

    r = await http.get("/v1/emissions/export", headers=viewer, params={"format": "xlsx"})
    assert r.status_code == 200, r.text
    sheet = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)["emissions"]
    header, *cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert header[:7] == ["id", "well_id", "day", "source", "gas", "kg", "co2e_kg"]
    got = {c[0]: (c[1], c[2], c[3], c[4], c[5], c[6]) for c in cells}
    assert set(got) == set(expected)
    for record_id, (*keys, kg, co2e_kg) in got.items():  # XLSX keeps 15 significant digits
        assert (*keys, pytest.approx(kg, rel=1e-12), pytest.approx(co2e_kg, rel=1e-12)) == expected[record_id]
    assert fields(error(await http.get("/v1/emissions/export", headers=viewer, params={"format": "pdf"}), 422)) \
        == ["format"]


async def test_threshold_80_percent_alert_goes_through_the_lifecycle(
        stack: Any, http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    op = auth(a, "operator")
    first, last = previous_month(await tenant_today(db_conn, a))
    day = first + timedelta(days=9)
    await housekeeping_round(stack, a)  # the day's daily job has run (it evaluates thresholds at yesterday)
    await add_production(db_conn, a, "W-2", day)
    r = await http.post("/v1/emissions/activity", headers=op, json={"records": [
        {"well_id": "W-2", "day": day.isoformat(), "vented_mcf": 2.0}]})
    assert r.status_code == 200, r.text
    # 2 Mcf vented = 30.2592 kg CH4 = 0.0302592 t; a limit of 0.0356 t puts the month at 85.0 %.
    for bad, field in ((0, "limit_tonnes"), (-1, "limit_tonnes")):
        err = error(await http.post("/v1/emissions/thresholds", headers=op, json={
            "name": "W-2 CH4", "well_id": "W-2", "gas": "CH4", "period": "calendar_month", "limit_tonnes": bad}), 422)
        assert fields(err) == [field]
    assert fields(error(await http.post("/v1/emissions/thresholds", headers=op, json={
        "name": "x", "well_id": "W-404", "gas": "CH4", "period": "calendar_month", "limit_tonnes": 1}), 422)) \
        == ["well_id"]
    r = await http.post("/v1/emissions/thresholds", headers=op, json={
        "name": "W-2 CH4 permit", "well_id": "W-2", "gas": "CH4", "period": "calendar_month", "limit_tonnes": 0.0356})
    assert r.status_code == 201, r.text
    threshold_id = r.json()["data"]["id"]

    r = await http.post("/v1/emissions/calculate", headers=op, json={
        "start": first.isoformat(), "end": last.isoformat(), "well_ids": ["W-2"]})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["alert_events"] == 1  # 80 % reached; 100 % neither reached nor projected

    r = await http.get("/v1/alerts", headers=auth(a, "viewer"), params={"rule_id": f"like:*{threshold_id}*"})
    assert r.status_code == 200, r.text
    [alert] = r.json()["data"]
    assert (alert["equipment_id"], alert["rule_id"], alert["severity"], alert["state"]) == (
        "esg-W-2", f"emissions_threshold:{threshold_id}:80", "warning", "open")
    assert alert["details"]["actual_pct"] == pytest.approx(85.0, abs=0.01) and alert["latched"]
    listed = (await http.get("/v1/emissions/alerts", headers=auth(a, "viewer"))).json()["data"]
    assert [x["id"] for x in listed] == [alert["id"]]

    r = await http.post(f"/v1/alerts/{alert['id']}/acknowledge", headers=op, json={"comment": "flare fixed"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["state"] == "acknowledged"
    kinds = [k for (k,) in await db_conn.fetch("SELECT kind FROM alert_events WHERE tenant_id = $1 AND alert_id = $2"
                                               " ORDER BY seq", a, alert["id"])]
    assert kinds == ["opened", "acknowledged"]
    # Recalculating the same data opens nothing new (the alert is already there).
    again = (await http.post("/v1/emissions/calculate", headers=op, json={
        "start": first.isoformat(), "end": last.isoformat(), "well_ids": ["W-2"]})).json()["data"]
    assert again["alert_events"] == 0

    for patch, field in (({"limit_tonnes": 0}, "limit_tonnes"), ({"name": None}, "name"),
                         ({"period": "fortnight"}, "period")):
        err = error(await http.patch(f"/v1/emissions/thresholds/{threshold_id}", headers=op, json=patch), 422)
        assert fields(err) == [field]
    status = next(x for x in (await http.get("/v1/emissions/thresholds", headers=auth(a, "viewer"))).json()["data"]
                  if x["id"] == threshold_id)["status"]
    assert status["limit_tonnes"] == 0.0356 and status["period_end"] >= status["as_of"]

    # Deleting the threshold resolves its alert.
    assert (await http.delete(f"/v1/emissions/thresholds/{threshold_id}", headers=op)).status_code == 204
    assert await db_conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert["id"]) == "resolved"


async def test_reports_are_immutable_in_the_database(http: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    op = auth(a, "operator")
    today = await tenant_today(db_conn, a)
    first, last = previous_month(today)
    err = error(await http.post("/v1/emissions/reports", headers=op, json={
        "title": "open", "start": first.isoformat(), "end": today.isoformat()}), 422)
    assert fields(err) == ["end"]
    r = await http.post("/v1/emissions/reports", headers=op, json={
        "title": "Last month", "start": first.isoformat(), "end": last.isoformat()})
    assert r.status_code == 201, r.text
    report = r.json()["data"]
    assert report["well_ids"] == ["W-1", "W-2", "W-3"]
    assert report["totals"]["co2e_kg"] > 0 and report["factor_versions"]

    r = await http.get(f"/v1/emissions/reports/{report['id']}/pdf", headers=auth(a, "viewer"))
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    assert hashlib.sha256(r.content).hexdigest() == report["sha256"] == r.headers["x-content-sha256"]

    rid = uuid.UUID(report["id"])
    with pytest.raises(Exception, match="immutable"):
        await db_conn.execute("UPDATE emission_reports SET title = 'edited' WHERE id = $1", rid)
    with pytest.raises(Exception, match="immutable"):
        await db_conn.execute("UPDATE emission_reports SET content = 'x'::bytea, superseded_at = now()"
                              " WHERE id = $1", rid)
    with pytest.raises(Exception, match="immutable"):
        await db_conn.execute("DELETE FROM emission_reports WHERE id = $1", rid)

    r = await http.post(f"/v1/emissions/reports/{report['id']}/supersede", headers=op, json={"title": "Last month v2"})
    assert r.status_code == 201, r.text
    successor = r.json()["data"]
    assert successor["supersedes"] == report["id"]
    old = (await http.get(f"/v1/emissions/reports/{report['id']}", headers=op)).json()["data"]
    assert (old["superseded_by"], old["sha256"]) == (successor["id"], report["sha256"])
    assert fields(error(await http.post(f"/v1/emissions/reports/{report['id']}/supersede", headers=op), 409)) \
        == ["id"]
    listed = (await http.get("/v1/emissions/reports", headers=auth(a, "viewer"))).json()["data"]
    assert {x["id"] for x in listed} == {report["id"], successor["id"]}

    # Tenant B sees none of A's emissions, reports or alerts.
    other = auth(b, "admin")
    error(await http.get(f"/v1/emissions/reports/{report['id']}", headers=other), 404)
    error(await http.get(f"/v1/emissions/reports/{report['id']}/pdf", headers=other), 404)
    assert (await http.get("/v1/emissions/reports", headers=other)).json()["data"] == []
    assert (await http.get("/v1/emissions", headers=other)).json()["meta"]["pagination"]["total"] == 0
    assert (await http.get("/v1/emissions/export", headers=other)).text.count("\n") == 1  # the header only
    assert (await http.get("/v1/emissions/summary", headers=other)).json()["data"] == []
    assert (await http.get("/v1/emissions/alerts", headers=other)).json()["data"] == []
    error(await http.post("/v1/emissions/calculate", headers=other, json={
        "start": first.isoformat(), "end": last.isoformat(), "well_ids": ["W-2"]}), 422)


async def test_the_daily_job_calculates_yesterday_once(stack: Any, db_conn: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    yesterday = await tenant_today(db_conn, a) - timedelta(days=1)
    await add_production(db_conn, a, "W-3", yesterday, oil=5.0)
    await db_conn.execute("DELETE FROM emission_daily_runs WHERE tenant_id = $1", a)  # as if it had not run today
    await housekeeping_round(stack, a)
    rows = await db_conn.fetch("SELECT source, gas, kg, calculated_by FROM emissions WHERE tenant_id = $1"
                               " AND well_id = 'W-3' AND day = $2 AND superseded_at IS NULL ORDER BY gas", a, yesterday)
    assert [(x["source"], x["gas"], round(x["kg"], 4), x["calculated_by"]) for x in rows] == [
        ("tank_flashing", "CH4", 1.152, "system:daily"), ("tank_flashing", "VOC", 5.975, "system:daily")]
    assert await db_conn.fetchval("SELECT day FROM emission_daily_runs WHERE tenant_id = $1", a) == yesterday
    await housekeeping_round(stack, a)  # the next round: already ran today
    assert await db_conn.fetchval("SELECT count(*) FROM emission_daily_runs WHERE tenant_id = $1", a) == 1
