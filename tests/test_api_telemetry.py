"""Telemetry reads over HTTP: latest values (one equipment, and up to 100 for dashboards), the streamed CSV
export, and bucketed answers that are the same from the hourly rollups as computed from raw rows, on plain
PostgreSQL and (when WELLPULSE_TEST_TIMESCALE_URL is set) on TimescaleDB."""

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest

from store import db, readings
from store.migrate import POSTGRES, TIMESCALE, migrate
from store.readings import ORIGIN, hour_floor
from tests.helpers import auth, create_tenant, new_tenant_id

DAY = timedelta(days=1)
SENSORS = ("casing_psi", "tubing_psi")


def day_floor(ts: datetime) -> datetime:
    return ts - (ts - ORIGIN) % DAY


def nice(i: int, sensor: str) -> float:
    """Multiples of 0.25: sums of them are exact in any order, so averages compare exactly."""
    return ((i * 37 + len(sensor)) % 400) * 0.25


def series(tenant: str, equipment: str, start: datetime, end: datetime, value: Any = nice,
           step: timedelta = timedelta(minutes=1)) -> list[readings.ReadingRow]:
    rows, i, ts = [], 0, start
    while ts < end:
        rows.extend((tenant, equipment, s, ts, value(i, s)) for s in SENSORS)
        ts += step
        i += 1
    return rows


async def copy_as_owner(conn: asyncpg.Connection, rows: list[readings.ReadingRow]) -> None:
    async with conn.transaction():  # as the ingest writer stores them: the latest values kept with them
        await conn.copy_records_to_table("readings", records=rows, columns=readings.READING_COLUMNS)
        await readings.keep_latest(conn, rows)


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return resp.json()["error"]


@pytest.fixture(scope="module")
async def tele(stack: Any) -> dict[str, Any]:
    a, b = new_tenant_id("tele-a"), new_tenant_id("tele-b")
    await create_tenant(stack, a, [("PJ-1", "pump_jack"), ("PJ-2", "pump_jack")])
    await create_tenant(stack, b, [("PJ-1", "pump_jack"), ("PJ-B", "pump_jack")])
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = day_floor(now) - 3 * DAY
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await copy_as_owner(conn, series(a, "PJ-1", start, now))
        # A sensor that reported once, long ago: latest values still find it.
        await copy_as_owner(conn, [(a, "PJ-1", "motor_current_a", start - 10 * DAY, 41.5)])
        await copy_as_owner(conn, series(b, "PJ-1", start, now, value=lambda i, s: 9999.0, step=timedelta(hours=1)))
        await copy_as_owner(conn, series(b, "PJ-B", start, now, value=lambda i, s: 9999.0, step=timedelta(hours=1)))
    finally:
        await conn.close()
    return {"a": a, "b": b, "start": start, "now": now}


async def expected_latest(db_conn: Any, tenant: str, equipment: str) -> list[dict[str, Any]]:
    rows = await db_conn.fetch(
        "SELECT DISTINCT ON (sensor) sensor, ts, value FROM readings WHERE tenant_id = $1 AND equipment_id = $2"
        " ORDER BY sensor, ts DESC", tenant, equipment)
    return [{"sensor": r["sensor"], "ts": r["ts"], "value": r["value"]} for r in rows]


def parsed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**x, "ts": datetime.fromisoformat(x["ts"])} for x in items]


async def test_latest_values_of_one_equipment(http: Any, db_conn: Any, tele: dict[str, Any]) -> None:
    a, b = tele["a"], tele["b"]
    viewer = auth(a, "viewer")
    r = await http.get("/v1/equipment/PJ-1/latest", headers=viewer)
    assert r.status_code == 200, r.text
    got = parsed(r.json()["data"])
    assert got == await expected_latest(db_conn, a, "PJ-1")
    assert [x["sensor"] for x in got] == ["casing_psi", "motor_current_a", "tubing_psi"]
    assert got[1]["value"] == 41.5 and got[2]["ts"] == tele["now"] - timedelta(minutes=1)
    assert all(x["value"] != 9999.0 for x in got)  # tenant B's PJ-1 is another equipment

    r = await http.get("/v1/equipment/PJ-1/latest", headers=viewer, params={"sensor": "tubing_psi,nope"})
    assert [x["sensor"] for x in r.json()["data"]] == ["tubing_psi"]
    assert (await http.get("/v1/equipment/PJ-2/latest", headers=viewer)).json()["data"] == []
    error(await http.get("/v1/equipment/NOPE/latest", headers=viewer), 404)
    error(await http.get("/v1/equipment/PJ-B/latest", headers=viewer), 404)  # tenant B's
    assert error(await http.get("/v1/equipment/PJ-1/latest", headers=viewer, params={"sensor": "Bad!"}), 422)[
        "details"][0]["field"] == "sensor"
    assert (await http.get("/v1/equipment/PJ-B/latest", headers=auth(b, "viewer"))).json()["data"][0]["value"] == 9999


