"""WebSocket fan-out of alert events, and of each user's in-app notifications to that user's sockets.

The ALERTS stream wakes the hub; the events themselves are read from ``alert_events``
by seq. Within a tenant, seq order equals commit order (see ``store.db``), so reading
"seq > cursor" after each wake-up delivers every event once, in order, even when NATS
messages from different actors arrive out of order.

In-app notifications come on the tenant's ``inapp.<tenant>`` core-NATS subject, which the notifier publishes to
after it commits them; a socket opened with ``notifications`` gets those of its own user. A push lost with a
replica is no loss: the inbox (`GET /v1/notifications`) holds every one.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from schema.alerts import AlertEvent
from schema.in_app_notifications import InAppPush, parse_inbox_message
from schema.severity import SEVERITY_RANK
from schema.subjects import alerts_tenant_filter, inapp_subject
from store import alerts as alert_store
from store import db

log = logging.getLogger(__name__)
PAGE = 500


class TooManySockets(Exception):
    """A principal or tenant at its cap of open alert sockets; the message says which."""


@dataclass(eq=False)
class Client:
    tenant_id: str
    equipment: frozenset[str] | None
    min_severity: int
    queue: asyncio.Queue[AlertEvent | InAppPush]
    principal: str = ""  # who holds the socket (user or API key id): the per-principal cap counts these
    notifications: bool = False  # the holder's in-app notifications too
    overflowed: bool = False
    sent: int = field(default=0)
    # Set when the tenant's users, sessions or keys change: the socket checks its credential again.
    recheck: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: AlertEvent) -> bool:
        return (SEVERITY_RANK[event.severity] >= self.min_severity
                and (self.equipment is None or event.equipment_id in self.equipment))

    def offer(self, event: AlertEvent | InAppPush) -> None:
        if self.overflowed or (isinstance(event, AlertEvent) and not self.wants(event)):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the sender closes with 1013; the client resumes with since


class TenantFeed:
    """One tenant's cursor over alert_events and the clients watching it."""

    def __init__(self, hub: "AlertHub", tenant_id: str, cursor: int) -> None:
        self.hub = hub
        self.tenant_id = tenant_id
        self.cursor = cursor
        self.clients: set[Client] = set()
        self.wake = asyncio.Event()
        self.sub: Any = None
        self.inbox_sub: Any = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.pump()
            except Exception:
                log.exception("alert feed for %s failed; retrying", self.tenant_id)
                await asyncio.sleep(1)
                self.wake.set()

    async def pump(self) -> None:
        while True:
            async with db.tenant_tx(self.hub.pool, self.tenant_id) as conn:
                rows = await alert_store.events_since(conn, self.tenant_id, self.cursor, PAGE)
            for row in rows:
                event = AlertEvent(**dict(row))
                self.cursor = event.seq
                for client in list(self.clients):
                    client.offer(event)
            if len(rows) < PAGE:
                return

    def push_inbox(self, payload: bytes) -> None:
        """Each notification of an ``inapp`` message to the sockets of its user that asked for them."""
        try:
            pushes = parse_inbox_message(payload)
        except ValueError:
            log.warning("an unreadable in-app message for %s was dropped", self.tenant_id)
            return
        for user_id, push in pushes:
            for client in list(self.clients):
                if client.notifications and client.principal == user_id:
                    client.offer(push)


class AlertHub:
    def __init__(self, pool: asyncpg.Pool, nc: NATS, *, queue_size: int, max_per_principal: int = 5,
                 max_per_tenant: int = 100) -> None:
        self.pool = pool
        self.nc = nc
        self.queue_size = queue_size
        self.max_per_principal = max_per_principal
        self.max_per_tenant = max_per_tenant
        self.feeds: dict[str, TenantFeed] = {}
        self._lock = asyncio.Lock()

    async def register(self, tenant_id: str, *, equipment: frozenset[str] | None, min_severity: int,
                       principal: str = "", notifications: bool = False) -> tuple[Client, int]:
        """A new client and the seq up to which it must replay from the DB itself.

        Raises `TooManySockets` when the principal or the tenant holds its cap of sockets on this replica:
        each socket holds one of the replica's request slots, so one viewer must not take them all.
        """
        async with self._lock:
            feed = self.feeds.get(tenant_id)
            held = feed.clients if feed is not None else set()
            if sum(c.principal == principal for c in held) >= self.max_per_principal:
                raise TooManySockets(f"at most {self.max_per_principal} alert sockets per user or key")
            if len(held) >= self.max_per_tenant:
                raise TooManySockets(f"at most {self.max_per_tenant} alert sockets per tenant")
            if feed is None:
                async with db.tenant_tx(self.pool, tenant_id) as conn:
                    cursor = await conn.fetchval(
                        "SELECT coalesce(max(seq), 0) FROM alert_events WHERE tenant_id = $1", tenant_id)
                feed = TenantFeed(self, tenant_id, cursor)

                async def on_alert(msg: Any, feed: TenantFeed = feed) -> None:
                    feed.wake.set()

                async def on_inbox(msg: Any, feed: TenantFeed = feed) -> None:
                    feed.push_inbox(msg.data)

                feed.sub = await self.nc.subscribe(alerts_tenant_filter(tenant_id), cb=on_alert)
                feed.inbox_sub = await self.nc.subscribe(inapp_subject(tenant_id), cb=on_inbox)
                feed.task = asyncio.get_running_loop().create_task(feed.run())
                self.feeds[tenant_id] = feed
                # Events committed between reading the cursor and subscribing would wait for the next wake-up.
                feed.wake.set()
            client = Client(tenant_id, equipment, min_severity, asyncio.Queue(self.queue_size), principal,
                            notifications)
            feed.clients.add(client)
            return client, feed.cursor

    async def unregister(self, client: Client) -> None:
        async with self._lock:
            feed = self.feeds.get(client.tenant_id)
            if feed is None:
                return
            feed.clients.discard(client)
            if not feed.clients:
                del self.feeds[client.tenant_id]
                await self._close_feed(feed)

    async def _close_feed(self, feed: TenantFeed) -> None:
        if feed.task:
            feed.task.cancel()
        for sub in (feed.sub, feed.inbox_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def authz_changed(self, tenant_id: str) -> None:
        """A user, session or key of the tenant changed: every socket of the tenant checks its credential."""
        feed = self.feeds.get(tenant_id)
        for client in list(feed.clients) if feed is not None else ():
            client.recheck.set()

    def client_count(self) -> int:
        return sum(len(f.clients) for f in self.feeds.values())

    async def close(self) -> None:
        for feed in list(self.feeds.values()):
            await self._close_feed(feed)
        self.feeds.clear()
