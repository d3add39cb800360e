"""What each replica remembers of users, sessions and API keys between requests.

Authenticating must cost microseconds, not a database round trip, yet a deactivated user,
a revoked session or a revoked key must stop working at once. So each replica caches the
state it read, and every change is pushed to all replicas on ``authz.<tenant>`` (core NATS)
after its transaction commits; the replica that made the change also drops its own entry
before it answers. The time-to-live only bounds the damage of a push lost while NATS was
down.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from schema.subjects import AUTHZ_SUBJECTS, authz_subject
from store import db, identity

log = logging.getLogger(__name__)
TOUCH_EVERY_SECONDS = 60.0  # how stale last_used_at may be: one write a minute per key at most
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class ApiKeyState:
    key_id: str
    scopes: frozenset[str]
    live: bool


async def announce_tenant_change(nats_url: str, tenant_id: str) -> None:
    """For processes without an `AuthCache` (the CLI): every replica drops what it cached of the tenant."""
    import nats

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        await nc.publish(authz_subject(tenant_id), json.dumps({"tenant": True}).encode())
        await nc.flush(timeout=5)
    finally:
        await nc.close()


class AuthCache:
    def __init__(self, pool: asyncpg.Pool, nc: NATS, *, ttl: float) -> None:
        self.pool = pool
        self.nc = nc
        self.ttl = ttl
        self._users: dict[tuple[str, str, str], tuple[float, identity.UserAuthState | None]] = {}
        self._keys: dict[bytes, tuple[float, str, ApiKeyState | None]] = {}
        self._touched: dict[str, float] = {}
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Called with the tenant id after any change of its users, sessions or keys (the WebSocket hub
        # re-checks the sockets it holds: a socket is authorised for as long as its credential is).
        self.listeners: list[Callable[[str], None]] = []

    async def start(self) -> "AuthCache":
        self._sub = await self.nc.subscribe(AUTHZ_SUBJECTS, cb=self._on_change)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    # ------------------------------------------------------------------ reads

    async def user_state(self, tenant_id: str, user_id: str, session_id: str) -> identity.UserAuthState | None:
        key = (tenant_id, user_id, session_id)
        hit = self._users.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        async with db.tenant_tx(self.pool, tenant_id) as conn:
            state = await identity.user_auth_state(conn, tenant_id, user_id, session_id)
        self._remember(self._users, key, (now, state))
        return state

    async def api_key(self, tenant_id: str, digest: bytes) -> ApiKeyState | None:
        hit = self._keys.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl and hit[1] == tenant_id:
            state = hit[2]
        else:
            async with db.tenant_tx(self.pool, tenant_id) as conn:
                row = await identity.api_key_by_hash(conn, tenant_id, digest)
            state = None if row is None else ApiKeyState(
                key_id=str(row["id"]), scopes=frozenset(row["scopes"]),
                live=row["revoked_at"] is None and (row["expires_at"] is None
                                                    or row["expires_at"] > datetime.now(UTC)))
            self._remember(self._keys, digest, (now, tenant_id, state))
        if state is not None and state.live:
            self._touch_later(tenant_id, state.key_id)
        return state

    def _touch_later(self, tenant_id: str, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            return
        self._touched[key_id] = now

        async def touch() -> None:
            try:
                async with db.tenant_tx(self.pool, tenant_id) as conn:
                    await identity.touch_api_key(conn, tenant_id, key_id)
            except Exception:
                log.warning("could not record last use of an API key", exc_info=True)

        task = asyncio.get_running_loop().create_task(touch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= MAX_ENTRIES:
            cache.clear()  # crude, and rare: a cache miss costs one query
        cache[key] = value

    # ------------------------------------------------------------------ changes

    def forget(self, *, user_id: str | None = None, session_id: str | None = None,
               key_hash: str | None = None, tenant_id: str | None = None) -> None:
        if tenant_id is not None:  # the whole tenant (deactivated)
            for key in [k for k in self._users if k[0] == tenant_id]:
                self._users.pop(key, None)
            for digest in [d for d, v in self._keys.items() if v[1] == tenant_id]:
                self._keys.pop(digest, None)
        if user_id is not None or session_id is not None:
            for key in [k for k in self._users if k[1] == user_id or k[2] == session_id]:
                self._users.pop(key, None)
        if key_hash is not None:
            with contextlib.suppress(ValueError):
                self._keys.pop(bytes.fromhex(key_hash), None)

    async def changed(self, tenant_id: str, *, user_id: str | None = None, session_id: str | None = None,
                      key_hash: str | None = None) -> None:
        """Call after the change committed: drop it here, then tell every other replica."""
        self.forget(user_id=user_id, session_id=session_id, key_hash=key_hash)
        self._notify(tenant_id)
        body = json.dumps({"user_id": user_id, "session_id": session_id, "key_hash": key_hash}).encode()
        try:
            await self.nc.publish(authz_subject(tenant_id), body)
            await self.nc.flush(timeout=2)
        except Exception:
            log.warning("could not push an auth change; other replicas notice within %.0fs", self.ttl)

    async def _on_change(self, msg: Any) -> None:
        try:
            change = json.loads(msg.data)
            subject_tenant = msg.subject.split(".", 1)[1]
            tenant_id = subject_tenant if change.get("tenant") else None
            self.forget(user_id=change.get("user_id"), session_id=change.get("session_id"),
                        key_hash=change.get("key_hash"), tenant_id=tenant_id)
        except Exception:
            log.warning("ignored a malformed auth change message")
            return
        self._notify(subject_tenant)

    def _notify(self, tenant_id: str) -> None:
        for listener in self.listeners:
            try:
                listener(tenant_id)
            except Exception:
                log.exception("an auth change listener failed")
