"""Identity tables: users, sessions and refresh tokens, API keys, one-time tokens, login throttling.

Every function takes a connection already inside a tenant transaction (`store.db.tenant_tx`),
so row-level security holds whatever the SQL says; the SQL filters on the tenant anyway.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from store.listing import FieldSpec, ResourceSpec

USER_COLUMNS = ("id, email, name, role, status, mfa_enabled, last_login_at, created_at, updated_at,"
                " deleted_at")
API_KEY_COLUMNS = "id, name, prefix, scopes, created_by, created_at, expires_at, last_used_at, revoked_at"
_ROLES = ("admin", "manager", "operator", "viewer")
USERS = ResourceSpec(
    name="users", from_sql="users", default_sort="created_at", deleted_column="deleted_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("email", "email"),
        FieldSpec("name", "name"),
        FieldSpec("role", "role", "enum", enum=_ROLES),
        FieldSpec("status", "status", "enum", enum=("invited", "active", "deactivated")),
        FieldSpec("mfa_enabled", "mfa_enabled", "bool"),
        FieldSpec("last_login_at", "last_login_at", "timestamp"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("updated_at", "updated_at", "timestamp"),
    ),
)
API_KEYS = ResourceSpec(
    name="api_keys", from_sql="api_keys", default_sort="-created_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("name", "name"),
        FieldSpec("prefix", "prefix"),
        FieldSpec("scopes", "scopes", filterable=False, sortable=False),
        FieldSpec("created_by", "created_by", "uuid"),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("expires_at", "expires_at", "timestamp"),
        FieldSpec("last_used_at", "last_used_at", "timestamp"),
        FieldSpec("revoked_at", "revoked_at", "timestamp"),
    ),
)


# ---------------------------------------------------------------- tenants


async def get_tenant(conn: asyncpg.Connection, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, active, settings, created_at FROM tenants WHERE id = $1 AND deleted_at IS NULL",
        tenant_id)


async def update_tenant(conn: asyncpg.Connection, tenant_id: str, *, name: str, settings: dict[str, Any],
                        ) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE tenants SET name = $2, settings = $3 WHERE id = $1 RETURNING id, name, active, settings, created_at",
        tenant_id, name, settings)


# ---------------------------------------------------------------- users


async def get_user(conn: asyncpg.Connection, tenant_id: str, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2::uuid AND deleted_at IS NULL",
        tenant_id, user_id)


async def get_user_for_login(conn: asyncpg.Connection, tenant_id: str, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT u.id, u.email, u.role, u.status, u.password_hash, u.mfa_enabled, u.mfa_secret, u.mfa_last_step"
        " FROM users u JOIN tenants t ON t.id = u.tenant_id"
        " WHERE u.tenant_id = $1 AND u.email = $2 AND u.deleted_at IS NULL AND t.active AND t.deleted_at IS NULL",
        tenant_id, email)


async def get_user_secrets(conn: asyncpg.Connection, tenant_id: str, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, email, role, status, password_hash, mfa_enabled, mfa_secret, mfa_last_step FROM users"
        " WHERE tenant_id = $1 AND id = $2::uuid AND deleted_at IS NULL FOR UPDATE",
        tenant_id, user_id)


async def create_user(conn: asyncpg.Connection, tenant_id: str, *, email: str, name: str, role: str,
                      status: str, password_hash: str | None, invited_by: str | None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO users (tenant_id, email, name, role, status, password_hash, invited_by,"
        f" password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7::uuid,"
        f" CASE WHEN $6::text IS NULL THEN NULL ELSE now() END) RETURNING {USER_COLUMNS}",
        tenant_id, email, name, role, status, password_hash, invited_by)


async def update_user(conn: asyncpg.Connection, tenant_id: str, user_id: str, **changes: Any,
                      ) -> asyncpg.Record | None:
    """Set the given columns (names are ours, never the caller's) and ``updated_at``."""
    allowed = {"name", "role", "status", "password_hash", "mfa_secret", "mfa_enabled", "mfa_last_step",
               "last_login_at", "password_changed_at", "deleted_at"}
    if not changes or not set(changes) <= allowed:
        raise ValueError(f"cannot update {sorted(set(changes) - allowed)}")
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(changes, start=3))
    return await conn.fetchrow(
        f"UPDATE users SET {sets}, updated_at = now() WHERE tenant_id = $1 AND id = $2::uuid"
        f" AND deleted_at IS NULL RETURNING {USER_COLUMNS}",
        tenant_id, user_id, *changes.values())


async def claim_totp_step(conn: asyncpg.Connection, tenant_id: str, user_id: str, step: int) -> bool:
    """Record `step` as the last TOTP step used, only if it is newer: one code signs in once, even when two
    sign-ins with it run at the same moment (the row update is the arbiter)."""
    row = await conn.fetchval(
        "UPDATE users SET mfa_last_step = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2::uuid"
        " AND (mfa_last_step IS NULL OR mfa_last_step < $3) RETURNING 1", tenant_id, user_id, step)
    return row is not None


