"""Connections a Serve replica needs, opened once on first use (never at import time)."""

import asyncio
import contextlib
import json
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import ray
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from actors.common import NAMESPACE, setup_logging
from actors.supervisor import SUPERVISOR_NAME
from config import Settings
from schema.subjects import ctl_subject
from store import bus, db

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings) -> None:
        setup_logging()
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.flavour = "unknown"
        self.hub: Any = None
        self.auth: Any = None
        self.passwords: Any = None
        self.sender: Any = None
        self._idempotency: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def ready(self) -> "Services":
        if self.pool is not None:
            return self
        async with self._lock:
            if self.pool is None:
                from serve.hub import AlertHub

                nc = await bus.connect(self.settings.nats_url or "", "serve")
                self._idempotency = await bus.idempotency_bucket(nc.jetstream())
                pool = await db.create_pool(self.settings.resolved_app_database_url(), min_size=1,
                                            max_size=self.settings.db_pool_size)
                flavour = await pool.fetchval("SELECT value FROM wellpulse_meta WHERE key = 'storage_flavour'")
                self.nc, self.js, self.flavour = nc, nc.jetstream(), flavour or "postgresql"
                from serve.messages import build_sender
                from serve.security import password_hashing
                from serve.sessions import AuthCache

                self.hub = AlertHub(pool, nc, queue_size=self.settings.ws_queue_size,
                                    max_per_principal=self.settings.ws_max_per_principal,
                                    max_per_tenant=self.settings.ws_max_per_tenant)
                self.auth = await AuthCache(pool, nc, ttl=self.settings.auth_cache_seconds).start()
                self.auth.listeners.append(self.hub.authz_changed)
                self.passwords = password_hashing(self.settings)
                self.sender = build_sender(self.settings.message_sender)
                self.pool = pool
        return self

    @property
    def idempotency(self) -> KeyValue:
        """The HTTP ingest's Idempotency-Key answers (`store.bus.idempotency_bucket`), bound once at start-up."""
        if self._idempotency is None:
            raise RuntimeError("Services.ready() has not run")
        return self._idempotency

    def tenant_tx(self, tenant_id: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A transaction in which row-level security shows only this tenant's rows."""
        return db.tenant_tx(self.pool, tenant_id)  # type: ignore[arg-type]

    async def notify_actors(self, tenant_id: str, *reasons: str, **fields: str) -> None:
        """Tell the tenant's running actors that the registry, rules or silences changed.

        Call after the change is committed: the actors re-read it from the database, so a
        lost message only delays the change until their next reload, and nothing is lost.
        One message whatever the reasons (each would cost the actors a whole reload); they
        are named for the logs. ``fields`` go into the message too (``model_reset`` and
        ``failure`` name an ``equipment_id``).
        """
        reload = "+".join(dict.fromkeys(reasons)) or "registry"
        try:
            message = json.dumps({**fields, "reload": reload}).encode()
            await self.nc.publish(ctl_subject(tenant_id), message)  # type: ignore[union-attr]
        except Exception:  # the change is committed; the actors' own periodic reload catches up
            log.warning("could not notify the actors of tenant %s (%s)", tenant_id, reload, exc_info=True)

    async def send_verdict(self, tenant_id: str, equipment_id: str) -> None:
        """An operator's verdict on one of this equipment's alerts is committed: the equipment actor learns it
        (`EquipmentState.apply_verdict`) from the store at its reload, which this nudge starts now; the store
        marks what it learned, so a lost nudge only waits for the periodic reload."""
        await self.notify_actors(tenant_id, "verdict", equipment_id=equipment_id)

    def supervisor(self) -> Any:
        return ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        if self.auth is not None:
            await self.auth.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.pool is not None:
            await self.pool.close()
