"""The readings repository: the idempotent writer, raw and bucketed reads, latest values, CSV export, and
plain PostgreSQL's hourly rollup.

Every function takes the tenant id and every statement filters on it; the API runs them
inside ``tenant_tx`` (row-level security backs the filter), the actors on their tenant-bound pool.

Latest values
    ``latest_readings`` (migration 026) holds the newest stored reading of each sensor. The
    writer keeps it in the transaction that stores the readings (:func:`keep_latest`): one
    upsert of the batch's newest row per sensor, which moves a row only forward in time. A
    dashboard of 100 equipment then reads 500 rows by key, where walking the readings index
    downwards ("loose index scan", six probes per five-sensor equipment) took ~10 ms on 10 M
    rows and, on TimescaleDB, touched every chunk. Its price on the write path is one
    statement per batch of at most one row per sensor in it.

Hourly rollup (plain PostgreSQL; TimescaleDB has continuous aggregates)
    A 30-day hourly query of one equipment computed on read aggregates 216k rows (~1 s on
    that data, ~100-350 ms even with a covering index). ``readings_hourly`` holds per sensor
    and closed hour the sum, count, min, max and last value; a bucketed query first makes
    sure the hours it needs are rolled up (``ensure_hourly``), then reads them and computes
    only the hours after the rolled-up span from ``readings``, like a real-time aggregate.
    An hour is rolled up once it ended :data:`SETTLE` ago. A reading stored later for a
    rolled-up hour is noted by the writer (:func:`mark_late_readings`) and the hour is rolled
    up again on the next read.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import asyncpg

from store.db import Executor
from store.listing import csv_chunks

HOUR = timedelta(hours=1)
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a midnight: time_bucket's and date_bin's origin
SETTLE = timedelta(minutes=15)  # an hour is rolled up this long after it ends
# A reading is late when its hour ended more than this long ago. Smaller than SETTLE, so an app
# clock up to 10 minutes behind the database's still notes every reading of a rolled-up hour.
LATE_AFTER = timedelta(minutes=5)
EXPORT_CHUNK_ROWS = 5000
MAX_LATEST_EQUIPMENT = 100
_TS = itemgetter(3)  # a reading row's timestamp
READING_COLUMNS = ("tenant_id", "equipment_id", "sensor", "ts", "value")
QUALIFIED_COLUMNS = (*READING_COLUMNS, "quality")
INGEST_COLUMNS = (*QUALIFIED_COLUMNS, "historical")
_STAGED_ONLY: set[int] = set()  # pools whose readings table refuses COPY (row-level security)
_HOURLY_ROLLUP: dict[int, bool] = {}  # pool -> whether readings_hourly exists (plain PostgreSQL)
ReadingRow = tuple[str, str, str, datetime, float]  # tenant_id, equipment_id, sensor, ts, value
# ... and the value's quality: None (good), "uncertain" or "bad" (migration 019)
QualifiedRow = tuple[str, str, str, datetime, float, str | None]
# ... and whether it was forwarded late: True (historical) or None (live) (migration 024). The ingest path's rows.
IngestRow = tuple[str, str, str, datetime, float, str | None, bool | None]
AnyRows = Sequence[ReadingRow] | Sequence[QualifiedRow] | Sequence[IngestRow]

_LATEST = """
SELECT e.id AS equipment_id, l.sensor, l.ts, l.value
FROM equipment e LEFT JOIN latest_readings l ON l.tenant_id = e.tenant_id AND l.equipment_id = e.id
    AND ($3::text[] IS NULL OR l.sensor = ANY($3::text[]))
