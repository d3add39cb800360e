"""Installation administration with the owning database role (psycopg): tenants and their
first users, from the command line. The app's own role cannot do these (it sees one tenant).
"""

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from config.secrets import SecretBox
from schema.ids import check_tenant_id

log = logging.getLogger(__name__)


class AdminError(Exception):
    """Something an operator must fix (the message says what)."""


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    active: bool
    users: int
    created_at: Any


def _audit(conn: psycopg.Connection, tenant_id: str, action: str, entity_type: str, entity_id: str | None,
           new: dict[str, Any] | None, actor: str = "wellpulse-cli") -> None:
    conn.execute(
        "INSERT INTO audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, new_values)"
        " VALUES (%s, 'cli', %s, %s, %s, %s, %s)",
        (tenant_id, actor, action, entity_type, entity_id, json.dumps(new) if new is not None else None))


def create_tenant(database_url: str, tenant_id: str, *, name: str, admin_email: str, password_hash: str) -> str:
    """A new tenant and its first admin (active); returns the admin's user id."""
    check_tenant_id(tenant_id)
    with psycopg.connect(database_url) as conn, conn.transaction():
        if conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)).fetchone():
            raise AdminError(f"tenant {tenant_id!r} exists")
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (tenant_id, name))
        user_id = str(conn.execute(
            "INSERT INTO users (tenant_id, email, name, role, status, password_hash, password_changed_at)"
            " VALUES (%s, %s, '', 'admin', 'active', %s, now()) RETURNING id",
            (tenant_id, admin_email.lower(), password_hash)).fetchone()[0])  # type: ignore[index]  # RETURNING gives one row
        _audit(conn, tenant_id, "create", "tenant", tenant_id, {"name": name})
        _audit(conn, tenant_id, "create", "user", user_id, {"email": admin_email.lower(), "role": "admin"})
    return user_id


def list_tenants(database_url: str) -> list[TenantRow]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT t.id, t.name, t.active, count(u.id) FILTER (WHERE u.deleted_at IS NULL), t.created_at"
            " FROM tenants t LEFT JOIN users u ON u.tenant_id = t.id WHERE t.deleted_at IS NULL"
            " GROUP BY t.id ORDER BY t.id").fetchall()
    return [TenantRow(*r) for r in rows]


def set_tenant_active(database_url: str, tenant_id: str, active: bool) -> None:
    """Deactivating stops the tenant's actors (the supervisor notices) and refuses its sign-ins and keys."""
    check_tenant_id(tenant_id)
    with psycopg.connect(database_url) as conn, conn.transaction():
        cur = conn.execute("UPDATE tenants SET active = %s WHERE id = %s AND deleted_at IS NULL",
                           (active, tenant_id))
        if cur.rowcount == 0:
            raise AdminError(f"no tenant {tenant_id!r}")
        if not active:
            conn.execute("UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'tenant deactivated'"
                         " WHERE tenant_id = %s AND revoked_at IS NULL", (tenant_id,))
        _audit(conn, tenant_id, "activate" if active else "deactivate", "tenant", tenant_id, {"active": active})


def ensure_user(database_url: str, tenant_id: str, email: str, *, role: str, password_hash: str | None,
                name: str = "", reset_password: bool = False) -> str:
    """Create the user if the address is free (demo and test set-up); returns its id either way.

    ``reset_password``: an existing user takes `password_hash` too (the demo prints a new password each start).
    """
    with psycopg.connect(database_url) as conn, conn.transaction():
        row = conn.execute("SELECT id FROM users WHERE tenant_id = %s AND email = %s AND deleted_at IS NULL",
                           (tenant_id, email.lower())).fetchone()
        if row and reset_password and password_hash is not None:
            conn.execute("UPDATE users SET password_hash = %s WHERE tenant_id = %s AND id = %s",
                         (password_hash, tenant_id, row[0]))
            _audit(conn, tenant_id, "reset_password", "user", str(row[0]), {"via": "wellpulse up --demo"})
        if row:
            return str(row[0])
        user_id = str(conn.execute(
            "INSERT INTO users (tenant_id, email, name, role, status, password_hash) VALUES"
            " (%s, %s, %s, %s, 'active', %s) RETURNING id",
            (tenant_id, email.lower(), name, role, password_hash)).fetchone()[0])  # type: ignore[index]  # RETURNING gives one row
        _audit(conn, tenant_id, "create", "user", user_id, {"email": email.lower(), "role": role})
        return user_id


