"""asyncpg adapter: pools, the idempotent readings writer, and the queries the app runs.

Every function takes the tenant id and every statement filters on it; identifiers
arrive already validated and travel as parameters, never as SQL text.
"""

import itertools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from schema.severity import SEVERITIES
from store import telemetry

READING_COLUMNS = ("tenant_id", "equipment_id", "sensor", "ts", "value")
_STAGED_ONLY: set[int] = set()  # pools whose readings table refuses COPY (row-level security)
_HOURLY_ROLLUP: dict[int, bool] = {}  # pool -> whether readings_hourly exists (plain PostgreSQL)
ReadingRow = tuple[str, str, str, datetime, float]  # tenant_id, equipment_id, sensor, ts, value


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


TENANT_SETTING = "wellpulse.tenant_id"  # what the row-level security policies compare with
Executor = asyncpg.Pool | asyncpg.Connection


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 4,
                      tenant_id: str | None = None) -> asyncpg.Pool:
    """A pool; with ``tenant_id``, every connection is bound to that tenant for its whole life.

    Actors serve one tenant each, so their pools are bound once at connect time; the API
    serves many and names the tenant per transaction (`tenant_tx`).
    """
    server_settings = {TENANT_SETTING: tenant_id} if tenant_id else None
    return await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60,
        server_settings=server_settings,
    )


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A unit of work for one tenant: commits when the block ends, rolls back if it raises.

    Row-level security sees only this tenant's rows for the transaction's length.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config($1, $2, true)", TENANT_SETTING, tenant_id)
        yield conn


@asynccontextmanager
async def _connection(executor: Executor) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as conn:
            yield conn
    else:
        yield executor


# ---------------------------------------------------------------- readings


