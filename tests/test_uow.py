"""The unit of work (serve/uow.py) against PostgreSQL alone (fast tier): effects run only after the commit, a
rollback drops them, and the audit row commits or rolls back with the change."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import pytest

from config import Settings
from serve.uow import TenantWork, UnitOfWork
from store import db
from store.audit import AuditContext

pytestmark = pytest.mark.fast
TENANT = "uow-t"
AUDIT = AuditContext(tenant_id=TENANT, actor_type="user", actor_id="tester")


@pytest.fixture
async def pool(pg_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The fast tier's database, migrated once for the session (as the owner: the test inserts a tenant)."""
    pool = await db.create_pool(pg_settings.database_url, max_size=2)
    await pool.execute("INSERT INTO tenants (id, name) VALUES ($1, 'uow') ON CONFLICT DO NOTHING", TENANT)
    try:
        yield pool
    finally:
        await pool.close()


async def audited(pool: asyncpg.Pool, entity_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND entity_id = $2",
                               TENANT, entity_id)


async def test_effects_run_after_the_commit_and_see_it(pool: asyncpg.Pool) -> None:
    seen: list[int] = []

    async def effect() -> None:  # from another connection: runs only once the change is visible to others
        seen.append(await audited(pool, "committed"))

    async with UnitOfWork(db.tenant_tx(pool, TENANT), audit=AUDIT) as uow:
        await uow.record(action="create", entity_type="thing", entity_id="committed", new={"a": 1})
        uow.after_commit(effect)
        assert seen == []  # registered, not run
    assert seen == [1]


async def test_a_rollback_drops_the_effects_and_the_audit_row(pool: asyncpg.Pool) -> None:
    published: list[str] = []

    async def publish() -> None:
        published.append("event")

    with pytest.raises(ValueError, match="refused"):
        async with UnitOfWork(db.tenant_tx(pool, TENANT), audit=AUDIT) as uow:
            await uow.record(action="create", entity_type="thing", entity_id="rolled-back", new={"a": 1})
            uow.after_commit(publish)
            raise ValueError("refused")
    assert published == []  # the effect was not published
    assert await audited(pool, "rolled-back") == 0  # and the change's audit row went with it


async def test_a_failed_commit_runs_no_effect(pool: asyncpg.Pool) -> None:
    ran: list[str] = []

    async def effect() -> None:
        ran.append("effect")

    with pytest.raises(asyncpg.PostgresError):
        async with UnitOfWork(db.tenant_tx(pool, TENANT), audit=AUDIT) as uow:
            # Checked at commit: the transaction body succeeds, the commit fails.
            await uow.conn.execute("CREATE TEMP TABLE uow_t (x int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)"
                                   " ON COMMIT DROP")
            await uow.conn.execute("INSERT INTO uow_t VALUES (1), (1)")
            uow.after_commit(effect)
    assert ran == []


class FakeServices:
    """What `TenantWork` uses of `Services`: the tenant transaction and the actors' nudge."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.js = None
        self.nudges: list[tuple[str, tuple[str, ...], dict[str, str]]] = []

    def tenant_tx(self, tenant_id: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return db.tenant_tx(self.pool, tenant_id)

    async def notify_actors(self, tenant_id: str, *reasons: str, **fields: str) -> None:
        self.nudges.append((tenant_id, reasons, fields))


async def test_nudges_with_the_same_fields_become_one_message(pool: asyncpg.Pool) -> None:
    services: Any = FakeServices(pool)
    async with TenantWork(services, TENANT) as uow:
        uow.notify_actors("rules")
        uow.notify_actors("verdict", equipment_id="PJ-1")
        uow.notify_actors("silences")
        assert services.nudges == []
    assert services.nudges == [(TENANT, ("rules", "silences"), {}), (TENANT, ("verdict",), {"equipment_id": "PJ-1"})]

    with pytest.raises(RuntimeError):
        async with TenantWork(services, TENANT) as uow:
            uow.notify_actors("rules")
            raise RuntimeError("rolled back")
    assert len(services.nudges) == 2  # nothing more
