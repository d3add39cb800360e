"""Connections a Serve replica needs, opened once on first use (never at import time)."""

import asyncio
import contextlib
import json
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # imported where `ready` opens them, so importing this module opens and loads nothing else
    from serve.hub import AlertHub
    from serve.messages import MessageSender
    from serve.ratelimit import RateLimiter
    from serve.security import PasswordHashing
    from serve.sessions import AuthCache
    from store.attachments import AttachmentStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Connections:
    """What `Services.ready` opened, all at once: either a replica has every one of these or none."""

    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext
    idempotency: KeyValue
    flavour: str
    hub: "AlertHub"
    auth: "AuthCache"
    passwords: "PasswordHashing"
    sender: "MessageSender"


class Services:
    """A Serve replica's connections, opened by `ready` on first use.

    Each connection is a typed property that raises `RuntimeError` before `ready` has run, so a route or a
    service holding a ready `Services` (what `serve.deps.get_services` hands out) needs no `None` check.
    """

    def __init__(self, settings: Settings) -> None:
        setup_logging()
        self.settings = settings
        self._connections: Connections | None = None
        self._lock = asyncio.Lock()
        # Made on first use by their modules (`serve.ratelimit.get_limiter`, the sync router's attachment store).
        self.rate_limiter: RateLimiter | None = None
        self.attachment_storage: AttachmentStorage | None = None

    async def ready(self) -> "Services":
        if self._connections is not None:
            return self
        async with self._lock:
            if self._connections is None:
                self._connections = await self._open()
        return self

    async def _open(self) -> Connections:
        from serve.hub import AlertHub
        from serve.messages import build_sender
        from serve.security import password_hashing
        from serve.sessions import AuthCache

        settings = self.settings
        nc = await bus.connect(settings.nats_url or "", "serve")
        idempotency = await bus.idempotency_bucket(nc.jetstream())
        pool = await db.create_pool(settings.resolved_app_database_url(), min_size=1, max_size=settings.db_pool_size)
        flavour = await pool.fetchval("SELECT value FROM wellpulse_meta WHERE key = 'storage_flavour'")
        hub = AlertHub(pool, nc, queue_size=settings.ws_queue_size, max_per_principal=settings.ws_max_per_principal,
                       max_per_tenant=settings.ws_max_per_tenant)
        auth = await AuthCache(pool, nc, ttl=settings.auth_cache_seconds).start()
        auth.listeners.append(hub.authz_changed)
        return Connections(pool=pool, nc=nc, js=nc.jetstream(), idempotency=idempotency,
                           flavour=flavour or "postgresql", hub=hub, auth=auth,
                           passwords=password_hashing(settings), sender=build_sender(settings.message_sender))

    @property
    def connections(self) -> Connections:
        if self._connections is None:
            raise RuntimeError("Services.ready() has not run")
        return self._connections

    @property
    def is_ready(self) -> bool:
        return self._connections is not None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.connections.pool

    @property
    def nc(self) -> NATS:
        return self.connections.nc

    @property
    def js(self) -> JetStreamContext:
        return self.connections.js

    @property
    def flavour(self) -> str:
        """The storage flavour the migrations recorded (``postgresql`` or ``timescaledb``)."""
        return self.connections.flavour

    @property
    def hub(self) -> "AlertHub":
        return self.connections.hub

    @property
    def auth(self) -> "AuthCache":
        return self.connections.auth

    @property
    def passwords(self) -> "PasswordHashing":
        return self.connections.passwords

    @property
    def sender(self) -> "MessageSender":
        return self.connections.sender

    @property
    def idempotency(self) -> KeyValue:
        """The HTTP ingest's Idempotency-Key answers (`store.bus.idempotency_bucket`), bound once at start-up."""
        return self.connections.idempotency

    def tenant_tx(self, tenant_id: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A transaction in which row-level security shows only this tenant's rows."""
        return db.tenant_tx(self.pool, tenant_id)

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
            await self.nc.publish(ctl_subject(tenant_id), message)
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
        connections, self._connections = self._connections, None
        if connections is None:
            return
        await connections.hub.close()
        await connections.auth.close()
        with contextlib.suppress(Exception):
            await connections.nc.close()
        await connections.pool.close()
