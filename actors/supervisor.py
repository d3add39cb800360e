"""Supervisor: one named actor that keeps a TenantActor alive for every active tenant."""

import asyncio
import logging
from typing import Any

import ray

from actors.common import NAMESPACE, setup_logging
from actors.tenant import TenantActor
from config import Settings
from store import db
from store import tenants as tenant_store

log = logging.getLogger(__name__)
SUPERVISOR_NAME = "supervisor"
# What a TenantActor asks of a node: next to nothing (it waits on IO), but not nothing, because Ray spreads
# only actors that ask for some CPU; with none, every tenant would sit on the node that asked first.
TENANT_CPUS = 0.001
WATCH_SECONDS = 2.0


def tenant_actor_name(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Supervisor:
    def __init__(self, settings: Settings) -> None:
        setup_logging()
        self.settings = settings
        self.tenants: dict[str, Any] = {}
        self._pool = None
        self._watch: asyncio.Task | None = None
        self._sync_lock = asyncio.Lock()
        self._pool_lock = asyncio.Lock()
        self.last_error: str | None = None
        # Ray restarts a killed supervisor by running __init__ again, and nobody calls `start` then: resume by
        # ourselves (the TenantActors died with it, being its own; their consumers and checkpoints are durable).
        self._boot = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        while True:
            try:
                await self.start()
                return
            except Exception as exc:  # the database may be the reason we died: keep trying, never crash-loop
                self.last_error = repr(exc)
                log.warning("supervisor start failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(WATCH_SECONDS)

    async def start(self) -> list[str]:
        """Idempotent: create missing TenantActors and begin watching them."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await db.create_pool(self.settings.resolved_app_database_url(), min_size=1,
                                                  max_size=2)
        await self._sync_tenants()
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watch_loop())
        return sorted(self.tenants)

    async def _sync_tenants(self) -> None:
        async with self._sync_lock:  # the boot, the watch and add_tenant may ask at once
            await self._sync_tenants_locked()

    async def _sync_tenants_locked(self) -> None:
        active = await tenant_store.list_active_tenants(self._pool)
        for tenant_id in active:
            if tenant_id not in self.tenants:
                # SPREAD: new tenants go round the nodes that have room; Ray restarts a lost node's actors
                # on the others. An actor that exists already (get_if_exists) stays where it is.
                self.tenants[tenant_id] = TenantActor.options(
                    name=tenant_actor_name(tenant_id), namespace=NAMESPACE, get_if_exists=True,
                    num_cpus=TENANT_CPUS, scheduling_strategy="SPREAD",
                ).remote(tenant_id, self.settings)
                log.info("tenant %s: actor started", tenant_id)
        gone = {tenant_id: self.tenants.pop(tenant_id) for tenant_id in set(self.tenants) - set(active)}
        # Concurrently: each stop waits for its in-flight batch and checkpoints.
        await asyncio.gather(*(actor.stop.remote() for actor in gone.values()), return_exceptions=True)
        for tenant_id, actor in gone.items():
            ray.kill(actor, no_restart=True)
            log.info("tenant %s: actor stopped (tenant inactive)", tenant_id)
        await asyncio.gather(*(a.ensure_running.remote() for a in self.tenants.values()))

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                # ensure_running after a restart re-opens the consumer; a new tenant gets its actor.
                await self._sync_tenants()
                self.last_error = None
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("supervisor watch failed")

    async def add_tenant(self, tenant_id: str) -> None:
        await self._sync_tenants()
        if tenant_id not in self.tenants:
            raise ValueError(f"tenant {tenant_id!r} is not active in the database")

    async def status(self) -> dict[str, Any]:
        stats = await asyncio.gather(*(a.stats.remote() for a in self.tenants.values()), return_exceptions=True)
        tenants = {}
        for tenant_id, st in zip(self.tenants, stats, strict=True):
            tenants[tenant_id] = st if isinstance(st, dict) else {"error": repr(st), "running": False}
        return {"tenants": tenants, "last_error": self.last_error}

    async def tenant(self, tenant_id: str) -> Any:
        return self.tenants.get(tenant_id)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await asyncio.gather(*(a.stop.remote() for a in self.tenants.values()), return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
