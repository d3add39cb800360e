"""Storage adapters against a real PostgreSQL (and TimescaleDB when WELLPULSE_TEST_TIMESCALE_URL is set)."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

from store import alerts as alert_store
from store import db, readings
from store.migrate import POSTGRES, TIMESCALE, migrate

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows(tenant: str, n: int, offset: int = 0) -> list[readings.ReadingRow]:
    return [(tenant, "PJ-1", sensor, T0 + timedelta(seconds=i + offset), float(i))
            for i in range(n) for sensor in ("a", "b")]


async def test_copy_readings_is_idempotent(database_url: str) -> None:
    migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('store-t', 'x') ON CONFLICT DO NOTHING")
        assert await readings.copy_readings(pool, rows("store-t", 100)) == 200  # fast path
        assert await readings.copy_readings(pool, rows("store-t", 100)) == 0  # whole batch again
        assert await readings.copy_readings(pool, rows("store-t", 150, offset=50)) == 200  # overlapping batch
        batch = rows("store-t", 10, offset=1000)
        assert await readings.copy_readings(pool, batch + batch) == 20  # duplicates inside one batch
        assert await readings.count_readings(pool, "store-t") == 420
        assert await readings.count_readings(pool, "other-tenant") == 0
    finally:
        await pool.close()


async def _latest(pool: asyncpg.Pool, tenant: str) -> dict[tuple[str, str], tuple[datetime, float]]:
    rows = await pool.fetch("SELECT equipment_id, sensor, ts, value FROM latest_readings WHERE tenant_id = $1",
                            tenant)
    return {(r["equipment_id"], r["sensor"]): (r["ts"], r["value"]) for r in rows}


async def _newest_stored(pool: asyncpg.Pool, tenant: str) -> dict[tuple[str, str], tuple[datetime, float]]:
    rows = await pool.fetch("SELECT DISTINCT ON (equipment_id, sensor) equipment_id, sensor, ts, value FROM readings"
                            " WHERE tenant_id = $1 ORDER BY equipment_id, sensor, ts DESC", tenant)
    return {(r["equipment_id"], r["sensor"]): (r["ts"], r["value"]) for r in rows}


async def test_the_writer_keeps_the_newest_reading_of_each_sensor_and_never_moves_it_back(
        database_url: str) -> None:
    migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('latest-t', 'x'), ('latest-u', 'y')")
        shuffled = rows("latest-t", 50)[::-1]  # newest first: the batch's order is not time order
        await readings.copy_readings(pool, shuffled)
        newest = T0 + timedelta(seconds=49)
        assert await _latest(pool, "latest-t") == {("PJ-1", "a"): (newest, 49.0), ("PJ-1", "b"): (newest, 49.0)}
        # A late batch (an edge buffer's backlog) and a resend with other values do not hide the newest.
        await readings.copy_readings(pool, [("latest-t", "PJ-1", "a", T0 - timedelta(hours=1), -1.0),
                                            ("latest-t", "PJ-1", "a", newest, -2.0)])
        assert (await _latest(pool, "latest-t"))[("PJ-1", "a")] == (newest, 49.0)
        # Newer readings, a new sensor, another equipment and another tenant's reading of the same key.
        await readings.copy_readings(pool, [("latest-t", "PJ-1", "a", newest + timedelta(seconds=1), 7.0),
                                            ("latest-t", "PJ-1", "c", T0, 3.0),
                                            ("latest-t", "PJ-2", "a", T0, 4.0),
                                            ("latest-u", "PJ-1", "a", newest + timedelta(hours=1), 99.0)])
        assert await _latest(pool, "latest-t") == await _newest_stored(pool, "latest-t")
        assert await _latest(pool, "latest-u") == {("PJ-1", "a"): (newest + timedelta(hours=1), 99.0)}
    finally:
        await pool.close()


async def test_concurrent_batches_over_the_same_sensors_in_opposite_orders_keep_the_newest(
        database_url: str) -> None:
    """Writers lock the latest rows in key order: batches naming the same sensors never deadlock."""
    migrate(database_url)
    pool = await db.create_pool(database_url, min_size=8, max_size=8)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('latest-c', 'x')")
        sensors = [f"s{k:02d}" for k in range(40)]

        def batch(n: int) -> list[readings.ReadingRow]:
            order = sensors if n % 2 else sensors[::-1]
            return [("latest-c", f"PJ-{int(sensor[1:]) % 4}", sensor, T0 + timedelta(seconds=n), float(n))
                    for sensor in order]

        await asyncio.gather(*(readings.copy_readings(pool, batch(n)) for n in range(64)))
        latest = await _latest(pool, "latest-c")
        assert len(latest) == 40 and {v for _, v in latest.values()} == {63.0}
        assert latest == await _newest_stored(pool, "latest-c")
    finally:
        await pool.close()


async def test_latest_readings_are_rebuilt_from_readings_loaded_past_the_writer(database_url: str) -> None:
    migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('latest-r', 'x'), ('latest-s', 'y')")
        await pool.execute("INSERT INTO equipment (tenant_id, id, type) VALUES ('latest-r', 'PJ-1', 'pump_jack'),"
                           " ('latest-r', 'PJ-2', 'pump_jack'), ('latest-s', 'PJ-1', 'pump_jack')")
        async with pool.acquire() as conn:  # a bulk load, as a bench's history goes in
            await conn.copy_records_to_table("readings", records=rows("latest-r", 30) + rows("latest-s", 40),
                                             columns=readings.READING_COLUMNS)
        assert await _latest(pool, "latest-r") == {}
        await readings.rebuild_latest(pool, "latest-r")
        assert await _latest(pool, "latest-r") == await _newest_stored(pool, "latest-r") != {}
        assert await _latest(pool, "latest-s") == {}  # the other tenant's is left alone
    finally:
        await pool.close()


async def test_the_migration_fills_latest_readings_from_the_readings_stored_before_it(fresh_database: str) -> None:
    migrate(fresh_database)
    pool = await db.create_pool(fresh_database)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('latest-m', 'x')")
        await pool.execute("INSERT INTO equipment (tenant_id, id, type) VALUES ('latest-m', 'PJ-1', 'pump_jack')")
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("readings", records=rows("latest-m", 30),
                                             columns=readings.READING_COLUMNS)
        # As a database migrated before 026 holds it: readings, no latest_readings.
        await pool.execute("DROP TABLE latest_readings")
        await pool.execute("DELETE FROM schema_migrations WHERE version = '026_latest_readings.sql'")
        assert migrate(fresh_database).applied == ["026_latest_readings.sql"]
        newest = T0 + timedelta(seconds=29)
        assert await _latest(pool, "latest-m") == {("PJ-1", "a"): (newest, 29.0), ("PJ-1", "b"): (newest, 29.0)}
    finally:
        await pool.close()


def test_migrations_run_once_and_report_plain_postgres(database_url: str) -> None:
    first = migrate(database_url)
    again = migrate(database_url)
    assert again.applied == []
    assert first.flavour == again.flavour
    with psycopg.connect(database_url) as conn:
        flavour = conn.execute("SELECT value FROM wellpulse_meta WHERE key = 'storage_flavour'").fetchone()[0]
    assert flavour == again.flavour
    if flavour == POSTGRES:
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT to_regclass('readings_1m')").fetchone()[0] is None


async def test_timescale_hypertable_compression_aggregate_and_retention(timescale_url: str) -> None:
    result = migrate(timescale_url, retention_days=30)
    assert result.flavour == TIMESCALE
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
        ).fetchone()[0] == 1
        segmentby = conn.execute(
            "SELECT array_agg(attname ORDER BY segmentby_column_index)"
            " FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'readings' AND segmentby_column_index IS NOT NULL").fetchone()[0]
        assert segmentby == ["tenant_id", "equipment_id", "sensor"]
        jobs = dict(conn.execute(
            "SELECT proc_name, config->>'drop_after' FROM timescaledb_information.jobs"
            " WHERE hypertable_name IN ('readings', 'readings_1m') OR proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchall())
        assert {"policy_retention", "policy_compression", "policy_refresh_continuous_aggregate"} <= set(jobs)
        assert jobs["policy_retention"] == "30 days"
    pool = await db.create_pool(timescale_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('ts-t', 'x')")
        now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        batch = [("ts-t", "PJ-1", "a", now + timedelta(seconds=i), float(i)) for i in range(180)]
        assert await readings.copy_readings(pool, batch) == 180
        assert await readings.copy_readings(pool, batch) == 0
        # Background jobs do not run on PostgreSQL 15.20 here: run the refresh job by hand.
        async with pool.acquire() as conn:
            job = await conn.fetchval("SELECT job_id FROM timescaledb_information.jobs"
                                      " WHERE proc_name = 'policy_refresh_continuous_aggregate'")
            await conn.execute(f"CALL run_job({int(job)})")
        materialized = await pool.fetchval(
            "SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log")
        assert materialized is not None
        buckets = await readings.fetch_readings_bucketed(
            pool, "ts-t", "PJ-1", sensors=["a"], start=now, end=now + timedelta(minutes=3),
            bucket=timedelta(minutes=1), flavour=TIMESCALE, limit=10)
        assert [b["count"] for b in buckets] == [60, 60, 60]
        assert [b["max"] for b in buckets] == [59.0, 119.0, 179.0]
        assert [b["last"] for b in buckets] == [59.0, 119.0, 179.0]
        plain = await readings.fetch_readings_bucketed(
            pool, "ts-t", "PJ-1", sensors=["a"], start=now, end=now + timedelta(minutes=3),
            bucket=timedelta(minutes=1), flavour=POSTGRES, limit=10)
        assert [dict(b) for b in plain] == [dict(b) for b in buckets]
    finally:
        await pool.close()


async def test_alert_writer_keeps_one_open_alert_per_key(database_url: str) -> None:
    migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('alerts-t', 'x') ON CONFLICT DO NOTHING")
        opened = alert_store.AlarmChange("opened", "PJ-1", "r1", "warning", T0, "high", {"v": 1})
        events = await alert_store.persist_changes(pool, "alerts-t", [opened])
        assert [e["kind"] for e in events] == ["opened"]
        # A replay after a crash repeats the decision: no second alert, no second event.
        assert await alert_store.persist_changes(pool, "alerts-t", [opened]) == []
        worse = alert_store.AlarmChange("updated", "PJ-1", "r1", "critical", T0, "higher", {"v": 2})
        assert [e["kind"] for e in await alert_store.persist_changes(pool, "alerts-t", [worse])] == ["updated"]
        resolved = alert_store.AlarmChange("resolved", "PJ-1", "r1", "critical", T0, "ok", {})
        assert [e["kind"] for e in await alert_store.persist_changes(pool, "alerts-t", [resolved])] == ["resolved"]
        assert await alert_store.persist_changes(pool, "alerts-t", [resolved]) == []
        # A model restored from an older checkpoint re-learns the readings: the same opening (and its
        # resolve) again is the alert it already raised, not a second one.
        assert await alert_store.persist_changes(pool, "alerts-t", [opened, resolved]) == []
        later = alert_store.AlarmChange("opened", "PJ-1", "r1", "warning", T0 + timedelta(minutes=1), "high", {})
        reopened = await alert_store.persist_changes(pool, "alerts-t", [later])
        assert reopened[0]["alert_id"] != events[0]["alert_id"]
        seqs = [e["seq"] for e in await alert_store.events_since(pool, "alerts-t", 0, 100)]
        assert seqs == sorted(seqs) and len(seqs) == 4
        with pytest.raises(asyncpg.UniqueViolationError):
            await pool.execute(
                "INSERT INTO alerts (tenant_id, equipment_id, rule_id, state, severity, message, opened_at)"
                " VALUES ('alerts-t', 'PJ-1', 'r1', 'open', 'info', 'dup', now())")
    finally:
        await pool.close()


async def test_unacknowledged_alerts_escalate_once_and_acknowledged_ones_never(database_url: str) -> None:
    migrate(database_url)
    pool = await db.create_pool(database_url)
    try:
        await pool.execute("INSERT INTO tenants (id, name) VALUES ('esc-t', 'x') ON CONFLICT DO NOTHING")
        for rule in ("r-open", "r-acked"):
            await alert_store.persist_changes(
                pool, "esc-t", [alert_store.AlarmChange("opened", "PJ-1", rule, "warning", T0, "high", {})])
        acked_id = await pool.fetchval("SELECT id FROM alerts WHERE tenant_id = 'esc-t' AND rule_id = 'r-acked'")
        _, (ack_event,) = await alert_store.acknowledge_alert(pool, "esc-t", acked_id, actor="ops", comment="on it",
                                                             now=T0)
        assert ack_event["message"] == "acknowledged by ops" and ack_event["details"] == {"comment": "on it"}
        now = T0 + timedelta(hours=1)
        escalated = await alert_store.escalate_overdue(pool, "esc-t", older_than=now - timedelta(minutes=15), now=now)
        assert [(e["rule_id"], e["kind"], e["severity"]) for e in escalated] == [("r-open", "escalated", "critical")]
        assert await alert_store.escalate_overdue(pool, "esc-t", older_than=now, now=now) == []
        assert await alert_store.escalate_overdue(pool, "other", older_than=now, now=now) == []
    finally:
        await pool.close()