WHERE e.tenant_id = $1 AND e.id = ANY($2::text[]) AND e.deleted_at IS NULL
ORDER BY e.id, l.sensor
"""
# A sensor's latest row moves forward in time, never back: a late or resent reading never hides a newer one.
_MOVE_FORWARD = ("ON CONFLICT (tenant_id, equipment_id, sensor) DO UPDATE SET ts = EXCLUDED.ts, value = EXCLUDED.value"
                 " WHERE latest.ts < EXCLUDED.ts")


def _upsert_latest(first: int) -> str:
    """The upsert of ``latest_readings`` from five column arrays, parameters ``$first`` to ``$first + 4``."""
    t, e, s, ts, v = (f"${first + k}" for k in range(5))
    return ("INSERT INTO latest_readings AS latest (tenant_id, equipment_id, sensor, ts, value)"
            f" SELECT * FROM unnest({t}::text[], {e}::text[], {s}::text[], {ts}::timestamptz[], {v}::float8[])"
            f" {_MOVE_FORWARD}")


_KEEP_LATEST = _upsert_latest(1)
# The readings and their sensors' newest values in one statement (data-modifying CTEs run together, atomically).
_STORE_KEEPING_LATEST = f"""
WITH stored AS (
    INSERT INTO readings (tenant_id, equipment_id, sensor, ts, value, quality, historical)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[], $6::text[], $7::bool[])
    ON CONFLICT (tenant_id, equipment_id, sensor, ts) DO NOTHING
    RETURNING 1
), latest AS ({_upsert_latest(8)})
SELECT count(*) FROM stored
"""


def hour_floor(ts: datetime) -> datetime:
    return ts - (ts - ORIGIN) % HOUR


# ---------------------------------------------------------------- writing and reading raw readings


async def copy_readings(pool: asyncpg.Pool, rows: AnyRows) -> int:
    """Store readings exactly once; returns how many rows were new.

    Rows are `ReadingRow` (quality good, live), `QualifiedRow` (with the quality of each value) or `IngestRow`
    (the ingest path's: quality and the historical flag); one batch is all of one kind.

    PostgreSQL refuses COPY into a table under row-level security, so readings go in as
    column arrays with ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` (the
    reading's identity is the primary key): idempotent every time, and no temp table (the
    app role may not create temporary objects). Where ``readings`` has no RLS
    (TimescaleDB, whose compressed hypertables refuse it), a plain COPY is the fast path
    and the staged insert runs only when it hits the key.
    """
    if not rows:
        return 0
    late = late_hours(rows)  # on time, one min() over the batch; else noted for the hourly rollup
    columns = {len(c): c for c in (READING_COLUMNS, QUALIFIED_COLUMNS, INGEST_COLUMNS)}[len(rows[0])]
    async with pool.acquire() as conn:
        if late and not await _has_hourly_rollup(pool, conn):
            late = []
        if id(pool) not in _STAGED_ONLY:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("readings", records=rows, columns=columns)
                    await keep_latest(conn, rows)
                    await mark_late_readings(conn, late)
                return len(rows)
            except asyncpg.UniqueViolationError:
                pass
            except asyncpg.FeatureNotSupportedError:  # row-level security is on
                _STAGED_ONLY.add(id(pool))
        # Column arrays, not a temp table: the app role has no TEMP privilege (a temp object could
        # shadow a name in a function that trusts its search_path).
        arrays = [list(column) for column in zip(*rows, strict=True)]
        while len(arrays) < len(INGEST_COLUMNS):
            arrays.append([None] * len(rows))
        newest = newest_columns(rows)
        if not late:  # one statement is a transaction of its own: one round trip, no BEGIN and COMMIT
            return int(await conn.fetchval(_STORE_KEEPING_LATEST, *arrays, *newest))
        async with conn.transaction():
            stored = await conn.fetchval(_STORE_KEEPING_LATEST, *arrays, *newest)
            await mark_late_readings(conn, late)
        return int(stored)


async def _has_hourly_rollup(pool: asyncpg.Pool, conn: asyncpg.Connection) -> bool:
    """Plain PostgreSQL keeps ``readings_hourly`` (TimescaleDB has continuous aggregates instead)."""
    if id(pool) not in _HOURLY_ROLLUP:
        _HOURLY_ROLLUP[id(pool)] = bool(await conn.fetchval("SELECT to_regclass('readings_hourly_stale') IS NOT NULL"))
    return _HOURLY_ROLLUP[id(pool)]


async def fetch_readings(
    pool: Executor,
    tenant_id: str,
    equipment_id: str,
    *,
    sensors: Sequence[str] | None,
    start: datetime,
    end: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
    quality: bool = False,
) -> list[asyncpg.Record]:
    """Raw readings in (ts, sensor) order, keyset-paginated after ``after``; with ``quality`` each row also has
    its value's quality (``good``, ``uncertain`` or ``bad``) and whether it was forwarded late (``historical``)."""
    columns = ("sensor, ts, value, coalesce(quality, 'good') AS quality, coalesce(historical, false) AS historical"
               if quality else "sensor, ts, value")
    return await pool.fetch(
        f"SELECT {columns} FROM readings"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND ts >= $3 AND ts < $4"
        " AND ($5::text[] IS NULL OR sensor = ANY($5::text[]))"
        " AND ($6::timestamptz IS NULL OR (ts, sensor) > ($6::timestamptz, $7::text))"
        " ORDER BY ts, sensor LIMIT $8",
        tenant_id, equipment_id, start, end, list(sensors) if sensors else None,
        after[0] if after else None, after[1] if after else None, limit,
    )


async def fetch_readings_bucketed(
    pool: Executor,
    tenant_id: str,
    equipment_id: str,
    *,
    sensors: Sequence[str] | None,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    flavour: str,
    limit: int,
) -> list[asyncpg.Record]:
    """avg/min/max/last/count per bucket and sensor; ``start`` and ``end`` on bucket edges.

    Whole hours (1h, 1d) come from an hourly rollup: the ``readings_1h`` continuous aggregate
    on TimescaleDB, ``readings_hourly`` on plain PostgreSQL (`fetch_hourly_bucketed`, which needs
    ``pool`` to be a connection in the tenant's transaction). Other whole minutes come from
    ``readings_1m`` on TimescaleDB; plain PostgreSQL computes them with ``date_bin``.
    """
    sensor_filter = list(sensors) if sensors else None
    whole_hours = bucket % timedelta(hours=1) == timedelta(0)
    if flavour == "timescaledb" and whole_hours:
        return await pool.fetch(
            "SELECT sensor, time_bucket($5::interval, bucket) AS bucket,"
            " sum(sum) / sum(count) AS avg, min(min) AS min, max(max) AS max,"
            " last(last, bucket) AS last, sum(count)::bigint AS count"
            " FROM readings_1h WHERE tenant_id = $1 AND equipment_id = $2"
            " AND bucket >= $3 AND bucket < $4 AND ($6::text[] IS NULL OR sensor = ANY($6::text[]))"
            " GROUP BY sensor, 2 ORDER BY 2, sensor LIMIT $7",
            tenant_id, equipment_id, start, end, bucket, sensor_filter, limit,
        )
    if flavour != "timescaledb" and whole_hours and not isinstance(pool, asyncpg.Pool):
        return await fetch_hourly_bucketed(pool, tenant_id, equipment_id, sensors=sensors, start=start,
                                           end=end, bucket=bucket, limit=limit)
    if flavour == "timescaledb" and bucket >= timedelta(minutes=1) and bucket % timedelta(minutes=1) == timedelta(0):
        return await pool.fetch(
            "SELECT sensor, time_bucket($5::interval, bucket) AS bucket,"
            " sum(avg * count) / sum(count) AS avg, min(min) AS min, max(max) AS max,"
            " last(last, bucket) AS last, sum(count)::bigint AS count"
            " FROM readings_1m WHERE tenant_id = $1 AND equipment_id = $2"
            " AND bucket >= $3 AND bucket < $4 AND ($6::text[] IS NULL OR sensor = ANY($6::text[]))"
            " GROUP BY sensor, 2 ORDER BY 2, sensor LIMIT $7",
            tenant_id, equipment_id, start, end, bucket, sensor_filter, limit,
        )
    return await pool.fetch(
        "SELECT sensor, date_bin($5::interval, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,"
        " avg(value) AS avg, min(value) AS min, max(value) AS max,"
        " (array_agg(value ORDER BY ts DESC))[1] AS last, count(*) AS count"
        " FROM readings WHERE tenant_id = $1 AND equipment_id = $2 AND ts >= $3 AND ts < $4"
        " AND ($6::text[] IS NULL OR sensor = ANY($6::text[]))"
        " GROUP BY sensor, 2 ORDER BY 2, sensor LIMIT $7",
        tenant_id, equipment_id, start, end, bucket, sensor_filter, limit,
    )


async def count_readings(pool: Executor, tenant_id: str) -> int:
    """How many readings the tenant has stored (the ingest benchmark waits for its count)."""
    return await pool.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant_id)


GOOD_VALUES_JSON = ("coalesce(jsonb_object_agg(sensor, value) FILTER (WHERE quality IS DISTINCT FROM 'bad'),"
                " '{}'::jsonb)")
HISTORICAL = "coalesce(bool_or(historical), false)"  # a snapshot is written with one flag for all its values


async def readings_after(
    pool: Executor, tenant_id: str, equipment_id: str, after: datetime | None, limit: int,
    before: datetime | None = None,
) -> list[asyncpg.Record]:
    """Readings stored after a checkpoint, for a restored model to catch up on, oldest first, one row per
    snapshot (``ts``, ``vals``, ``historical``); with `after` None (a model that has learned nothing), the latest
    `limit` of them. Bad values are left out (not learned), their snapshot kept (the equipment reported). With
    `before`, only readings older than it."""
    if after is None:
        return await pool.fetch(
            f"SELECT ts, vals, historical FROM (SELECT ts, {GOOD_VALUES_JSON} AS vals, {HISTORICAL} AS historical"
            " FROM readings"
            " WHERE tenant_id = $1 AND equipment_id = $2 AND ($4::timestamptz IS NULL OR ts < $4)"
            " GROUP BY ts ORDER BY ts DESC LIMIT $3) AS latest ORDER BY ts",
            tenant_id, equipment_id, limit, before,
        )
    return await pool.fetch(
        f"SELECT ts, {GOOD_VALUES_JSON} AS vals, {HISTORICAL} AS historical FROM readings"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND ts > $3 AND ($5::timestamptz IS NULL OR ts < $5)"
        " GROUP BY ts ORDER BY ts LIMIT $4",
        tenant_id, equipment_id, after, limit, before,
    )


# ---------------------------------------------------------------- latest values


async def latest_values(conn: asyncpg.Connection, tenant_id: str, equipment_ids: Sequence[str], *,
                        sensors: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The newest reading of each sensor, per equipment of ``equipment_ids`` that exists in the
    tenant (others are left out; one without readings maps to ``[]``). Sorted by sensor."""
    rows = await conn.fetch(_LATEST, tenant_id, list(dict.fromkeys(equipment_ids)), list(sensors) if sensors else None)
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        values = out.setdefault(row["equipment_id"], [])
        if row["sensor"] is not None:
            values.append({"sensor": row["sensor"], "ts": row["ts"], "value": row["value"]})
    return out


_REBUILD_LATEST = """
INSERT INTO latest_readings AS latest (tenant_id, equipment_id, sensor, ts, value)
WITH RECURSIVE walk AS (
    SELECT e.id AS equipment_id, top.sensor, top.ts, top.value FROM equipment e CROSS JOIN LATERAL (
        SELECT r.sensor, r.ts, r.value FROM readings r WHERE r.tenant_id = $1 AND r.equipment_id = e.id
        ORDER BY r.sensor DESC, r.ts DESC LIMIT 1) top
    WHERE e.tenant_id = $1
    UNION ALL
    SELECT w.equipment_id, next.sensor, next.ts, next.value FROM walk w CROSS JOIN LATERAL (
        SELECT r.sensor, r.ts, r.value FROM readings r WHERE r.tenant_id = $1 AND r.equipment_id = w.equipment_id
        AND r.sensor < w.sensor ORDER BY r.sensor DESC, r.ts DESC LIMIT 1) next
)
SELECT $1, equipment_id, sensor, ts, value FROM walk ORDER BY equipment_id, sensor
""" + _MOVE_FORWARD


async def rebuild_latest(conn: Executor, tenant_id: str) -> None:
    """Bring ``latest_readings`` up to the tenant's stored readings, for readings bulk-loaded past the writer (a
    bench's history made with ``generate_series``): one walk down the readings key per equipment."""
    await conn.execute(_REBUILD_LATEST, tenant_id)


def newest_columns(rows: AnyRows) -> list[list[Any]]:
    """The newest row of each (tenant, equipment, sensor) of a non-empty batch as five column arrays, in key order:
    the order in which the upsert locks them, the same in every writer, so that two batches never deadlock."""
    newest: dict[tuple[str, str, str], ReadingRow] = {}
    for row in rows:
        key = (row[0], row[1], row[2])
        seen = newest.get(key)
        if seen is None or row[3] > seen[3]:
            newest[key] = (row[0], row[1], row[2], row[3], row[4])
    return [list(column) for column in zip(*(newest[key] for key in sorted(newest)), strict=True)]


async def keep_latest(conn: asyncpg.Connection, rows: AnyRows) -> None:
    """Move ``latest_readings`` forward to the newest of `rows` (in the caller's transaction)."""
    if rows:
        await conn.execute(_KEEP_LATEST, *newest_columns(rows))


# ---------------------------------------------------------------- CSV export


async def export_readings_csv(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, *,
                              sensors: Sequence[str] | None, start: datetime, end: datetime) -> AsyncIterator[str]:
    """``ts,sensor,value`` rows in (ts, sensor) order, read through a server-side cursor (the
    caller holds the transaction) and yielded :data:`EXPORT_CHUNK_ROWS` rows at a time, header first."""
    rows = conn.cursor(
        "SELECT ts, sensor, value FROM readings WHERE tenant_id = $1 AND equipment_id = $2"
        " AND ts >= $3 AND ts < $4 AND ($5::text[] IS NULL OR sensor = ANY($5::text[])) ORDER BY ts, sensor",
        tenant_id, equipment_id, start, end, list(sensors) if sensors else None, prefetch=EXPORT_CHUNK_ROWS)
    async for chunk in csv_chunks(rows, ("ts", "sensor", "value"),
                                  lambda row: (row["ts"].isoformat(), row["sensor"], repr(row["value"])),
                                  chunk_rows=EXPORT_CHUNK_ROWS):
        yield chunk


# ---------------------------------------------------------------- hourly rollup (plain PostgreSQL)

_ROLL_UP = """
INSERT INTO readings_hourly (tenant_id, equipment_id, sensor, bucket, sum, count, min, max, last, last_ts)
SELECT $1, $2, sensor, date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00'), sum(value), count(*),
       min(value), max(value), (array_agg(value ORDER BY ts DESC))[1], max(ts)
FROM readings WHERE tenant_id = $1 AND equipment_id = $2 AND ts >= $3 AND ts < $4
GROUP BY sensor, 4
ON CONFLICT (tenant_id, equipment_id, sensor, bucket) DO UPDATE SET sum = EXCLUDED.sum, count = EXCLUDED.count,
    min = EXCLUDED.min, max = EXCLUDED.max, last = EXCLUDED.last, last_ts = EXCLUDED.last_ts
"""


async def ensure_hourly(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, start: datetime,
                        end: datetime) -> datetime:
    """Roll up the closed hours of [start, end) not rolled up yet, and any noted stale; returns
    ``hi``, the end of the rolled-up span (hours from there on are computed from readings).

    Runs in the caller's transaction; concurrent callers for one equipment wait for each other
    only when there is something to roll up.
    """
    span = await conn.fetchrow(
        "SELECT now() AS now, r.lo, r.hi, EXISTS (SELECT 1 FROM readings_hourly_stale s WHERE s.tenant_id = $1"
        " AND s.equipment_id = $2) AS stale FROM (SELECT 1) AS one"
        " LEFT JOIN readings_hourly_range r ON r.tenant_id = $1 AND r.equipment_id = $2",
        tenant_id, equipment_id)
    closed = hour_floor(span["now"] - SETTLE)
    want_lo, want_hi = hour_floor(start), min(hour_floor(end), closed)
    if span["hi"] is None and want_lo >= want_hi:
        return want_lo  # nothing rolled up, nothing closed to roll up: all from readings
    if span["hi"] is not None and not span["stale"] and (
            want_lo >= want_hi or (span["lo"] <= want_lo and span["hi"] >= want_hi)):
        return span["hi"]
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('readings_hourly:' || $1 || ':' || $2))",
                       tenant_id, equipment_id)
    span = await conn.fetchrow(
        "SELECT lo, hi FROM readings_hourly_range WHERE tenant_id = $1 AND equipment_id = $2 FOR UPDATE",
        tenant_id, equipment_id)
    # Taken before the roll-up reads readings: a late reading committed after this DELETE keeps
    # its note, and is rolled up again next time.
    stale = [r["bucket"] for r in await conn.fetch(
        "DELETE FROM readings_hourly_stale WHERE tenant_id = $1 AND equipment_id = $2 RETURNING bucket",
        tenant_id, equipment_id)]
    if span is None:
        lo, hi = want_lo, max(want_lo, want_hi)
        todo = [(lo, hi)]
    else:
        lo, hi = min(span["lo"], want_lo), max(span["hi"], want_hi)
        todo = [(lo, span["lo"]), (span["hi"], hi)]
        todo += [(b, b + HOUR) for b in stale if span["lo"] <= b < span["hi"]]
    for a, b in todo:
        if a < b:
            await conn.execute(_ROLL_UP, tenant_id, equipment_id, a, b)
    await conn.execute(
        "INSERT INTO readings_hourly_range (tenant_id, equipment_id, lo, hi) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id, equipment_id) DO UPDATE SET lo = EXCLUDED.lo, hi = EXCLUDED.hi",
        tenant_id, equipment_id, lo, hi)
    return hi


async def fetch_hourly_bucketed(conn: asyncpg.Connection, tenant_id: str, equipment_id: str, *,
                                sensors: Sequence[str] | None, start: datetime, end: datetime, bucket: timedelta,
                                limit: int) -> list[asyncpg.Record]:
    """Buckets of whole hours (1h, 1d) from the rollup, and from readings after its span."""
    hi = await ensure_hourly(conn, tenant_id, equipment_id, start, end)
    return await conn.fetch(
        "WITH hours AS ("
        " SELECT sensor, bucket, sum, count, min, max, last, last_ts FROM readings_hourly"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND bucket >= $3::timestamptz"
        " AND bucket < least($4::timestamptz, $5::timestamptz)"
        " AND ($7::text[] IS NULL OR sensor = ANY($7::text[]))"
        " UNION ALL"
        " SELECT sensor, date_bin('1 hour', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00'), sum(value), count(*),"
        " min(value), max(value), (array_agg(value ORDER BY ts DESC))[1], max(ts) FROM readings"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND ts >= greatest($3::timestamptz, $5::timestamptz) AND ts < $4"
        " AND ($7::text[] IS NULL OR sensor = ANY($7::text[])) GROUP BY 1, 2)"
        " SELECT sensor, date_bin($6::interval, bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,"
        " sum(sum) / sum(count) AS avg, min(min) AS min, max(max) AS max,"
        " (array_agg(last ORDER BY last_ts DESC))[1] AS last, sum(count)::bigint AS count"
        " FROM hours GROUP BY 1, 2 ORDER BY 2, 1 LIMIT $8",
        tenant_id, equipment_id, start, end, hi, bucket, list(sensors) if sensors else None, limit)


def late_hours(rows: AnyRows, now: datetime | None = None,
               ) -> list[tuple[str, str, datetime]]:
    """(tenant, equipment, hour) of readings whose hour ended more than :data:`LATE_AFTER` ago.

    On time, the common case, this is one ``min`` over the batch's timestamps.

    >>> t = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    >>> late_hours([("t", "E", "s", t - timedelta(minutes=1), 1.0)], now=t)
    []
    >>> late_hours([("t", "E", "s", t - timedelta(hours=2), 1.0)], now=t)
    [('t', 'E', datetime.datetime(2026, 1, 1, 8, 0, tzinfo=datetime.timezone.utc))]
    """
    threshold = hour_floor((now or datetime.now(UTC)) - LATE_AFTER)
    if not rows or min(map(_TS, rows)) >= threshold:
        return []
    return sorted({(r[0], r[1], hour_floor(r[3])) for r in rows if r[3] < threshold})


async def mark_late_readings(conn: asyncpg.Connection, hours: Sequence[tuple[str, str, datetime]]) -> None:
    """Note hours that got readings after they may have been rolled up (in the writer's transaction)."""
    if hours:
        await conn.execute(
            "INSERT INTO readings_hourly_stale (tenant_id, equipment_id, bucket)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ON CONFLICT DO NOTHING",
            [h[0] for h in hours], [h[1] for h in hours], [h[2] for h in hours])


def csv_filename(*parts: Any) -> str:
    return "-".join(str(p) for p in parts if p).replace('"', "") + ".csv"
