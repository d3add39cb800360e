"""``wellpulse up``: start everything (embedded servers when no URLs are configured), and with ``--demo`` a demo
tenant, its users and a simulated feed; stop it all on SIGINT or SIGTERM."""

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cli.tenant import PASSWORD_ENV, mint_user_token
from config import load_settings
from config.secrets import WeakSecret
from serve.security import password_hashing
from sim import demo_fleet, run_simulation
from store.nats_auth import redact_url

__all__ = ["add_up_command"]

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
    if args.ray_address:
        os.environ["RAY_ADDRESS"] = args.ray_address  # what Ray itself reads, here from the flag
    settings = load_settings(**overrides)
    began = time.monotonic()
    print("Starting WellPulse:", flush=True)
    # Our own lines, each part as it comes up; Ray's and the actors' logs stay in Ray's files (the banner says where).
    stack = Stack(settings, log_to_driver=False, progress=lambda line: print(f"  {line}", flush=True))
    stop = asyncio.Event()
    sink = None
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
            sink = _demo_mail(settings)
        mail = None if sink is None else (
            f"  mail       alert emails land in {sink.folder} (an SMTP sink on 127.0.0.1:{sink.port})")
        _print_banner(stack, demo_login=demo_login, secrets_shown=not args.no_secrets_in_banner, mail=mail,
                      seconds=time.monotonic() - began)
        asyncio.run(_serve_until_signal(stack, stop, demo=args.demo, rate=args.rate))
    except KeyboardInterrupt:
        pass
    except (RuntimeError, WeakSecret) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        log.info("shutting down")
        stack.stop()
        if sink is not None:
            sink.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo_users(settings: object) -> tuple[str, str]:
    """An admin and an operator for the demo tenant; the password is printed once (demo only)."""
    from store.admin import ensure_user

    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)
    hashed = password_hashing(settings).hash(password)  # type: ignore[arg-type]
    for email, role in ((DEMO_ADMIN, "admin"), (DEMO_OPERATOR, "operator")):
        ensure_user(settings.database_url, DEMO_TENANT, email, role=role, password_hash=hashed,  # type: ignore[attr-defined]
                    reset_password=True)  # the password printed now is the one that works
    return DEMO_OPERATOR, password


def _demo_mail(settings: Any) -> Any:
    """A local SMTP sink writing under the data dir, and the demo tenant's email channel to it."""
    from store.admin import ensure_email_channel
    from store.mailsink import MailSink

    sink = MailSink(Path(settings.data_dir) / "demo-mail")
    sink.start()
    ensure_email_channel(settings.database_url, DEMO_TENANT, name="demo mail sink", smtp_port=sink.port,
                         to=DEMO_OPERATOR)
    return sink


def _print_banner(stack: "object", *, demo_login: tuple[str, str] | None, secrets_shown: bool = True,
                  mail: str | None = None, seconds: float | None = None) -> None:
    settings = stack.settings  # type: ignore[attr-defined]
    migration = stack.migration  # type: ignore[attr-defined]
    lines = [
        f"WellPulse is up (in {seconds:.1f} s)." if seconds is not None else "WellPulse is up.",
        f"  console    {stack.base_url}/  (operator console: sign in with a tenant, email and password)",  # type: ignore[attr-defined]
        f"  API        {stack.base_url}/v1  (docs {stack.base_url}/docs)",  # type: ignore[attr-defined]
        f"  health     {stack.base_url}/health   metrics {stack.base_url}/metrics",  # type: ignore[attr-defined]
        f"  alerts WS  ws://{settings.host}:{settings.port}/v1/alerts/ws",
        f"  storage    {migration.flavour if migration else '?'}",
        f"  NATS       {redact_url(settings.nats_url)}  (feed credentials: wellpulse nats feed-credentials TENANT)",
    ]
    join = getattr(stack, "join_address", None)
    if join:
        token = f"{settings.data_dir}/secrets/ray_auth_token"
        lines.append(f"  cluster    join from another machine: wellpulse node --address {join}"
                     f" --node-ip <its address> --auth-token-file <a copy of {token}>")
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
    if mail:
        lines.append(mail)
    ray_logs = getattr(stack, "ray_logs", None)
    if ray_logs is not None:
        lines.append(f"  logs       Ray's and the actors' under {ray_logs}")
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


def add_up_command(sub: Any) -> None:
    up = sub.add_parser("up", help="start everything (embedded servers when no URLs are configured)")
    up.add_argument("--demo", action="store_true", help="create tenant 'demo' with equipment and a simulated feed")
    up.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="HTTP port (default 8000)")
    up.add_argument("--data-dir", help="where embedded servers keep data (default .wellpulse)")
    up.add_argument("--ray-address", help="run on an existing Ray cluster, HOST:PORT (as RAY_ADDRESS)")
    up.add_argument("--rate", type=float, default=200.0, help="demo feed: sensor values per second")
    up.add_argument("--no-secrets-in-banner", action="store_true",
                    help="print neither the demo password nor a token (for logs that others read)")
    up.set_defaults(func=_up)
