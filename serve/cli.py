"""The ``wellpulse`` command: up, simulate, backtest, token, migrate, backup, restore, keys."""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from config import Settings, load_settings
from config.secrets import ROTATING_SECRETS, WeakSecret, resolve_secrets, rotate_secret
from serve.backtest import add_backtest_arguments, backtest_command
from serve.cli_nats import add_nats_commands
from serve.cli_tenant import PASSWORD_ENV, add_tenant_commands, mint_user_token, password_hashing
from serve.simulator import add_simulate_arguments, demo_fleet, run_simulation, simulate_command
from store.nats_auth import redact_url

log = logging.getLogger("wellpulse")
DEMO_TENANT = "demo"
DEMO_EQUIPMENT = 20
DEMO_ADMIN = "admin@demo.example"
DEMO_OPERATOR = "operator@demo.example"


def _up(args: argparse.Namespace) -> int:
    from serve.runtime import Stack

    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    settings = load_settings(**overrides)
    stack = Stack(settings)
    stop = asyncio.Event()
    # Until the event loop takes over the signals, a SIGTERM must still unwind through
    # ``finally`` so the servers started so far are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        signal.signal(signal.SIGTERM, _interrupt)  # ray.init may have installed its own
        settings = stack.settings
        demo_login = None
        if args.demo:
            fleet = demo_fleet(DEMO_EQUIPMENT)
            stack.add_tenant(DEMO_TENANT, "Demo Oil & Gas",
                             [(e.equipment_id, e.equipment_type.value, e.equipment_id) for e in fleet])
            demo_login = _demo_users(settings)
        _print_banner(stack, demo_login=demo_login, secrets_shown=not args.no_secrets_in_banner)
        asyncio.run(_serve_until_signal(stack, stop, demo=args.demo, rate=args.rate))
    except KeyboardInterrupt:
        pass
    except (RuntimeError, WeakSecret) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        log.info("shutting down")
        stack.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo_users(settings: object) -> tuple[str, str]:
    """An admin and an operator for the demo tenant; the password is printed once (demo only)."""
    from store.admin import ensure_user

    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)
    hashed = password_hashing(settings).hash(password)  # type: ignore[arg-type]
    for email, role in ((DEMO_ADMIN, "admin"), (DEMO_OPERATOR, "operator")):
        ensure_user(settings.database_url, DEMO_TENANT, email, role=role, password_hash=hashed)  # type: ignore[attr-defined]
    return DEMO_OPERATOR, password


def _print_banner(stack: "object", *, demo_login: tuple[str, str] | None, secrets_shown: bool = True) -> None:
    settings = stack.settings  # type: ignore[attr-defined]
    migration = stack.migration  # type: ignore[attr-defined]
    lines = [
        "WellPulse is up.",
        f"  API        {stack.base_url}/v1  (docs {stack.base_url}/docs)",  # type: ignore[attr-defined]
        f"  health     {stack.base_url}/health   metrics {stack.base_url}/metrics",  # type: ignore[attr-defined]
        f"  alerts WS  ws://{settings.host}:{settings.port}/v1/alerts/ws",
        f"  storage    {migration.flavour if migration else '?'}",
        f"  NATS       {redact_url(settings.nats_url)}  (feed credentials: wellpulse nats feed-credentials TENANT)",
    ]
    if demo_login and not secrets_shown:  # logs that others read (docker compose): no password, no token
        lines += [
            f"  demo       tenant '{DEMO_TENANT}', {DEMO_EQUIPMENT} pieces of equipment, simulated feed with faults",
            f"  sign-in    {DEMO_ADMIN} (admin) or {DEMO_OPERATOR} (operator), password from {PASSWORD_ENV}",
            f"  a token:   wellpulse token --tenant {DEMO_TENANT} --email {DEMO_OPERATOR}",
        ]
    elif demo_login:
        token = mint_user_token(settings, settings.database_url, DEMO_TENANT, demo_login[0], 12 * 60)
        lines += [
            f"  demo       tenant '{DEMO_TENANT}', {DEMO_EQUIPMENT} pieces of equipment, simulated feed with faults",
            f"  sign-in    {DEMO_ADMIN} (admin) or {DEMO_OPERATOR} (operator), password {demo_login[1]}",
            f"  operator token (12 h):\n{token}",
            f"  try: curl -H 'Authorization: Bearer $TOKEN' {stack.base_url}/v1/alerts",  # type: ignore[attr-defined]
        ]
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


async def _serve_until_signal(stack: "object", stop: asyncio.Event, *, demo: bool, rate: float) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Both, handled here: a driver that only sleeps ignored SIGINT and kept Ray running.
        loop.add_signal_handler(sig, stop.set)
    feed = None
    if demo:
        settings = stack.settings  # type: ignore[attr-defined]
        feed = asyncio.create_task(run_simulation(
            settings.nats_url, DEMO_TENANT, equipment=DEMO_EQUIPMENT, rate=rate, fault_every=30.0, stop=stop,
            ensure_stream=False, truth_path=Path(settings.data_dir) / "demo-truth.jsonl"))
    await stop.wait()
    if feed is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(feed, 10)


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


def _rotate_key(field: str, variable: str):
    def run(args: argparse.Namespace) -> int:
        settings = load_settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
        if getattr(settings, field) is not None:
            print(f"error: {variable} is configured: rotate it there (its old value goes to "
                  f"{ROTATING_SECRETS[field][1]}), then restart", file=sys.stderr)
            return 2
        kid = rotate_secret(Path(settings.data_dir), field)
        print(json.dumps({"rotated": field, "kid": kid, "data_dir": str(settings.data_dir),
                          "next": "restart wellpulse up: it uses the new key and still accepts the previous one"}))
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wellpulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start everything (embedded servers when no URLs are configured)")
    up.add_argument("--demo", action="store_true", help="create tenant 'demo' with equipment and a simulated feed")
    up.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="HTTP port (default 8000)")
    up.add_argument("--data-dir", help="where embedded servers keep data (default .wellpulse)")
    up.add_argument("--rate", type=float, default=200.0, help="demo feed: sensor values per second")
    up.add_argument("--no-secrets-in-banner", action="store_true",
                    help="print neither the demo password nor a token (for logs that others read)")
    up.set_defaults(func=_up)

    sim = sub.add_parser("simulate", help="publish realistic SCADA readings with injected faults")
    add_simulate_arguments(sim)
    sim.set_defaults(func=simulate_command)

    backtest = sub.add_parser("backtest", help="replay a CSV through the models, no look-ahead")
    add_backtest_arguments(backtest)
    backtest.set_defaults(func=backtest_command)

    add_tenant_commands(sub)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url")
    mig.set_defaults(func=_migrate)
    add_nats_commands(sub)

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

    keys = sub.add_parser("keys", help="rotate the generated keys in the data dir")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, field, variable, what in (
        ("rotate", "jwt_secret", "WELLPULSE_JWT_SECRET",
         "new access-token signing key; tokens of the old one stay valid until they expire"),
        ("rotate-data-key", "data_key", "WELLPULSE_DATA_KEY",
         "new key for secrets at rest; the next start re-encrypts what the old one sealed"),
    ):
        cmd = keys_sub.add_parser(name, help=what)
        cmd.add_argument("--data-dir", help="data dir of the wellpulse up to rotate (default .wellpulse)")
        cmd.set_defaults(func=_rotate_key(field, variable))
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