def ensure_email_channel(database_url: str, tenant_id: str, *, name: str, smtp_port: int, to: str,
                         created_by: str = "demo") -> None:
    """An email channel to a local SMTP sink (the demo's, `store.mailsink`), if the tenant has none of that name."""
    config = {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "security": "none",
              "from_address": "wellpulse@localhost", "to": [to]}
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO notification_channels (tenant_id, name, kind, min_severity, config, created_by)"
            " SELECT %s, %s, 'email', 'warning', %s, %s WHERE NOT EXISTS (SELECT 1 FROM notification_channels"
            " WHERE tenant_id = %s AND lower(name) = lower(%s) AND deleted_at IS NULL)",
            (tenant_id, name, json.dumps(config), created_by, tenant_id, name))
        conn.execute("UPDATE notification_channels SET config = %s WHERE tenant_id = %s AND lower(name) = lower(%s)"
                     " AND deleted_at IS NULL", (json.dumps(config), tenant_id, name))


def open_session(database_url: str, tenant_id: str, email: str, *, lifetime: timedelta) -> tuple[str, str, str]:
    """A session for an existing active user, for `wellpulse token`: (user id, session id, role)."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        row = conn.execute(
            "SELECT id, role FROM users WHERE tenant_id = %s AND email = %s AND status = 'active'"
            " AND deleted_at IS NULL", (tenant_id, email.lower())).fetchone()
        if row is None:
            raise AdminError(f"no active user {email!r} in tenant {tenant_id!r}")
        session_id = conn.execute(
            "INSERT INTO auth_sessions (tenant_id, user_id, expires_at, user_agent) VALUES"
            " (%s, %s, now() + %s, 'wellpulse-cli') RETURNING id", (tenant_id, row[0], lifetime)).fetchone()[0]  # type: ignore[index]  # RETURNING gives one row
        _audit(conn, tenant_id, "login", "session", str(session_id), {"via": "cli token"})
    return str(row[0]), str(session_id), row[1]


# (what, table, key column, sealed column) of every secret sealed with the data key.
_SEALED = (("the TOTP seed of user", "users", "id", "mfa_secret"),
           ("the settings of notification channel", "notification_channels", "id", "secret"))


def reseal_secrets(database_url: str, box: SecretBox) -> int:
    """Seal every stored TOTP seed and notification channel secret with the current data key: plaintext ones
    (seeds from before encryption) and ones sealed by the previous key (after `wellpulse keys
    rotate-data-key`). Returns how many changed.

    Runs at start-up with the owning role (it sees every tenant); a secret no key opens is left alone and
    reported, never lost.
    """
    changed = 0
    with psycopg.connect(database_url) as conn, conn.transaction():
        for what, table, key, column in _SEALED:  # names of ours in the SQL text, never input
            rows = conn.execute(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL FOR UPDATE"
                                ).fetchall()
            for row_id, stored in rows:
                if box.is_current(stored):
                    continue
                try:
                    plain = box.open(stored) if box.is_sealed(stored) else stored
                except ValueError:
                    log.error("%s %s is sealed by an unknown data key; left as is", what, row_id)
                    continue
                conn.execute(f"UPDATE {table} SET {column} = %s WHERE {key} = %s",
                             (box.seal(plain), row_id))
                changed += 1
    return changed
