"""What the models think, in the database: predictions per equipment, shared type models, model resets,
the stored history a backtest replays, and the listing of every model (`GET /v1/ml/models`).

The equipment actors write (`save_predictions` next to their checkpoints, `update_type_model`); the API reads.
Pickles stay out of this module: callers hand in and get back bytes. Every statement filters on the tenant.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from store.listing import FieldSpec, ResourceSpec
from store.readings import GOOD_VALUES_JSON

__all__ = [
    "ML_MODELS",
    "PredictionRow",
    "TypeModel",
    "delete_model",
    "equipment_type",
    "field_records",
    "get_predictions",
    "latest_reading_ts",
    "load_type_model",
    "save_predictions",
    "snapshots_between",
    "update_type_model",
]

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection
EQUIPMENT_TYPES = ("pump_jack", "compressor", "separator", "tank_battery", "meter", "other")


@dataclass(frozen=True)
class PredictionRow:
    """One equipment's predictions as the actors store them (see `models.EquipmentState.predictions`)."""

    equipment_id: str
    equipment_type: str
    model_version: str
    samples_seen: int
    values_seen: int
    last_learned_ts: datetime | None
    warming_up: bool
    anomaly_score: float
    equipment_score: float
    multivariate_score: float
    failure_probability: float
    horizon_seconds: float
    sensors: dict[str, Any]
    failure: dict[str, Any]
    drift: dict[str, Any]
    state_bytes: int


_PREDICTION_COLUMNS = (
    "equipment_id, equipment_type, model_version, samples_seen, values_seen, last_learned_ts, warming_up,"
    " anomaly_score, equipment_score, multivariate_score, failure_probability, horizon_seconds, sensors, failure,"
    " drift, state_bytes"
)


async def save_predictions(conn: Executor, tenant_id: str, rows: Sequence[PredictionRow]) -> None:
    """Replace the predictions of these equipment (one upsert per row, one round trip)."""
    if not rows:
        return
    await conn.executemany(
        f"INSERT INTO predictions (tenant_id, {_PREDICTION_COLUMNS}, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, now())"
        " ON CONFLICT (tenant_id, equipment_id) DO UPDATE SET equipment_type = EXCLUDED.equipment_type,"
        " model_version = EXCLUDED.model_version, samples_seen = EXCLUDED.samples_seen,"
        " values_seen = EXCLUDED.values_seen, last_learned_ts = EXCLUDED.last_learned_ts,"
        " warming_up = EXCLUDED.warming_up, anomaly_score = EXCLUDED.anomaly_score,"
        " equipment_score = EXCLUDED.equipment_score, multivariate_score = EXCLUDED.multivariate_score,"
        " failure_probability = EXCLUDED.failure_probability, horizon_seconds = EXCLUDED.horizon_seconds,"
        " sensors = EXCLUDED.sensors, failure = EXCLUDED.failure, drift = EXCLUDED.drift,"
        " state_bytes = EXCLUDED.state_bytes, updated_at = now()",
        [(tenant_id, r.equipment_id, r.equipment_type, r.model_version, r.samples_seen, r.values_seen,
          r.last_learned_ts, r.warming_up, r.anomaly_score, r.equipment_score, r.multivariate_score,
          r.failure_probability, r.horizon_seconds, r.sensors, r.failure, r.drift, r.state_bytes) for r in rows],
    )


async def get_predictions(conn: Executor, tenant_id: str, equipment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_PREDICTION_COLUMNS}, updated_at FROM predictions WHERE tenant_id = $1 AND equipment_id = $2",
        tenant_id, equipment_id,
    )


async def delete_model(conn: Executor, tenant_id: str, equipment_id: str) -> bool:
    """Drop an equipment's checkpoint and predictions; True if it had a checkpoint."""
    status = await conn.execute(
        "DELETE FROM model_checkpoints WHERE tenant_id = $1 AND equipment_id = $2", tenant_id, equipment_id)
    await conn.execute("DELETE FROM predictions WHERE tenant_id = $1 AND equipment_id = $2", tenant_id, equipment_id)
    return status != "DELETE 0"


# ---------------------------------------------------------------- shared type models


@dataclass(frozen=True)
class TypeModel:
    """A shared failure model: its pickled state and what it has learned."""

    model_version: str
    state: bytes
    samples_seen: int
    failures_seen: int


async def load_type_model(conn: Executor, tenant_id: str, equipment_type: str) -> TypeModel | None:
    row = await conn.fetchrow(
        "SELECT model_version, state, samples_seen, failures_seen FROM type_models"
        " WHERE tenant_id = $1 AND equipment_type = $2",
        tenant_id, equipment_type,
    )
    if row is None:
        return None
    return TypeModel(row["model_version"], bytes(row["state"]), row["samples_seen"], row["failures_seen"])