async def test_latest_values_for_a_dashboard(http: Any, db_conn: Any, tele: dict[str, Any]) -> None:
    a = tele["a"]
    viewer = auth(a, "viewer")
    r = await http.get("/v1/telemetry/latest", headers=viewer, params={"equipment": "PJ-2, PJ-1,NOPE,PJ-B,PJ-1"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    # Unknown and other tenants' ids are absent; an equipment without readings is present, empty.
    assert [x["equipment_id"] for x in data] == ["PJ-2", "PJ-1"]
    assert data[0]["sensors"] == []
    assert parsed(data[1]["sensors"]) == await expected_latest(db_conn, a, "PJ-1")
    r = await http.get("/v1/telemetry/latest", headers=viewer,
                       params={"equipment": "PJ-1,PJ-2", "sensor": "casing_psi"})
    assert [(x["equipment_id"], [s["sensor"] for s in x["sensors"]]) for x in r.json()["data"]] == [
        ("PJ-1", ["casing_psi"]), ("PJ-2", [])]

    many = ",".join(f"E-{i}" for i in range(101))
    for params in ({"equipment": many}, {"equipment": "PJ-1,bad id"}, {"equipment": " , "}, {}):
        err = error(await http.get("/v1/telemetry/latest", headers=viewer, params=params), 422)
        assert err["details"][0]["field"] == "equipment", (params, err)
    hundred = ",".join(["PJ-1", *(f"E-{i}" for i in range(99))])
    r = await http.get("/v1/telemetry/latest", headers=viewer, params={"equipment": hundred})
    assert [x["equipment_id"] for x in r.json()["data"]] == ["PJ-1"]
    error(await http.get("/v1/telemetry/latest", headers=viewer, params={"equipment": "PJ-1", "sensor": "X"}), 422)


async def test_csv_export_streams_a_range(http: Any, db_conn: Any, tele: dict[str, Any]) -> None:
    a = tele["a"]
    viewer = auth(a, "viewer")
    start, end = tele["start"], tele["start"] + 2 * DAY
    r = await http.get("/v1/equipment/PJ-1/readings/export", headers=viewer,
                       params={"from": start.isoformat(), "to": end.isoformat()})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["ts", "sensor", "value"]
    expected = await db_conn.fetch(
        "SELECT ts, sensor, value FROM readings WHERE tenant_id = $1 AND equipment_id = 'PJ-1' AND ts >= $2"
        " AND ts < $3 ORDER BY ts, sensor", a, start, end)
    assert len(expected) == 2 * 1440 * 2 > 5000  # more than one chunk of the cursor
    assert [(datetime.fromisoformat(t), s, float(v)) for t, s, v in rows[1:]] == [tuple(e) for e in expected]

    r = await http.get("/v1/equipment/PJ-1/readings/export", headers=viewer,
                       params={"from": start.isoformat(), "to": (start + timedelta(minutes=10)).isoformat(),
                               "sensor": "tubing_psi"})
    assert len(r.text.splitlines()) == 11 and all(",tubing_psi," in line for line in r.text.splitlines()[1:])
    error(await http.get("/v1/equipment/NOPE/readings/export", headers=viewer), 404)
    error(await http.get("/v1/equipment/PJ-B/readings/export", headers=viewer), 404)
    for params in ({"from": end.isoformat(), "to": start.isoformat()}, {"from": "2026-01-01T00:00:00"},
                   {"from": (end - 400 * DAY).isoformat(), "to": end.isoformat()}, {"sensor": "A B"}):
        error(await http.get("/v1/equipment/PJ-1/readings/export", headers=viewer, params=params), 422)
    b_view = await http.get("/v1/equipment/PJ-1/readings/export", headers=auth(tele["b"], "viewer"),
                            params={"from": start.isoformat(), "to": end.isoformat()})
    assert {line.rsplit(",", 1)[1] for line in b_view.text.splitlines()[1:]} == {"9999.0"}


def as_rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(x["sensor"], datetime.fromisoformat(x["bucket"]), x["avg"], x["min"], x["max"], x["last"], x["count"])
            for x in items]


def record_rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return [(r["sensor"], r["bucket"], r["avg"], r["min"], r["max"], r["last"], r["count"]) for r in records]


async def test_bucketed_answers_from_the_rollup_equal_compute_on_read(
        stack: Any, http: Any, db_conn: Any, tele: dict[str, Any]) -> None:
    """Plain PostgreSQL: 1h and 1d come from readings_hourly (plus the hours after it, from readings);
    every number equals the answer computed from the raw rows, before and after a late reading."""
    if stack.migration.flavour != POSTGRES:
        pytest.skip("the hourly rollup table is plain PostgreSQL's; TimescaleDB is tested below")
    a = tele["a"]
    viewer = auth(a, "viewer")
    owner = await db.create_pool(stack.settings.database_url, max_size=1)  # no tenant: compute-on-read path
    try:
        async def compare(bucket: str, size: timedelta, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
            r = await http.get("/v1/equipment/PJ-1/readings", headers=viewer, params={
                "bucket": bucket, "from": start.isoformat(), "to": end.isoformat(), "limit": 10000})
            assert r.status_code == 200, r.text
            raw = await readings.fetch_readings_bucketed(owner, a, "PJ-1", sensors=None, start=start, end=end,
                                                   bucket=size, flavour=POSTGRES, limit=10000)
            assert as_rows(r.json()["data"]) == record_rows(raw), bucket
            return as_rows(r.json()["data"])

        start, end = tele["start"], hour_floor(tele["now"]) + timedelta(hours=1)
        hourly = await compare("1h", timedelta(hours=1), start, end)
        # Hours with a reading: up to the last one's, a minute before `now` (the hour of `now` itself is empty when
        # the fixture ran in its first minute).
        last = tele["now"] - timedelta(minutes=1)
        assert len(hourly) == 2 * ((hour_floor(last) + timedelta(hours=1) - start) // timedelta(hours=1))
        span = await db_conn.fetchrow("SELECT lo, hi FROM readings_hourly_range WHERE tenant_id = $1"
                                      " AND equipment_id = 'PJ-1'", a)
        assert span["lo"] == start
        assert hour_floor(tele["now"] - timedelta(minutes=15)) <= span["hi"] <= hour_floor(
            datetime.now(UTC) - timedelta(minutes=15))
        assert await db_conn.fetchval("SELECT count(*) FROM readings_hourly WHERE tenant_id = $1", a) == 2 * (
            (span["hi"] - span["lo"]) // timedelta(hours=1))
        await compare("1d", DAY, start, day_floor(tele["now"]) + DAY)
        await compare("15m", timedelta(minutes=15), hour_floor(tele["now"]) - 6 * timedelta(hours=1),
                      hour_floor(tele["now"]) + timedelta(hours=1))
        # Before the rolled-up span: it grows to cover the request.
        await compare("1h", timedelta(hours=1), start - DAY, start + timedelta(hours=3))
        assert await db_conn.fetchval("SELECT lo FROM readings_hourly_range WHERE tenant_id = $1", a) == start - DAY

        # A late reading for a rolled-up hour, through the writer the actors use: noted, and rolled up again.
        late_hour = start + timedelta(hours=5)
        app_pool = await db.create_pool(stack.settings.resolved_app_database_url(), tenant_id=a, max_size=1)
        try:
            assert await readings.copy_readings(app_pool, [(a, "PJ-1", "tubing_psi", late_hour + timedelta(seconds=30),
                                                      1_000_000.0)]) == 1
        finally:
            await app_pool.close()
        assert await db_conn.fetchval("SELECT count(*) FROM readings_hourly_stale WHERE tenant_id = $1"
                                      " AND bucket = $2", a, late_hour) == 1
        after = await compare("1h", timedelta(hours=1), start, end)
        assert await db_conn.fetchval("SELECT count(*) FROM readings_hourly_stale WHERE tenant_id = $1", a) == 0
        changed = [row for row in after if row not in hourly]
        assert [(x[0], x[1], x[4], x[6]) for x in changed] == [("tubing_psi", late_hour, 1_000_000.0, 61)]
    finally:
        await owner.close()


# ----------------------------------------------------------------------------- both storage paths, store level


async def _same_buckets(pool: asyncpg.Pool, tenant: str, flavour: str, start: datetime, end: datetime,
                        *, exact: bool) -> None:
    for size in (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), DAY):
        lo, hi = start - (start - ORIGIN) % size, end - (end - ORIGIN) % size + size
        async with db.tenant_tx(pool, tenant) as conn:  # the API's way: a connection in the tenant's transaction
            rolled = await readings.fetch_readings_bucketed(conn, tenant, "PJ-1", sensors=None, start=lo, end=hi,
                                                      bucket=size, flavour=flavour, limit=100_000)
        raw = await readings.fetch_readings_bucketed(pool, tenant, "PJ-1", sensors=None, start=lo, end=hi, bucket=size,
                                               flavour=POSTGRES, limit=100_000)
        assert len(rolled) == len(raw) > 0, size
        for x, y in zip(record_rows(rolled), record_rows(raw), strict=True):
            if exact:
                assert x == y, size
            else:  # the sum of arbitrary doubles depends on its order, in the last bits
                assert x[:2] + x[3:] == y[:2] + y[3:] and x[2] == pytest.approx(y[2], rel=1e-12), size


async def _load_two_tenants(pool: asyncpg.Pool, start: datetime, end: datetime) -> None:
    rng = random.Random(7)
    await pool.execute("INSERT INTO tenants (id, name) VALUES ('nice', 'n'), ('rand', 'r') ON CONFLICT DO NOTHING")
    await pool.execute("INSERT INTO equipment (tenant_id, id) VALUES ('nice', 'PJ-1'), ('rand', 'PJ-1')"
                       " ON CONFLICT DO NOTHING")
    async with pool.acquire() as conn:
        # Four values a minute: TimescaleDB keeps a minute's avg, and avg * 4 is its exact sum again.
        await copy_as_owner(conn, series("nice", "PJ-1", start, end, step=timedelta(seconds=15)))
        await copy_as_owner(conn, series("rand", "PJ-1", start, end, value=lambda i, s: rng.uniform(-1e3, 1e3),
                                         step=timedelta(seconds=20)))


@pytest.mark.fast
async def test_plain_postgres_rollup_equals_compute_on_read(database_url: str) -> None:
    """The store-level check on this machine's plain PostgreSQL, arbitrary values included."""
    result = migrate(database_url)
    if result.flavour != POSTGRES:
        pytest.skip("this server has TimescaleDB")
    pool = await db.create_pool(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - 2 * DAY - timedelta(minutes=7)
    try:
        await _load_two_tenants(pool, start, now)
        await _same_buckets(pool, "nice", POSTGRES, start, now, exact=True)
        await _same_buckets(pool, "rand", POSTGRES, start, now, exact=False)
    finally:
        await pool.execute("DELETE FROM readings WHERE tenant_id IN ('nice', 'rand')")
        await pool.close()


@pytest.mark.fast
async def test_timescale_aggregates_equal_compute_on_read(timescale_url: str) -> None:
    """readings_1m and the hierarchical readings_1h answer as the raw rows do, materialized or real-time."""
    assert migrate(timescale_url).flavour == TIMESCALE
    pool = await db.create_pool(timescale_url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - 2 * DAY - timedelta(minutes=7)
    try:
        await _load_two_tenants(pool, start, now - timedelta(hours=3))
        # Materialized up to an hour edge three or four hours ago; after it the aggregates' real-time part
        # answers, and the last three hours of readings arrive after the refresh.
        watermark = hour_floor(now - timedelta(hours=3))
        with psycopg.connect(timescale_url, autocommit=True) as conn:
            for view in ("readings_1m", "readings_1h"):
                conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, '{watermark.isoformat()}')")
            assert conn.execute("SELECT count(*) FROM readings_1h WHERE bucket < %s", (watermark,)).fetchone()[0]
        async with pool.acquire() as conn:
            await copy_as_owner(conn, series("nice", "PJ-1", now - timedelta(hours=3), now,
                                             step=timedelta(seconds=15)))
        await _same_buckets(pool, "nice", TIMESCALE, start, now, exact=True)
        await _same_buckets(pool, "rand", TIMESCALE, start, now - timedelta(hours=3), exact=False)
    finally:
        await pool.close()
