"""The tenants repository: which tenants are active, creating one at start-up, and its anomaly sensitivity.

``wellpulse_active_tenants()`` is the one definition of an active tenant (active, not deleted); the actors'
supervisor, the embedded NATS's feed users and the command line all read it.
"""

import json

import asyncpg

from store.db import Executor

ACTIVE_TENANTS_SQL = "SELECT t AS id FROM wellpulse_active_tenants() AS t"


async def list_active_tenants(pool: asyncpg.Pool) -> list[str]:
    """The tenants whose actors run, for the supervisor (a definer function: row-level security shows the app role
    one tenant at a time)."""
    rows = await pool.fetch(ACTIVE_TENANTS_SQL)
    return [r["id"] for r in rows]


def list_active_tenants_sync(database_url: str) -> list[str]:
    """The same for the start-up and command-line code, which has no event loop (psycopg; raises its errors)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        return [row[0] for row in conn.execute(ACTIVE_TENANTS_SQL).fetchall()]


async def upsert_tenant(pool: Executor, tenant_id: str, name: str) -> None:
    """Create a tenant, or revive and rename it (active again): `Stack.register_tenant`."""
    await pool.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, active = true, deleted_at = NULL",
        tenant_id, name,
    )


async def tenant_sensitivity(pool: Executor, tenant_id: str) -> tuple[str | None, dict[str, str]]:
    """The tenant's anomaly sensitivity: (its default, per equipment type), from its settings."""
    settings = await pool.fetchval("SELECT settings FROM tenants WHERE id = $1", tenant_id)
    if isinstance(settings, str):
        settings = json.loads(settings)
    settings = settings or {}
    by_type = settings.get("anomaly_sensitivity_by_type") or {}
    return settings.get("anomaly_sensitivity"), {str(k): str(v) for k, v in by_type.items()}
