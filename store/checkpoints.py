"""Model checkpoints in the database (`model_checkpoints`): one signed state per equipment, written by its
equipment actor and read back when the actor (re)starts.

The state is opaque bytes here (`models.checkpoint` makes them, `config.secrets` signs them): this module only
moves them. Every statement filters on the tenant.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from store.db import Executor

__all__ = ["CheckpointRow", "load_checkpoints", "save_checkpoints"]


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """One equipment's checkpoint: the signed state and what it is a state of (for listings without reading it)."""

    equipment_id: str
    model_version: str
    state: bytes
    last_learned_ts: datetime | None
    samples_seen: int


async def save_checkpoints(conn: Executor, tenant_id: str, rows: Sequence[CheckpointRow]) -> None:
    """Insert or replace the checkpoints of these equipment."""
    await conn.executemany(
        "INSERT INTO model_checkpoints"
        " (tenant_id, equipment_id, model_version, state, last_learned_ts, samples_seen, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now())"
        " ON CONFLICT (tenant_id, equipment_id) DO UPDATE SET model_version = EXCLUDED.model_version,"
        " state = EXCLUDED.state, last_learned_ts = EXCLUDED.last_learned_ts,"
        " samples_seen = EXCLUDED.samples_seen, updated_at = now()",
        [(tenant_id, r.equipment_id, r.model_version, r.state, r.last_learned_ts, r.samples_seen) for r in rows],
    )


async def load_checkpoints(conn: Executor, tenant_id: str, equipment_ids: Sequence[str]) -> dict[str, bytes]:
    """The stored states of these equipment (those that have one), by equipment id."""
    rows = await conn.fetch(
        "SELECT equipment_id, state FROM model_checkpoints WHERE tenant_id = $1 AND equipment_id = ANY($2)",
        tenant_id, list(equipment_ids),
    )
    return {r["equipment_id"]: bytes(r["state"]) for r in rows}
