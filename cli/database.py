"""``wellpulse migrate``, ``backup`` and ``restore``: the app database, with the owner's role."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from config.secrets import resolve_secrets

__all__ = ["add_database_commands"]


def _migrate(args: argparse.Namespace) -> int:
    from store.migrate import migrate

    settings = resolve_secrets(load_settings())
    url = args.database_url or settings.database_url
    if not url:
        print("error: set WELLPULSE_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    result = migrate(url, retention_days=settings.retention_days, app_user=settings.app_db_user,
                     app_password=settings.secret("app_db_password"))
    print(json.dumps({"flavour": result.flavour, "applied": result.applied,
                      "timescaledb": result.timescale_version}))
    return 0


def _database_url_for_admin(args: argparse.Namespace, settings: Settings) -> tuple[str | None, object]:
    """The owner's URL of the app database: --database-url, else the environment, else a running ``up`` of the
    data dir; else the data dir's embedded server, started for the command (returned second, to stop)."""
    from serve.runtime import load_runtime_urls
    from store.embedded import EmbeddedPostgres

    if args.database_url:
        return args.database_url, None
    if settings.database_url:
        return settings.database_url, None
    running = load_runtime_urls(settings.data_dir).get("database_url")
    if running:
        return running, None
    pg_dir = Path(settings.data_dir) / "postgres"
    if not (pg_dir / "PG_VERSION").exists():
        return None, None
    server = EmbeddedPostgres(pg_dir).start()
    return server.url, server


def _backup(args: argparse.Namespace) -> int:
    from store.backup import BackupError, backup_database, restore_database

    settings = load_settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
    url, server = _database_url_for_admin(args, settings)
    if url is None:
        print("error: no database: set WELLPULSE_DATABASE_URL, pass --database-url, or --data-dir of a "
              "wellpulse up that ran before", file=sys.stderr)
        return 2
    try:
        if args.command == "backup":
            size = backup_database(url, Path(args.out))
            print(json.dumps({"backup": str(args.out), "bytes": size}))
        else:
            restore_database(url, Path(args.file))
            settings = resolve_secrets(settings)
            from store.migrate import migrate

            # The dump carries no grants: give the app role its rights again (and apply newer migrations).
            result = migrate(url, retention_days=settings.retention_days, app_user=settings.app_db_user,
                             app_password=settings.secret("app_db_password"))
            print(json.dumps({"restored": str(args.file), "migrations_applied": result.applied}))
    except (BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    return 0


def add_database_commands(sub: Any) -> None:
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url")
    mig.set_defaults(func=_migrate)
    for name, what in (("backup", "dump the app database (all tenants) to a file pg_restore reads"),
                       ("restore", "replace the app database's content with a backup (stop wellpulse first)")):
        cmd = sub.add_parser(name, help=what)
        if name == "backup":
            cmd.add_argument("--out", required=True, help="file to write (custom format)")
        else:
            cmd.add_argument("file", help="a file written by wellpulse backup")
        cmd.add_argument("--database-url", help="owner's or superuser's URL (default: the configured or embedded one)")
        cmd.add_argument("--data-dir", help="data dir of the embedded servers (default .wellpulse)")
        cmd.set_defaults(func=_backup)
