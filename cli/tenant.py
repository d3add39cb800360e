"""``wellpulse tenant create|list|deactivate|activate`` and ``wellpulse token``: installation admin.

These use the owning database role (``WELLPULSE_DATABASE_URL``, or the running
``wellpulse up``'s embedded server found through its data dir). Passwords come from a
prompt or ``WELLPULSE_ADMIN_PASSWORD``, never from the command line (argv is visible to
every user of the machine and lands in shell history).
"""

import argparse
import asyncio
import getpass
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from config.secrets import WeakSecret, resolve_secrets
from schema.ids import InvalidIdentifier, check_tenant_id
from serve.auth import mint_access_token
from serve.security import WeakPassword, check_password_policy, password_hashing
from store import admin

PASSWORD_ENV = "WELLPULSE_ADMIN_PASSWORD"  # noqa: S105  a name or a file name, not a secret


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    # The same generated secrets (JWT key, ...) as the `wellpulse up` of this data dir.
    return resolve_secrets(load_settings(**overrides))


def admin_database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from serve.runtime import load_runtime_urls

    url = load_runtime_urls(settings.data_dir).get("database_url")
    if not url:
        raise admin.AdminError("set WELLPULSE_DATABASE_URL, or run this beside a running `wellpulse up` "
                               "(same --data-dir)")
    return url


def read_password(email: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise admin.AdminError(f"no terminal to prompt on: set {PASSWORD_ENV}")
        password = getpass.getpass(f"password for {email}: ")
        if getpass.getpass("again: ") != password:
            raise admin.AdminError("the passwords differ")
    try:
        check_password_policy(password, email=email)
    except WeakPassword as exc:
        raise admin.AdminError(f"password refused: {exc}") from exc
    return password


def _create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    check_tenant_id(args.tenant_id)
    password = read_password(args.admin_email)
    user_id = admin.create_tenant(admin_database_url(settings), args.tenant_id, name=args.name,
                                  admin_email=args.admin_email, password_hash=password_hashing(settings).hash(password))
    print(f"tenant {args.tenant_id} created; admin {args.admin_email} (user {user_id}) can sign in with "
          f"POST /v1/auth/login")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = admin.list_tenants(admin_database_url(_settings(args)))
    print(f"{'tenant':<24} {'active':<7} {'users':>5}  name")
    for row in rows:
        print(f"{row.id:<24} {'yes' if row.active else 'no':<7} {row.users:>5}  {row.name}")
    return 0


def _set_active(active: bool):
    def run(args: argparse.Namespace) -> int:
        settings = _settings(args)
        admin.set_tenant_active(admin_database_url(settings), check_tenant_id(args.tenant_id), active)
        print(f"tenant {args.tenant_id} {'activated' if active else 'deactivated'}")
        _announce(settings, args.tenant_id)
        return 0

    return run


def _announce(settings: Settings, tenant_id: str) -> None:
    """Tell the running replicas at once; without NATS they notice within the auth cache's lifetime."""
    from serve.runtime import load_runtime_urls
    from serve.sessions import announce_tenant_change

    url = settings.nats_url or load_runtime_urls(settings.data_dir).get("nats_url")
    if not url:
        print(f"note: no NATS URL known; running servers notice within {settings.auth_cache_seconds:.0f} s")
        return
    try:
        asyncio.run(announce_tenant_change(url, tenant_id))
    except Exception as exc:
        print(f"note: could not reach NATS ({type(exc).__name__}); running servers notice within "
              f"{settings.auth_cache_seconds:.0f} s")


def mint_user_token(settings: Settings, database_url: str, tenant_id: str, email: str, minutes: int) -> str:
    """A session and its access token for an existing user (operations, the demo)."""
    user_id, session_id, role = admin.open_session(database_url, tenant_id, email,
                                                   lifetime=timedelta(minutes=minutes))
    return mint_access_token(settings.secret("jwt_secret"), tenant_id=tenant_id, user_id=user_id,
                             session_id=session_id, role=role, minutes=minutes, issuer=settings.jwt_issuer)


def _token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    check_tenant_id(args.tenant)
    minutes = min(args.minutes or settings.access_token_minutes, 24 * 60)
    print(mint_user_token(settings, admin_database_url(settings), args.tenant, args.email, minutes))
    return 0


def guarded(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (admin.AdminError, InvalidIdentifier, WeakSecret) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def add_tenant_commands(sub: Any) -> None:
    tenant = sub.add_parser("tenant", help="create, list, deactivate tenants (installation admin)")
    tsub = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tsub.add_parser("create", help=f"a tenant and its first admin (password: prompt or ${PASSWORD_ENV})")
    create.add_argument("tenant_id")
    create.add_argument("--name", required=True)
    create.add_argument("--admin-email", required=True)
    create.set_defaults(func=guarded(_create))
    listing = tsub.add_parser("list", help="tenants with their user counts")
    listing.set_defaults(func=guarded(_list))
    for verb, active in (("deactivate", False), ("activate", True)):
        cmd = tsub.add_parser(verb, help=f"{verb} a tenant")
        cmd.add_argument("tenant_id")
        cmd.set_defaults(func=guarded(_set_active(active)))
    for cmd in tsub.choices.values():
        cmd.add_argument("--data-dir", help="data dir of a running `wellpulse up` (default .wellpulse)")

    token = sub.add_parser("token", help="open a session for an existing user and print its access token")
    token.add_argument("--tenant", required=True)
    token.add_argument("--email", required=True)
    token.add_argument("--minutes", type=int, help="lifetime (default: WELLPULSE_ACCESS_TOKEN_MINUTES, max 1440)")
    token.add_argument("--data-dir", help="data dir of a running `wellpulse up` (default .wellpulse)")
    token.set_defaults(func=guarded(_token))
