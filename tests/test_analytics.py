"""Analytics over HTTP, in process against PostgreSQL alone (fast tier): production summaries, well performance,
equipment health and the decline forecast, with numbers checked by hand, tenant isolation and bad input.

Tenant A's January 2026 (the wells' fields: W-1 and W-2 North, W-3 South):

    well day        oil gas water runtime
    W-1  01-01      10   60   5    24
    W-1  01-02       8   30   4    20
    W-1  01-03       0    0   0     0     down (runtime 0)
    W-2  01-01      20  120  10     -
    W-2  01-02       0    0   2     -     down (no runtime, no oil, no gas)
    W-3  01-05      30    6   1    12

January: oil 68, gas 216, water 22, BOE 68 + 216 / 6 = 104, 6 records of 3 wells, 4 producing days and 2 down,
runtime 24 + 20 + 0 + 12 = 56 h over 4 records that report one (average 14 h), oil per record 68 / 6.
Tenant B has a W-1 too, with 1,000 bbl on 2026-01-01: it must never show in A's numbers.
"""

import math
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from serve.app import build_app
from tests.helpers import auth, seeded_tenant

pytestmark = pytest.mark.fast

JANUARY = [("W-1", "2026-01-01", 10, 60, 5, 24), ("W-1", "2026-01-02", 8, 30, 4, 20), ("W-1", "2026-01-03", 0, 0, 0, 0),
           ("W-2", "2026-01-01", 20, 120, 10, None), ("W-2", "2026-01-02", 0, 0, 2, None),
           ("W-3", "2026-01-05", 30, 6, 1, 12)]
CURVE_START = date(2026, 3, 2)
CURVE_DAYS = 120  # to 2026-06-29


def curve(k: int) -> float:
    """An exponential well, qi 100 bbl/d and Di 0.01/d, with a 1 % wiggle so the residuals are not zero."""
    return 100.0 * math.exp(-0.01 * k) * (1 + 0.01 * math.sin(k))


@pytest.fixture(scope="module")
async def tenants(services: Any) -> dict[str, str]:
    url = services.settings.database_url
    a = await seeded_tenant(url, "analytics-a", [("PJ-1", "pump_jack"), ("C-1", "compressor")])
    b = await seeded_tenant(url, "analytics-b", [("PJ-1", "pump_jack")])
    conn = await asyncpg.connect(url)
    try:
        wells = [(a, "W-1", "North"), (a, "W-2", "North"), (a, "W-3", "South"), (a, "W-DECL", "South"),
                 (a, "W-FC", None), (a, "W-GONE", None), (b, "W-1", None), (b, "W-B", None)]
        await conn.executemany("INSERT INTO wells (tenant_id, id, api_number, name, field) VALUES ($1, $2, $3, $2, $4)",
                               [(t, w, f"42{uuid.uuid4().int % 10**8:08d}", f) for t, w, f in wells])
        await conn.execute("UPDATE wells SET deleted_at = now() WHERE tenant_id = $1 AND id = 'W-GONE'", a)
        rows = [(a, w, date.fromisoformat(d), o, g, wa, r) for w, d, o, g, wa, r in JANUARY]
        rows.append((b, "W-1", date(2026, 1, 1), 1000, 0, 0, 24))
        for k in range(CURVE_DAYS):
            day = CURVE_START + timedelta(days=k)
            # W-DECL loses half its oil in its last 20 days: underperforming.
            rows.append((a, "W-DECL", day, curve(k) * (0.5 if k >= CURVE_DAYS - 20 else 1), 0, 0, 24))
            rows.append((a, "W-FC", day, curve(k), 0, 0, 24))
        await conn.executemany(
            "INSERT INTO production_records (tenant_id, well_id, day, oil_bbl, gas_mcf, water_bbl, runtime_hours,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, 'test')", rows)
        await seed_equipment_history(conn, a)
    finally:
        await conn.close()
    return {"a": a, "b": b}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def seed_equipment_history(conn: asyncpg.Connection, tenant: str) -> None:
    """PJ-1 over 2026-02-01..02-10 (240 h): comms_loss 02-02 00:00-06:00 and stale_data 04:00-08:00 (union 8 h),
    a failure repair 02-05 00:00-10:00 (10 h), a preventive job 01-31 20:00 to 02-01 02:00 (2 h inside): downtime
    20 h, uptime 100 * 220 / 240. Warning alerts: 2, 6 + 4 = 10 h; a critical one opened 02-09 12:00 and still
    open: 36 h to the range's end. An info alert of January is outside. One failure: MTBF 220 h, MTTR 10 h."""
    alerts = [("comms_loss", "warning", "2026-02-02T00:00", "2026-02-02T06:00"),
              ("stale_data", "warning", "2026-02-02T04:00", "2026-02-02T08:00"),
              ("tubing_psi_high", "critical", "2026-02-09T12:00", None),
              ("casing_psi_high", "info", "2026-01-20T00:00", "2026-01-20T01:00")]
    await conn.executemany(
        "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at, resolved_at)"
        " VALUES ($1, 'PJ-1', $2, $3, $4, 'test', $5, $6)",
        [(tenant, rule, "open" if end is None else "resolved", sev, ts(start), end and ts(end))
         for rule, sev, start, end in alerts])
    await conn.executemany(
        "INSERT INTO maintenance_records (tenant_id, equipment_id, kind, started_at, ended_at, created_by)"
        " VALUES ($1, 'PJ-1', $2, $3, $4, 'test')",
        [(tenant, "failure_repair", ts("2026-02-05T00:00"), ts("2026-02-05T10:00")),
         (tenant, "preventive", ts("2026-01-31T20:00"), ts("2026-02-01T02:00"))])
    await conn.execute(
        "INSERT INTO predictions (tenant_id, equipment_id, equipment_type, model_version, failure_probability,"
        " horizon_seconds) VALUES ($1, 'PJ-1', 'pump_jack', 'test', 0.25, 604800)", tenant)


