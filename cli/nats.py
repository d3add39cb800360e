"""``wellpulse nats ...``: tenants' feed credentials (NATS and MQTT) and the NATS authorization and MQTT blocks.

URLs come from ``WELLPULSE_NATS_URL`` / ``WELLPULSE_DATABASE_URL`` or, when those are unset, from the
``runtime.json`` a running ``wellpulse up`` keeps in its data dir. The feed secret comes from
``WELLPULSE_NATS_FEED_SECRET`` or ``<data_dir>/nats/feed.secret`` (the embedded server's).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from schema.ids import InvalidIdentifier, check_tenant_id
from schema.subjects import tele_tenant_filter
from store import nats_auth
from store import tenants as tenant_store

NATS_DATA_SUBDIR = "nats"  # where serve.runtime.Stack puts the embedded NATS


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(**overrides)


def _runtime(settings: Settings) -> dict[str, Any]:
    from serve.runtime import load_runtime_urls

    return load_runtime_urls(settings.data_dir)


def _secrets_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / NATS_DATA_SUBDIR


def _feed_secret(settings: Settings) -> str:
    configured = settings.nats_feed_secret.get_secret_value() if settings.nats_feed_secret else None
    return nats_auth.feed_secret(_secrets_dir(settings), configured)


def _active_tenants(database_url: str | None) -> list[str] | None:
    """The active tenants, or ``None`` when the database cannot be asked."""
    if not database_url:
        return None
    import psycopg

    try:
        return tenant_store.list_active_tenants_sync(database_url)
    except psycopg.Error as exc:
        print(f"warning: cannot read tenants from the database: {exc}".rstrip(), file=sys.stderr)
        return None


def feed_credentials_command(args: argparse.Namespace) -> int:
    try:
        tenant = check_tenant_id(args.tenant)
    except InvalidIdentifier as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    runtime = _runtime(settings)
    server_url = settings.nats_url or runtime.get("nats_url")
    user = nats_auth.feed_user(tenant)
    password = nats_auth.feed_password(_feed_secret(settings), tenant)
    active = _active_tenants(settings.database_url or runtime.get("database_url"))
    if active is not None and tenant not in active:
        print(f"warning: tenant {tenant!r} is not active: these credentials are refused until it is",
              file=sys.stderr)
    if server_url:
        url = nats_auth.with_credentials(server_url, user, password)
    else:
        url = None
        print("warning: no NATS URL known (set WELLPULSE_NATS_URL, or run `wellpulse up` with this data dir)",
              file=sys.stderr)
    mqtt_port = int(runtime.get("mqtt_port") or settings.mqtt_port)
    info = {
        "tenant": tenant,
        "user": user,
        "password": password,
        "url": url,
        "mqtt_url": nats_auth.mqtt_url(server_url, user, password, mqtt_port),
        "publish": tele_tenant_filter(tenant),
        "inbox_prefix": nats_auth.feed_inbox_prefix(tenant),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    if args.url:
        if url is None:
            return 1
        print(url)
        return 0
    print(f"tenant        {tenant}\n"
          f"user          {user}\n"
          f"password      {password}\n"
          f"url           {url or '?'}\n"
          f"mqtt          {info['mqtt_url'] or '?'}  (MQTT 3.1.1/5, QoS 1: WellPulse JSON to tele/{tenant}/<id>)\n"
          f"publish to    {info['publish']}  (nothing else)\n"
          f"inbox prefix  {info['inbox_prefix']}  (for JetStream PubAcks, e.g. nats-py "
          f"connect(..., inbox_prefix={info['inbox_prefix']!r}))")
    return 0


def config_command(args: argparse.Namespace) -> int:
    """Print the ``authorization`` block for a NATS server the operator runs."""
    settings = _settings(args)
    runtime = _runtime(settings)
    try:
        tenants = [check_tenant_id(t) for t in args.tenant] if args.tenant else None
    except InvalidIdentifier as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if tenants is None:
        tenants = _active_tenants(settings.database_url or runtime.get("database_url"))
        if tenants is None:
            print("error: no database to read tenants from: set WELLPULSE_DATABASE_URL or pass --tenant",
                  file=sys.stderr)
            return 1
    creds = nats_auth.url_credentials(settings.nats_url or runtime.get("nats_url"))
    if creds is None:
        creds = (nats_auth.APP_USER, nats_auth.app_password(_secrets_dir(settings)))
        print(f"note: the app must then connect as {creds[0]}: set WELLPULSE_NATS_URL=nats://{creds[0]}:"
              f"<password from {_secrets_dir(settings) / nats_auth.APP_PASSWORD_FILE}>@HOST:PORT", file=sys.stderr)
    sys.stdout.write(nats_auth.authorization_block(creds[0], creds[1], _feed_secret(settings), tenants))
    if not args.no_mqtt:
        # NATS's MQTT listener: devices speaking MQTT publish with the same feed users (needs JetStream on).
        sys.stdout.write(nats_auth.server_name_line(args.server_name)
                         + nats_auth.mqtt_block(args.mqtt_port or settings.mqtt_port))
    return 0


def add_nats_commands(subparsers: Any) -> None:
    nats = subparsers.add_parser("nats", help="NATS credentials: tenants' feed users, the authorization block")
    sub = nats.add_subparsers(dest="nats_command", required=True)

    feed = sub.add_parser("feed-credentials", help="print the NATS user, password and URL of a tenant's feed")
    feed.add_argument("tenant")
    feed.add_argument("--data-dir", help="data dir of `wellpulse up` (default .wellpulse)")
    out = feed.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object")
    out.add_argument("--url", action="store_true", help="only the URL (e.g. for `wellpulse simulate --nats`)")
    feed.set_defaults(func=feed_credentials_command)

    conf = sub.add_parser("config", help="print the authorization and MQTT blocks for a NATS server you run yourself")
    conf.add_argument("--tenant", action="append", help="tenant (repeatable; default: the active ones in the DB)")
    conf.add_argument("--data-dir", help="data dir of `wellpulse up` (default .wellpulse)")
    conf.add_argument("--mqtt-port", type=int, help="port of the MQTT listener (default WELLPULSE_MQTT_PORT, 1883)")
    conf.add_argument("--server-name", default="wellpulse",
                      help="server_name the MQTT listener needs (unique per server of a cluster)")
    conf.add_argument("--no-mqtt", action="store_true", help="leave the server_name and mqtt blocks out")
    conf.set_defaults(func=config_command)
