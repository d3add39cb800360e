"""Connections a Serve replica needs, opened once on first use (never at import time)."""

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import ray
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from actors.common import NAMESPACE, setup_logging
from actors.supervisor import SUPERVISOR_NAME
from config import Settings
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
        self._lock = asyncio.Lock()

    async def ready(self) -> "Services":
        if self.pool is not None:
            return self
        async with self._lock:
            if self.pool is None:
                from serve.hub import AlertHub

                nc = await bus.connect(self.settings.nats_url or "", "serve")
                pool = await db.create_pool(self.settings.database_url or "", min_size=1,
                                            max_size=self.settings.db_pool_size)
                flavour = await pool.fetchval("SELECT value FROM wellpulse_meta WHERE key = 'storage_flavour'")
                self.nc, self.js, self.flavour = nc, nc.jetstream(), flavour or "postgresql"
                self.hub = AlertHub(pool, nc, queue_size=self.settings.ws_queue_size)
                self.pool = pool
        return self

    def supervisor(self) -> Any:
        return ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.pool is not None:
            await self.pool.close()
