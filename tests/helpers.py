"""Helpers shared by the integration tests (imported as ``tests.helpers``)."""

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats

from schema.subjects import tele_subject
from serve.auth import Role, mint_access_token
from store import admin

# One value per session, whichever module reads it first.
JWT_SECRET = os.environ.setdefault("WELLPULSE_TEST_JWT_SECRET", "test-secret-" + uuid.uuid4().hex)
ROLES = [r.value for r in Role]
# (tenant, role) -> an access token of a real user with a real session (see `create_tenant`).
_TOKENS: dict[tuple[str, str], str] = {}


def user_email(tenant_id: str, role: str) -> str:
    return f"{role}@{tenant_id}.example"


def token(tenant_id: str, role: str = "operator") -> str:
    """The access token of the tenant's user with this role (every role has one, see `create_tenant`)."""
    return _TOKENS[(tenant_id, role)]


def auth(tenant_id: str, role: str = "operator") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant_id, role)}"}


def add_users(database_url: str, tenant_id: str, *, password_hash: str | None = None) -> None:
    """One user per role, each with an open session whose token `token`/`auth` return."""
    for role in ROLES:
        admin.ensure_user(database_url, tenant_id, user_email(tenant_id, role), role=role, password_hash=password_hash)
        user_id, session_id, _ = admin.open_session(database_url, tenant_id, user_email(tenant_id, role),
                                                    lifetime=timedelta(hours=2))
        _TOKENS[(tenant_id, role)] = mint_access_token(JWT_SECRET, tenant_id=tenant_id, user_id=user_id,
                                                       session_id=session_id, role=role, minutes=120)


# Tenants created by the current test module, retired when it ends (tests/conftest.py): every live
# tenant runs actors, and a session that kept hundreds would slow the later modules down.
_CREATED: list[tuple[Any, str]] = []


async def retire_created_tenants() -> None:
    """Deactivate the tenants this module created and stop their actors."""
    if not _CREATED:
        return
    stack = _CREATED[0][0]
    tenants = [t for _, t in _CREATED]
    _CREATED.clear()
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await conn.execute("UPDATE tenants SET active = false WHERE id = ANY($1)", tenants)
    finally:
        await conn.close()
    await stack.supervisor.start.remote()  # syncs with the database: stops the inactive tenants' actors


def new_tenant_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_tenant(stack: Any, tenant_id: str, equipment: list[tuple[str, str]],
                        rules: list[dict[str, Any]] | None = None) -> None:
    """A tenant with equipment [(id, type)] and extra alert rules, with its actor running."""
    await _insert_tenant(stack.settings.database_url, tenant_id, [], rules)
    await stack.register_tenant(tenant_id, tenant_id, [(e, t, e) for e, t in equipment])
    _CREATED.append((stack, tenant_id))
    await asyncio.to_thread(add_users, stack.settings.database_url, tenant_id)


def snapshot(equipment_id: str, ts: datetime, values: dict[str, float]) -> bytes:
    return json.dumps({"equipment_id": equipment_id, "ts": ts.isoformat(), "values": values}).encode()


async def publish(nats_url: str, tenant_id: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish (equipment_id, body) pairs to JetStream and wait for every PubAck."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        futures = [await js.publish_async(tele_subject(tenant_id, e), body) for e, body in messages]
        await asyncio.gather(*futures)
    finally:
        await nc.close()


async def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def housekeeping_round(stack: Any, tenant_id: str) -> int:
    """Run one of the tenant's housekeeping rounds now (escalation, ended silences and shelves) and wait for it;
    returns how many alert events it published. What a test that waited "longer than a round" needs, without
    sleeping through the actor's interval."""
    actor = await stack.supervisor.tenant.remote(tenant_id)
    return await actor.housekeep.remote()


async def settled(stack: Any, tenant_id: str, timeout: float = 60.0) -> None:
    """Wait until the tenant's actor has stored, learned and acked every message published to it so far: then
    "nothing more happened" can be checked (what tests used to sleep a few seconds for)."""
    async def idle() -> bool:
        actor = await stack.supervisor.tenant.remote(tenant_id)
        return actor is not None and await actor.settled.remote()

    await wait_for(idle, timeout=timeout, interval=0.1)


def normal_series(start: datetime, n: int, step: timedelta = timedelta(seconds=1)) -> list[tuple[datetime, float]]:
    """A gently noisy series around 800 (deterministic)."""
    return [(start + i * step, 800.0 + ((i * 37) % 11 - 5) * 0.8) for i in range(n)]


def metrics_auth(stack: Any) -> dict[str, str]:
    """The bearer header /metrics asks for (its token is generated into the stack's data dir)."""
    return {"Authorization": f"Bearer {stack.settings.secret('metrics_token')}"}


def now_utc() -> datetime:
    return datetime.now(UTC)


async def seed_tenant(database_url: str, tenant_id: str, equipment: list[tuple[str, str]],
                      rules: list[dict[str, Any]] | None = None) -> None:
    """A tenant with equipment [(id, type)], extra alert rules and a user per role, in the database alone: what the
    fast tier's service tests start from (no actor runs for it; `create_tenant` is the stack's version)."""
    await _insert_tenant(database_url, tenant_id, equipment, rules)
    await asyncio.to_thread(add_users, database_url, tenant_id)


async def seeded_tenant(database_url: str, prefix: str, equipment: list[tuple[str, str]], *,
                        users: bool = True) -> str:
    """A new tenant (`new_tenant_id`) seeded in the database alone (`seed_tenant`; without its users when a test
    needs none): the fast tier's modules' ``tenant`` fixture. Returns its id."""
    tenant_id = new_tenant_id(prefix)
    if users:
        await seed_tenant(database_url, tenant_id, equipment)
    else:
        await _insert_tenant(database_url, tenant_id, equipment, None)
    return tenant_id


async def _insert_tenant(database_url: str, tenant_id: str, equipment: list[tuple[str, str]],
                         rules: list[dict[str, Any]] | None) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant_id)
        await conn.executemany("INSERT INTO equipment (tenant_id, id, type, name) VALUES ($1, $2, $3, $2)",
                               [(tenant_id, e, t) for e, t in equipment])
        for rule in rules or []:
            await conn.execute(
                "INSERT INTO alert_rules (tenant_id, id, equipment_id, kind, params) VALUES ($1, $2, $3, $4, $5)",
                tenant_id, rule["id"], rule.get("equipment_id"), rule["kind"], json.dumps(rule["params"]))
    finally:
        await conn.close()
