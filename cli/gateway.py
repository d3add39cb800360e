"""``wellpulse gateway modbus|opcua --config FILE``: run a field gateway (`gateway`) until SIGINT or SIGTERM.

The NATS URL is ``--nats``, else the config's ``[nats] url``, else ``$WELLPULSE_NATS_URL``; it should carry the
tenant's feed credentials (``wellpulse nats feed-credentials T``). ``--metrics-port`` serves the gateway's
Prometheus metrics. Exit codes: 0 stopped, 1 NATS unreachable, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from cli.simulate import stop_on_signals
from store.nats_auth import redact_url

__all__ = ["add_gateway_commands"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def add_gateway_commands(sub: Any) -> None:
    gateway = sub.add_parser("gateway", help="run a SCADA field gateway (Modbus TCP, OPC UA) that publishes to NATS")
    kinds = gateway.add_subparsers(dest="gateway", required=True)
    for kind, help_text in (("modbus", "poll Modbus TCP registers"), ("opcua", "subscribe to OPC UA nodes")):
        p = kinds.add_parser(kind, help=help_text)
        p.add_argument("--config", required=True, metavar="FILE", help="the gateway's TOML configuration")
        p.add_argument("--nats", default=None, metavar="URL",
                       help="NATS URL with feed credentials (default: the config's, else $WELLPULSE_NATS_URL)")
        p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve Prometheus metrics on this port")
        p.set_defaults(func=gateway_command)
    cert = kinds.add_parser("opcua-cert", help="write a self-signed OPC UA client certificate and key for "
                                               "[security] (the server's administrator then trusts it)")
    cert.add_argument("--certificate", required=True, metavar="FILE", help="where to write it (DER)")
    cert.add_argument("--private-key", required=True, metavar="FILE", help="where to write its key (PEM, mode 600)")
    cert.add_argument("--uri", default="urn:wellpulse:gateway", help="its ApplicationUri (default: %(default)s)")
    cert.add_argument("--host", default=None, help="its host name (default: this machine's)")
    cert.add_argument("--days", type=int, default=365, help="validity (default: %(default)s)")
    cert.set_defaults(func=opcua_cert_command)


def opcua_cert_command(args: argparse.Namespace) -> int:
    import socket
    from pathlib import Path

    from gateway.opcua import make_certificate

    certificate, key = Path(args.certificate), Path(args.private_key)
    for path in (certificate, key):
        if path.exists():
            print(f"error: {path} exists; not overwritten", file=sys.stderr)
            return 2
    make_certificate(certificate, key, args.uri, args.host or socket.gethostname(), days=args.days)
    print(json.dumps({"certificate": str(certificate), "private_key": str(key), "application_uri": args.uri}))
    return 0


def _runner(kind: str, path: str) -> tuple[Any, Callable[..., Awaitable[Any]]]:
    """The loaded configuration and the function that runs it (``ConfigError`` if the file is bad)."""
    if kind == "modbus":
        from gateway.config import load_modbus_config
        from gateway.modbus import run_modbus_gateway

        return load_modbus_config(path), run_modbus_gateway
    from gateway.config import load_opcua_config
    from gateway.opcua import run_opcua_gateway

    return load_opcua_config(path), run_opcua_gateway


def gateway_command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.publish import GatewayMetrics

    logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO is every node of the address space

    try:
        config, run = _runner(args.gateway, args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configured = config.nats.url.get_secret_value() if config.nats.url else None
    nats_url = args.nats or configured or os.environ.get("WELLPULSE_NATS_URL") or DEFAULT_NATS_URL
    metrics = GatewayMetrics()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)

    async def main() -> None:
        await run(config, nats_url, stop_on_signals(), metrics)

    import nats.errors

    try:
        asyncio.run(main())
    except ConfigError as exc:  # found once running (a certificate file that cannot be read)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError, TimeoutError, nats.errors.Error) as exc:
        print(f"error: NATS at {redact_url(nats_url)}: {exc!r}", file=sys.stderr)
        return 1
    summary = {family.name.removeprefix("wellpulse_gateway_"): sum(s.value for s in family.samples
                                                                   if s.name.endswith("_total"))
               for family in metrics.registry.collect() if family.type == "counter"}
    print(json.dumps({"gateway": args.gateway, **summary}), flush=True)
    return 0
