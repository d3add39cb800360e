"""The ``wellpulse`` command: up, simulate, token, migrate."""

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from config import load_settings
from schema.ids import InvalidIdentifier, check_tenant_id
from serve.auth import Role, mint_token
from serve.backtest import add_backtest_arguments, backtest_command
from serve.simulator import add_simulate_arguments, demo_fleet, run_simulation, simulate_command

log = logging.getLogger("wellpulse")
DEMO_TENANT = "demo"
DEMO_EQUIPMENT = 20


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
        if args.demo:
            fleet = demo_fleet(DEMO_EQUIPMENT)
            stack.add_tenant(DEMO_TENANT, "Demo Oil & Gas",
                             [(e.equipment_id, e.equipment_type.value, e.equipment_id) for e in fleet])
        _print_banner(stack, demo=args.demo)
        asyncio.run(_serve_until_signal(stack, stop, demo=args.demo, rate=args.rate))
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        log.info("shutting down")
        stack.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_banner(stack: "object", *, demo: bool) -> None:
    settings = stack.settings  # type: ignore[attr-defined]
    migration = stack.migration  # type: ignore[attr-defined]
    lines = [
        "WellPulse is up.",
        f"  API        {stack.base_url}/v1  (docs {stack.base_url}/docs)",  # type: ignore[attr-defined]
        f"  health     {stack.base_url}/health   metrics {stack.base_url}/metrics",  # type: ignore[attr-defined]
        f"  alerts WS  ws://{settings.host}:{settings.port}/v1/alerts/ws",
        f"  storage    {migration.flavour if migration else '?'}",
        f"  NATS       {settings.nats_url}",
    ]
    if demo:
        token = mint_token(settings.jwt_secret.get_secret_value(), tenant_id=DEMO_TENANT, role="operator",
                           subject="demo-operator", minutes=12 * 60, issuer=settings.jwt_issuer)
        lines += [
            f"  demo       tenant '{DEMO_TENANT}', {DEMO_EQUIPMENT} pieces of equipment, simulated feed with faults",
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
            ensure_stream=False))
    await stop.wait()
    if feed is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(feed, 10)


def _token(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        check_tenant_id(args.tenant)
    except InvalidIdentifier as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(mint_token(settings.jwt_secret.get_secret_value(), tenant_id=args.tenant, role=args.role,
                     subject=args.subject, minutes=args.minutes or settings.access_token_minutes,
                     issuer=settings.jwt_issuer, scopes=args.scope or None))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from store.migrate import migrate

    settings = load_settings()
    url = args.database_url or settings.database_url
    if not url:
        print("error: set WELLPULSE_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    result = migrate(url, retention_days=settings.retention_days)
    print(json.dumps({"flavour": result.flavour, "applied": result.applied,
                      "timescaledb": result.timescale_version}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wellpulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start everything (embedded servers when no URLs are configured)")
    up.add_argument("--demo", action="store_true", help="create tenant 'demo' with equipment and a simulated feed")
    up.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="HTTP port (default 8000)")
    up.add_argument("--data-dir", help="where embedded servers keep data (default .wellpulse)")
    up.add_argument("--rate", type=float, default=200.0, help="demo feed: sensor values per second")
    up.set_defaults(func=_up)

    sim = sub.add_parser("simulate", help="publish realistic SCADA readings with injected faults")
    add_simulate_arguments(sim)
    sim.set_defaults(func=simulate_command)

    backtest = sub.add_parser("backtest", help="replay a CSV through the models, no look-ahead")
    add_backtest_arguments(backtest)
    backtest.set_defaults(func=backtest_command)

    token = sub.add_parser("token", help="mint an access token (development and operations)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", choices=[r.value for r in Role], default="operator")
    token.add_argument("--subject", default="cli")
    token.add_argument("--minutes", type=int)
    token.add_argument("--scope", action="append", help="extra scope, e.g. telemetry:write (repeatable)")
    token.set_defaults(func=_token)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--database-url")
    mig.set_defaults(func=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