async def update_type_model(
    pool: asyncpg.Pool, tenant_id: str, equipment_type: str,
    change: Callable[[TypeModel | None], TypeModel | None],
) -> TypeModel | None:
    """Read, change and write a type's shared model as one unit of work.

    Several equipment actors of a tenant teach the same model: a transaction-scoped advisory lock per
    (tenant, type) makes their read-change-write cycles take turns. ``change`` gets the current model (None:
    none yet) and returns the new one (None: leave it as it is).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('type_model:' || $1 || ':' || $2))",
                           tenant_id, equipment_type)
        new = change(await load_type_model(conn, tenant_id, equipment_type))
        if new is None:
            return None
        await conn.execute(
            "INSERT INTO type_models (tenant_id, equipment_type, model_version, state, samples_seen, failures_seen,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (tenant_id, equipment_type) DO UPDATE"
            " SET model_version = EXCLUDED.model_version, state = EXCLUDED.state,"
            " samples_seen = EXCLUDED.samples_seen, failures_seen = EXCLUDED.failures_seen, updated_at = now()",
            tenant_id, equipment_type, new.model_version, new.state, new.samples_seen, new.failures_seen,
        )
        return new


# ---------------------------------------------------------------- what the models learn from


async def field_records(conn: Executor, tenant_id: str, equipment_ids: Sequence[str], *,
                        per_equipment: int = 20) -> list[asyncpg.Record]:
    """The latest maintenance records of these equipment (``equipment_id, kind, started_at, ended_at``), oldest
    first: their windows and ``failure_repair`` jobs are what the failure model learns from."""
    if not equipment_ids:
        return []
    return await conn.fetch(
        "SELECT equipment_id, kind, started_at, ended_at FROM ("
        " SELECT equipment_id, kind, started_at, ended_at,"
        " row_number() OVER (PARTITION BY equipment_id ORDER BY started_at DESC) AS n"
        " FROM maintenance_records WHERE tenant_id = $1 AND equipment_id = ANY($2::text[]) AND deleted_at IS NULL"
        ") AS m WHERE n <= $3 ORDER BY started_at",
        tenant_id, list(equipment_ids), per_equipment,
    )


async def equipment_type(conn: Executor, tenant_id: str, equipment_id: str) -> str | None:
    """The type of a live (not deleted) equipment, or None when there is none with this id."""
    return await conn.fetchval(
        "SELECT type FROM equipment WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL", tenant_id, equipment_id)


async def latest_reading_ts(conn: Executor, tenant_id: str, equipment_id: str) -> datetime | None:
    """When the equipment's newest stored reading was taken (from ``latest_readings``: one row per sensor, where
    ``max(ts)`` over readings reads every row of the equipment)."""
    return await conn.fetchval(
        "SELECT max(ts) FROM latest_readings WHERE tenant_id = $1 AND equipment_id = $2", tenant_id, equipment_id)


async def snapshots_between(conn: Executor, tenant_id: str, equipment_id: str, start: datetime, end: datetime,
                            limit: int) -> list[asyncpg.Record]:
    """Stored readings of ``[start, end)`` as snapshots (``ts, vals``: sensor -> value, bad values left out as
    the models leave them out), in time order."""
    return await conn.fetch(
        f"SELECT ts, {GOOD_VALUES_JSON} AS vals FROM readings"
        " WHERE tenant_id = $1 AND equipment_id = $2 AND ts >= $3 AND ts < $4"
        " GROUP BY ts ORDER BY ts LIMIT $5",
        tenant_id, equipment_id, start, end, limit,
    )


# ---------------------------------------------------------------- GET /v1/ml/models

# Every model of the tenant: one per equipment (its checkpoint) and one shared failure model per type.
_MODELS_SQL = (
    "(SELECT c.tenant_id, c.equipment_id AS id, 'equipment' AS kind, c.equipment_id, e.type AS equipment_type,"
    " c.model_version, c.samples_seen, c.last_learned_ts, octet_length(c.state) AS size_bytes, c.updated_at"
    " FROM model_checkpoints c JOIN equipment e ON e.tenant_id = c.tenant_id AND e.id = c.equipment_id"
    " WHERE e.deleted_at IS NULL"
    " UNION ALL"
    " SELECT t.tenant_id, 'type:' || t.equipment_type AS id, 'equipment_type' AS kind, NULL AS equipment_id,"
    " t.equipment_type, t.model_version, t.samples_seen, t.updated_at AS last_learned_ts,"
    " octet_length(t.state) AS size_bytes, t.updated_at FROM type_models t) AS m"
)
ML_MODELS = ResourceSpec(
    name="ml_models",
    from_sql=_MODELS_SQL,
    default_sort="id",
    fields=(
        FieldSpec("id", "m.id"),
        FieldSpec("kind", "m.kind", "enum", enum=("equipment", "equipment_type")),
        FieldSpec("equipment_id", "m.equipment_id"),
        FieldSpec("equipment_type", "m.equipment_type", "enum", enum=EQUIPMENT_TYPES),
        FieldSpec("model_version", "m.model_version"),
        FieldSpec("samples_seen", "m.samples_seen", "int"),
        FieldSpec("last_learned_at", "m.last_learned_ts", "timestamp"),
        FieldSpec("size_bytes", "m.size_bytes", "int"),
        FieldSpec("updated_at", "m.updated_at", "timestamp"),
    ),
    tenant_column="m.tenant_id",
)
