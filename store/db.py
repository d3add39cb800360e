"""asyncpg adapter: pools and the tenant's transaction.

Each aggregate's SQL lives in its own repository module (`store.readings`, `store.tenants`,
`store.assets`, `store.rules`, `store.alerts`, `store.checkpoints`, ...); this module only connects. Every repository
function takes the tenant id and every statement filters on it; identifiers arrive already
validated and travel as parameters, never as SQL text.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool: nothing beyond asyncpg's own step, which rolls back
    a transaction left open and drops listeners. asyncpg's default also runs ``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``, one more round trip per request; our code keeps no session state to undo: the
    tenant is named per transaction (``set_config(..., true)``), notifications come over NATS, and the one
    advisory lock (migrations) is taken on a connection of its own."""


TENANT_SETTING = "wellpulse.tenant_id"  # what the row-level security policies compare with
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 4,
                      tenant_id: str | None = None) -> asyncpg.Pool:
    """A pool; with ``tenant_id``, every connection is bound to that tenant for its whole life.

    Actors serve one tenant each, so their pools are bound once at connect time; the API
    serves many and names the tenant per transaction (`tenant_tx`).
    """
    server_settings = {TENANT_SETTING: tenant_id} if tenant_id else None
    return await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60,
        server_settings=server_settings, reset=_keep_session,
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
async def connection(executor: Executor) -> AsyncIterator[asyncpg.Connection]:
    """One connection from either: a repository function that needs its own transaction takes a pool or the
    caller's connection alike (a transaction on a connection inside one becomes a savepoint)."""
    if isinstance(executor, asyncpg.Pool):
        async with executor.acquire() as conn:
            yield conn
    else:
        yield executor