@pytest.fixture
async def http(services: Any) -> Any:
    app = build_app(services.settings)
    app.state.services = services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def get(http: Any, tenant: str, path: str, role: str = "viewer", **params: Any) -> Any:
    r = await http.get(path, params=params, headers=auth(tenant, role))
    assert r.status_code == 200, r.text
    return r.json()


def refused(r: Any, status: int, field: str) -> None:
    assert r.status_code == status, r.text
    assert field in [d["field"] for d in r.json()["error"]["details"]], r.text


async def test_production_summary_by_tenant_field_and_well(http: Any, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    body = await get(http, a, "/v1/analytics/production-summary", period="month",
                     **{"from": "2026-01-01", "to": "2026-01-31"})
    assert body["meta"]["pagination"]["total"] == 1
    [jan] = body["data"]
    assert jan["period_start"] == "2026-01-01" and jan["group"] is None
    assert (jan["oil_bbl"], jan["gas_mcf"], jan["water_bbl"], jan["boe"]) == (68, 216, 22, pytest.approx(104))
    assert (jan["records"], jan["wells"], jan["producing_days"], jan["down_days"]) == (6, 3, 4, 2)
    assert (jan["runtime_hours"], jan["avg_runtime_hours"]) == (56, 14)
    assert jan["avg_oil_bbl_per_day"] == pytest.approx(68 / 6)

    fields = await get(http, a, "/v1/analytics/production-summary", period="month", group_by="field",
                       **{"from": "2026-01-01", "to": "2026-01-31"})
    # North: W-1 and W-2, oil 38, gas 210 (BOE 38 + 35); South: W-3, oil 30, gas 6 (BOE 31).
    assert [(r["group"], r["oil_bbl"], r["boe"]) for r in fields["data"]] == [
        ("North", 38, pytest.approx(73)), ("South", 30, pytest.approx(31))]

    # Weeks from Monday: 2026-01-01 is a Thursday (week of 2025-12-29), 01-05 a Monday. Two per page.
    page1 = await get(http, a, "/v1/analytics/production-summary", period="week", group_by="well", limit=2,
                      **{"from": "2026-01-01", "to": "2026-01-31"})
    page2 = await get(http, a, "/v1/analytics/production-summary", period="week", group_by="well", limit=2, page=2,
                      **{"from": "2026-01-01", "to": "2026-01-31"})
    assert page1["meta"]["pagination"] == {"page": 1, "limit": 2, "total": 3}
    assert [(r["period_start"], r["group"], r["oil_bbl"]) for r in page1["data"] + page2["data"]] == [
        ("2025-12-29", "W-1", 18), ("2025-12-29", "W-2", 20), ("2026-01-05", "W-3", 30)]

    # Days without records are gaps: 2026-01-04 has none and is not listed.
    days = await get(http, a, "/v1/analytics/production-summary", period="day",
                     **{"from": "2026-01-01", "to": "2026-01-05"})
    assert [r["period_start"] for r in days["data"]] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-05"]

    other = await get(http, b, "/v1/analytics/production-summary", period="month",
                      **{"from": "2026-01-01", "to": "2026-01-31"})
    assert [(r["oil_bbl"], r["wells"]) for r in other["data"]] == [(1000, 1)]


async def test_well_performance_volumes_downtime_and_decline(http: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    body = await get(http, a, "/v1/analytics/well-performance", **{"from": "2026-01-01", "to": "2026-01-03"})
    assert body["meta"]["pagination"]["total"] == 5  # W-GONE is deleted
    by_id = {r["well_id"]: r for r in body["data"]}
    assert sorted(by_id) == ["W-1", "W-2", "W-3", "W-DECL", "W-FC"]
    w1 = by_id["W-1"]
    # W-1: oil 18, gas 90, BOE 18 + 15; runtime 24 + 20 + 0; downtime (24-24) + (24-20) + (24-0) = 28 h.
    assert (w1["oil_bbl"], w1["gas_mcf"], w1["water_bbl"], w1["boe"]) == (18, 90, 9, pytest.approx(33))
    assert (w1["records"], w1["missing_days"], w1["producing_days"], w1["down_days"]) == (3, 0, 2, 1)
    assert (w1["runtime_hours"], w1["downtime_hours"]) == (44, 28)
    assert w1["underperforming"] is False and w1["decline_model"] is None and "producing days" in w1["reason"]
    assert (by_id["W-2"]["missing_days"], by_id["W-2"]["downtime_hours"]) == (1, 0)  # no runtimes reported
    assert (by_id["W-3"]["records"], by_id["W-3"]["missing_days"]) == (0, 3)

    june = await get(http, a, "/v1/analytics/well-performance", basis="oil",
                     **{"from": "2026-06-01", "to": "2026-06-29"})
    decl, fc = (next(r for r in june["data"] if r["well_id"] == w) for w in ("W-DECL", "W-FC"))
    assert decl["decline_model"] == "exponential" and decl["underperforming"] is True
    assert decl["days_below_band"] == 20
    # The last 30 days: 10 at the curve and 20 at half of it, so actual / expected is a little above 1/2.
    assert 0.5 < decl["actual_vs_expected"] < 0.7
    assert fc["underperforming"] is False and fc["actual_vs_expected"] == pytest.approx(1, abs=0.02)


async def test_equipment_health_uptime_alerts_mtbf_mttr(http: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    body = await get(http, a, "/v1/analytics/equipment-health", **{"from": "2026-02-01", "to": "2026-02-10"})
    by_id = {r["equipment_id"]: r for r in body["data"]}
    assert body["meta"]["pagination"]["total"] == 2
    pj = by_id["PJ-1"]
    assert (pj["range_hours"], pj["downtime_hours"]) == (240, pytest.approx(20))
    assert pj["uptime_pct"] == pytest.approx(100 * 220 / 240)
    assert pj["alerts"] == {"info": {"count": 0, "hours": 0}, "warning": {"count": 2, "hours": pytest.approx(10)},
                            "critical": {"count": 1, "hours": pytest.approx(36)}}
    assert (pj["failures"], pj["mtbf_hours"], pj["mttr_hours"]) == (1, pytest.approx(220), pytest.approx(10))
    assert pj["failure_probability"] == 0.25
    c1 = by_id["C-1"]
    assert (c1["uptime_pct"], c1["failures"], c1["mtbf_hours"], c1["mttr_hours"], c1["failure_probability"]) == (
        100, 0, None, None, None)
    other = await get(http, tenants["b"], "/v1/analytics/equipment-health",
                      **{"from": "2026-02-01", "to": "2026-02-10"})
    assert [(r["equipment_id"], r["downtime_hours"], r["alerts"]["warning"]["count"]) for r in other["data"]] == [
        ("PJ-1", 0, 0)]


async def test_forecast_of_a_well(http: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    fc = (await get(http, a, "/v1/wells/W-FC/forecast", months=3))["data"]
    assert (fc["status"], fc["model"], fc["first_day"], fc["last_day"]) == ("ok", "exponential", "2026-03-02",
                                                                             "2026-06-29")
    assert fc["qi"] == pytest.approx(100, rel=0.02) and fc["di"] == pytest.approx(0.01, rel=0.05)
    # The rest of June (its 30th) first, then whole months.
    assert [(m["month"], m["days"]) for m in fc["months"]] == [("2026-06-01", 1), ("2026-07-01", 31),
                                                               ("2026-08-01", 31)]
    # July 2026 is t = 121..151 days after 2026-03-02: about sum of 100 exp(-0.01 t).
    july = sum(100 * math.exp(-0.01 * t) for t in range(121, 152))
    assert fc["months"][1]["volume"] == pytest.approx(july, rel=0.03)
    assert all(m["low"] < m["rate"] < m["high"] for m in fc["months"])
    assert fc["underperforming"] is False

    decl = (await get(http, a, "/v1/wells/W-DECL/forecast", basis="boe"))["data"]
    assert decl["underperforming"] is True and len(decl["months"]) == 12 and decl["basis"] == "boe"

    short = (await get(http, a, "/v1/wells/W-1/forecast"))["data"]
    assert (short["status"], short["reason"], short["points"], short["months"]) == (
        "insufficient_data", "2 producing days; at least 30 are needed", 2, [])


async def test_bad_input_and_other_tenants_wells(http: Any, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    headers = auth(a, "viewer")
    r = await http.get("/v1/wells/W-B/forecast", headers=headers)  # tenant B's well
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", r.text
    assert (await http.get("/v1/wells/W-GONE/forecast", headers=headers)).status_code == 404
    assert (await http.get("/v1/wells/NOPE/forecast", headers=headers)).status_code == 404
    for months in ("0", "61", "x"):
        refused(await http.get("/v1/wells/W-FC/forecast", params={"months": months}, headers=headers), 422, "months")
    refused(await http.get("/v1/wells/W-FC/forecast", params={"basis": "gas"}, headers=headers), 422, "basis")
    summary = "/v1/analytics/production-summary"
    refused(await http.get(summary, params={"from": "2026-02-01", "to": "2026-01-01"}, headers=headers), 422, "from")
    refused(await http.get(summary, params={"from": "2020-01-01", "to": "2026-01-01"}, headers=headers), 422, "from")
    refused(await http.get(summary, params={"from": "2026-13-01"}, headers=headers), 422, "from")
    refused(await http.get(summary, params={"to": "0001-01-01"}, headers=headers), 422, "to")
    refused(await http.get("/v1/analytics/equipment-health", params={"to": "9999-12-31"}, headers=headers), 422, "to")
    refused(await http.get(summary, params={"period": "year"}, headers=headers), 422, "period")
    refused(await http.get(summary, params={"group_by": "lease"}, headers=headers), 422, "group_by")
    refused(await http.get(summary, params={"limit": "101"}, headers=headers), 422, "limit")
    refused(await http.get(summary, params={"page": "100000", "limit": "100"}, headers=headers), 422, "page")
    refused(await http.get("/v1/analytics/well-performance", params={"limit": "51"}, headers=headers), 422, "limit")
    refused(await http.get("/v1/analytics/equipment-health", params={"to": "2026-01-01", "from": "2026-01-02"},
                           headers=headers), 422, "from")
    assert (await http.get(summary)).status_code == 401