async def count_active_admins(conn: asyncpg.Connection, tenant_id: str) -> int:
    """Active admins, their rows locked: two admins demoting each other at once cannot both win."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE tenant_id = $1 AND role = 'admin' AND status = 'active'"
        " AND deleted_at IS NULL ORDER BY id FOR UPDATE", tenant_id)
    return len(rows)


@dataclass(frozen=True)
class UserAuthState:
    """What every request checks: is the user still allowed in, with which role."""

    role: str
    active: bool
    email: str
    session_live: bool
    mfa_setup_only: bool


async def user_auth_state(conn: asyncpg.Connection, tenant_id: str, user_id: str, session_id: str,
                          ) -> UserAuthState | None:
    row = await conn.fetchrow(
        "SELECT u.role, u.status, u.email, u.deleted_at, s.revoked_at, s.expires_at, s.mfa_setup_only"
        " FROM users u JOIN auth_sessions s ON s.user_id = u.id AND s.tenant_id = u.tenant_id"
        " JOIN tenants t ON t.id = u.tenant_id"
        " WHERE u.tenant_id = $1 AND u.id = $2::uuid AND s.id = $3::uuid AND t.active AND t.deleted_at IS NULL",
        tenant_id, user_id, session_id)
    if row is None:
        return None
    return UserAuthState(
        role=row["role"], active=row["status"] == "active" and row["deleted_at"] is None, email=row["email"],
        session_live=row["revoked_at"] is None and row["expires_at"] > datetime.now(row["expires_at"].tzinfo),
        mfa_setup_only=row["mfa_setup_only"])


# ---------------------------------------------------------------- sessions and refresh tokens


async def create_session(conn: asyncpg.Connection, tenant_id: str, user_id: str, *, lifetime: timedelta,
                         ip: str | None, user_agent: str | None, mfa_setup_only: bool) -> str:
    return str(await conn.fetchval(
        "INSERT INTO auth_sessions (tenant_id, user_id, expires_at, ip, user_agent, mfa_setup_only)"
        " VALUES ($1, $2::uuid, now() + $3::interval, $4, $5, $6) RETURNING id",
        tenant_id, user_id, lifetime, ip, (user_agent or "")[:300], mfa_setup_only))


async def add_refresh_token(conn: asyncpg.Connection, tenant_id: str, session_id: str, digest: bytes,
                            expires_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, expires_at) VALUES ($1, $2, $3::uuid, $4)",
        tenant_id, digest, session_id, expires_at)


async def take_refresh_token(conn: asyncpg.Connection, tenant_id: str, digest: bytes) -> asyncpg.Record | None:
    """The token with its session and user, locked for the rotation."""
    return await conn.fetchrow(
        "SELECT r.token_hash, r.used_at, r.expires_at, s.id AS session_id, s.revoked_at, s.expires_at AS"
        " session_expires_at, s.mfa_setup_only, u.id AS user_id, u.role, u.status, u.deleted_at"
        " FROM refresh_tokens r JOIN auth_sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id"
        " WHERE r.tenant_id = $1 AND r.token_hash = $2 FOR UPDATE OF r, s",
        tenant_id, digest)


async def mark_refresh_used(conn: asyncpg.Connection, tenant_id: str, digest: bytes) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE tenant_id = $1 AND token_hash = $2",
                       tenant_id, digest)


async def touch_session(conn: asyncpg.Connection, tenant_id: str, session_id: str) -> None:
    await conn.execute("UPDATE auth_sessions SET last_used_at = now() WHERE tenant_id = $1 AND id = $2::uuid",
                       tenant_id, session_id)


async def revoke_session(conn: asyncpg.Connection, tenant_id: str, session_id: str, reason: str) -> bool:
    status = await conn.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $3"
        " WHERE tenant_id = $1 AND id = $2::uuid AND revoked_at IS NULL",
        tenant_id, session_id, reason)
    return status != "UPDATE 0"


async def revoke_user_sessions(conn: asyncpg.Connection, tenant_id: str, user_id: str, reason: str) -> list[str]:
    rows = await conn.fetch(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $3"
        " WHERE tenant_id = $1 AND user_id = $2::uuid AND revoked_at IS NULL RETURNING id",
        tenant_id, user_id, reason)
    return [str(r["id"]) for r in rows]


# ---------------------------------------------------------------- API keys


async def create_api_key(conn: asyncpg.Connection, tenant_id: str, *, name: str, prefix: str, digest: bytes,
                         scopes: Sequence[str], created_by: str | None, expires_at: datetime | None,
                         ) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, created_by, expires_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6::uuid, $7) RETURNING {API_KEY_COLUMNS}",
        tenant_id, name, prefix, digest, list(scopes), created_by, expires_at)


async def get_api_key(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2::uuid",
                               tenant_id, key_id)


async def revoke_api_key(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2::uuid"
        f" RETURNING {API_KEY_COLUMNS}, encode(key_hash, 'hex') AS key_hash_hex", tenant_id, key_id)


async def api_key_by_hash(conn: asyncpg.Connection, tenant_id: str, digest: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT k.id, k.scopes, k.revoked_at, k.expires_at, k.last_used_at FROM api_keys k"
        " JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.tenant_id = $1 AND k.key_hash = $2 AND t.active AND t.deleted_at IS NULL",
        tenant_id, digest)


async def touch_api_key(conn: asyncpg.Connection, tenant_id: str, key_id: str) -> None:
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE tenant_id = $1 AND id = $2::uuid",
                       tenant_id, key_id)


# ---------------------------------------------------------------- one-time tokens


async def add_one_time_token(conn: asyncpg.Connection, tenant_id: str, user_id: str, *, purpose: str,
                             digest: bytes, lifetime: timedelta) -> datetime:
    # Older unused tokens stay valid until they expire: voiding them would let anyone who knows an address
    # keep its owner from ever resetting (each request would kill the link just mailed). Requests are
    # throttled instead, and using any token of a purpose voids the others (`use_one_time_token`).
    return await conn.fetchval(
        "INSERT INTO one_time_tokens (tenant_id, token_hash, user_id, purpose, expires_at)"
        " VALUES ($1, $2, $3::uuid, $4, now() + $5::interval) RETURNING expires_at",
        tenant_id, digest, user_id, purpose, lifetime)


async def use_one_time_token(conn: asyncpg.Connection, tenant_id: str, digest: bytes, purpose: str,
                             ) -> str | None:
    """Consume a live token; returns its user id, or None (unknown, used, expired or wrong purpose)."""
    user_id = await conn.fetchval(
        "UPDATE one_time_tokens SET used_at = now() WHERE tenant_id = $1 AND token_hash = $2 AND purpose = $3"
        " AND used_at IS NULL AND expires_at > now() RETURNING user_id",
        tenant_id, digest, purpose)
    if user_id is None:
        return None
    # One use per purpose: the other links still in the mailbox die with this one.
    await conn.execute(
        "UPDATE one_time_tokens SET used_at = now() WHERE tenant_id = $1 AND user_id = $2 AND purpose = $3"
        " AND used_at IS NULL", tenant_id, user_id, purpose)
    return str(user_id)


# ---------------------------------------------------------------- login throttling


@dataclass(frozen=True)
class Throttle:
    failures: int
    locked_until: datetime | None
    refused: bool = False  # the key was locked: this attempt was neither counted nor may it be checked


async def count_attempt(pool: asyncpg.Pool, key: bytes, *, slowdown_after: int, lock_after: int,
                        lock_seconds: int, forget_after: timedelta) -> Throttle:
    """Count one attempt BEFORE its credential is checked; ``refused`` (with the lock's end) when locked.

    Counting first and in one statement is what makes the limit hold under parallel guesses: the row
    lock orders them, and the one past the limit sees the lock the others set. Past ``slowdown_after``
    each attempt locks the key for twice as long as the one before, at ``lock_after`` for `lock_seconds`.
    A success forgets the attempt (`forget_attempt` / `clear_login_failures`).
    """
    # The new count, and the lock it earns, in the one statement that takes the row lock: a parallel attempt
    # waits for it, then sees the lock (PostgreSQL re-checks the WHERE on the updated row).
    count = "CASE WHEN t.last_failure < now() - $2::interval THEN 1 ELSE t.failures + 1 END"
    row = await pool.fetchrow(
        "INSERT INTO login_throttle AS t (key, failures, last_failure) VALUES ($1, 1, now())"
        " ON CONFLICT (key) DO UPDATE SET"
        f"  failures = {count}, last_failure = now(),"
        f"  locked_until = CASE WHEN {count} >= $4 THEN now() + make_interval(secs => $5)"
        f"   WHEN {count} > $3 THEN now() + make_interval(secs => least(2 ^ ({count} - $3 - 1), $5))"
        "   ELSE NULL END"
        " WHERE t.locked_until IS NULL OR t.locked_until <= now()"
        " RETURNING failures, locked_until",
        key, forget_after, slowdown_after, lock_after, float(lock_seconds))
    if row is None:
        locked_until = await pool.fetchval("SELECT locked_until FROM login_throttle WHERE key = $1", key)
        return Throttle(0, locked_until, refused=True)
    # A fresh row (the first attempt) never locks: slowdown_after >= 1 and lock_after >= 2 (config).
    return Throttle(row["failures"], row["locked_until"])


async def forget_attempt(pool: asyncpg.Pool, key: bytes) -> None:
    """A counted attempt that succeeded (a shared address keeps only its failures)."""
    await pool.execute("UPDATE login_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1", key)


async def clear_login_failures(pool: asyncpg.Pool, key: bytes) -> None:
    await pool.execute("DELETE FROM login_throttle WHERE key = $1", key)