async def copy_readings(pool: asyncpg.Pool, rows: Sequence[ReadingRow]) -> int:
    """Store readings exactly once; returns how many rows were new.

    PostgreSQL refuses COPY into a table under row-level security, so readings go in as
    column arrays with ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` (the
    reading's identity is the primary key): idempotent every time, and no temp table (the
    app role may not create temporary objects). Where ``readings`` has no RLS
    (TimescaleDB, whose compressed hypertables refuse it), a plain COPY is the fast path
    and the staged insert runs only when it hits the key.
    """
    if not rows:
        return 0
    late = telemetry.late_hours(rows)  # on time, one min() over the batch; else noted for the hourly rollup
    async with pool.acquire() as conn:
        if late and not await _has_hourly_rollup(pool, conn):
            late = []
        if id(pool) not in _STAGED_ONLY:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("readings", records=rows, columns=READING_COLUMNS)
                    await telemetry.mark_late_readings(conn, late)
                return len(rows)
            except asyncpg.UniqueViolationError:
                pass
            except asyncpg.FeatureNotSupportedError:  # row-level security is on
                _STAGED_ONLY.add(id(pool))
        async with conn.transaction():
            # Column arrays, not a temp table: the app role has no TEMP privilege (a temp object could
            # shadow a name in a function that trusts its search_path).
            tenants, equipment, sensors, stamps, values = (list(column) for column in zip(*rows, strict=True))
            status = await conn.execute(
                "INSERT INTO readings (tenant_id, equipment_id, sensor, ts, value)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[])"
                " ON CONFLICT (tenant_id, equipment_id, sensor, ts) DO NOTHING",
                tenants, equipment, sensors, stamps, values)
            await telemetry.mark_late_readings(conn, late)
        return int(status.rsplit(" ", 1)[-1])


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
) -> list[asyncpg.Record]:
    """Raw readings in (ts, sensor) order, keyset-paginated after ``after``."""
    return await pool.fetch(
        "SELECT sensor, ts, value FROM readings"
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
    on TimescaleDB, ``readings_hourly`` on plain PostgreSQL (`store.telemetry`, which needs
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
        return await telemetry.fetch_hourly_bucketed(pool, tenant_id, equipment_id, sensors=sensors, start=start,
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
    return await pool.fetchval("SELECT count(*) FROM readings WHERE tenant_id = $1", tenant_id)


async def readings_after(
    pool: Executor, tenant_id: str, equipment_id: str, after: datetime | None, limit: int
) -> list[asyncpg.Record]:
    """Readings stored after a checkpoint, for a restored model to catch up on, oldest first; with `after`
    None (a model that has learned nothing), the latest `limit` of them."""
    if after is None:
        return await pool.fetch(
            "SELECT ts, vals FROM (SELECT ts, jsonb_object_agg(sensor, value) AS vals FROM readings"
            " WHERE tenant_id = $1 AND equipment_id = $2 GROUP BY ts ORDER BY ts DESC LIMIT $3) AS latest"
            " ORDER BY ts",
            tenant_id, equipment_id, limit,
        )
    return await pool.fetch(
        "SELECT ts, jsonb_object_agg(sensor, value) AS vals FROM readings"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND ts > $3"
        " GROUP BY ts ORDER BY ts LIMIT $4",
        tenant_id, equipment_id, after, limit,
    )


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class EquipmentInfo:
    equipment_id: str
    type: str
    status: str
    dedicated: bool
    anomaly_sensitivity: str | None = None  # None: the tenant's choice (see `tenant_sensitivity`)


async def list_active_tenants(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT t AS id FROM wellpulse_active_tenants() AS t")
    return [r["id"] for r in rows]


async def upsert_tenant(pool: Executor, tenant_id: str, name: str) -> None:
    await pool.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, active = true, deleted_at = NULL",
        tenant_id, name,
    )


async def upsert_equipment(
    pool: Executor, tenant_id: str, items: Iterable[tuple[str, str, str]], *, dedicated: bool = False
) -> None:
    """``items``: (equipment_id, type, name)."""
    await pool.executemany(
        "INSERT INTO equipment (tenant_id, id, type, name, dedicated) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET type = EXCLUDED.type, name = EXCLUDED.name,"
        " updated_at = now(), deleted_at = NULL",
        [(tenant_id, eid, etype, name, dedicated) for eid, etype, name in items],
    )


async def register_seen_equipment(pool: Executor, tenant_id: str, equipment_ids: Sequence[str]) -> None:
    """Equipment a feed reported before anyone registered it, as type ``other``. One that exists,
    deleted or not, is left alone: the API's details are not overwritten, a deleted one stays deleted."""
    await pool.execute(
        "INSERT INTO equipment (tenant_id, id, type, name) SELECT $1, e, 'other', e FROM unnest($2::text[]) AS e"
        " ON CONFLICT (tenant_id, id) DO NOTHING",
        tenant_id, list(equipment_ids),
    )


async def list_equipment(pool: Executor, tenant_id: str) -> list[EquipmentInfo]:
    rows = await pool.fetch(
        "SELECT id, type, status, dedicated, anomaly_sensitivity FROM equipment"
        " WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id",
        tenant_id,
    )
    return [EquipmentInfo(r["id"], r["type"], r["status"], r["dedicated"], r["anomaly_sensitivity"]) for r in rows]


async def tenant_sensitivity(pool: Executor, tenant_id: str) -> tuple[str | None, dict[str, str]]:
    """The tenant's anomaly sensitivity: (its default, per equipment type), from its settings."""
    settings = await pool.fetchval("SELECT settings FROM tenants WHERE id = $1", tenant_id)
    if isinstance(settings, str):
        settings = json.loads(settings)
    settings = settings or {}
    by_type = settings.get("anomaly_sensitivity_by_type") or {}
    return settings.get("anomaly_sensitivity"), {str(k): str(v) for k, v in by_type.items()}


async def equipment_exists(pool: Executor, tenant_id: str, equipment_id: str) -> bool:
    return bool(await pool.fetchval(
        "SELECT 1 FROM equipment WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant_id, equipment_id,
    ))


async def list_rules(pool: Executor, tenant_id: str) -> list[asyncpg.Record]:
    """Enabled rules in the form `models.build_rule` takes: the severity column, when set, goes into params."""
    return await pool.fetch(
        "SELECT id, equipment_id, equipment_type, kind,"
        " CASE WHEN severity IS NULL THEN params ELSE params || jsonb_build_object('severity', severity) END"
        " AS params FROM alert_rules"
        " WHERE tenant_id = $1 AND enabled AND deleted_at IS NULL ORDER BY id",
        tenant_id,
    )


# ---------------------------------------------------------------- alerts

_EVENT_COLUMNS = (
    "seq, tenant_id, alert_id, equipment_id, rule_id, kind, state, severity, message, details,"
    " actor, occurred_at, created_at"
)
_ALERT_COLUMNS = (
    "id, equipment_id, rule_id, state, severity, message, details, opened_at, updated_at,"
    " acknowledged_at, acknowledged_by, ack_comment, escalated_at, resolved_at, resolved_by, resolve_comment"
)


async def _serialize_tenant_events(conn: asyncpg.Connection, tenant_id: str) -> None:
    # seq comes from a sequence, and concurrent transactions may commit out of seq order;
    # a client that resumes "since seq" would then skip the slower one. Taking a
    # per-tenant lock makes seq order and commit order the same within a tenant.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alert_events:' || $1))", tenant_id)


async def _insert_event(
    conn: asyncpg.Connection, tenant_id: str, alert: asyncpg.Record, kind: str, actor: str,
    occurred_at: datetime, *, message: str | None = None, details: dict[str, Any] | None = None,
) -> asyncpg.Record:
    """An event row; its message says what changed (the alert row keeps why it opened)."""
    return await conn.fetchrow(
        f"INSERT INTO alert_events (tenant_id, alert_id, equipment_id, rule_id, kind, state, severity,"
        f" message, details, actor, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        f" RETURNING {_EVENT_COLUMNS}",
        tenant_id, alert["id"], alert["equipment_id"], alert["rule_id"], kind, alert["state"],
        alert["severity"], message if message is not None else alert["message"],
        details if details is not None else alert["details"], actor, occurred_at,
    )


# One step up the order of schema.severity; critical stays critical.
_ESCALATED_SEVERITY_SQL = ("CASE severity " + " ".join(
    f"WHEN '{lower}' THEN '{higher}'" for lower, higher in itertools.pairwise(SEVERITIES)) + " ELSE severity END")


async def escalate_overdue(
    pool: Executor, tenant_id: str, *, older_than: datetime, now: datetime
) -> list[asyncpg.Record]:
    """Raise the severity of alerts left open and unacknowledged too long (once each).

    Not while the alert's equipment or rule is silenced (in maintenance): it escalates once
    the silence is over, if it is still unacknowledged then.
    """
    async with _connection(pool) as conn, conn.transaction():
        await _serialize_tenant_events(conn, tenant_id)
        alerts = await conn.fetch(
            f"UPDATE alerts SET severity = {_ESCALATED_SEVERITY_SQL},"
            f" escalated_at = $3, updated_at = now()"
            f" WHERE tenant_id = $1 AND state = 'open' AND escalated_at IS NULL AND opened_at < $2"
            f" AND NOT wellpulse_silenced(tenant_id, equipment_id, rule_id, $3)"
            f" RETURNING {_ALERT_COLUMNS}",
            tenant_id, older_than, now,
        )
        return [await _insert_event(conn, tenant_id, a, "escalated", "system", now,
                                    message=f"escalated to {a['severity']}: not acknowledged since {a['opened_at']}",
                                    details={"opened_at": a["opened_at"].isoformat()})
                for a in alerts]


async def events_since(pool: Executor, tenant_id: str, since: int, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        tenant_id, since, limit,
    )


async def count_open_alerts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT tenant_id, severity, n FROM wellpulse_open_alert_counts()")
