"""``wellpulse sparkplug bridge``: run the Sparkplug B host (gateway/sparkplug.py) against the NATS server.

The NATS and database URLs come from ``WELLPULSE_NATS_URL`` / ``WELLPULSE_DATABASE_URL`` or from the
``runtime.json`` of a running ``wellpulse up`` with the same data dir (the app's credentials: the bridge subscribes to
every group's Sparkplug subjects and publishes to every tenant's telemetry).
"""

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from config import load_settings
from store.nats_auth import redact_url

__all__ = ["add_sparkplug_commands"]


def bridge_command(args: argparse.Namespace) -> int:
    from gateway.sparkplug import SparkplugConfig, run_bridge
    from serve.runtime import load_runtime_urls

    settings = load_settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
    runtime = load_runtime_urls(settings.data_dir)
    nats_url = settings.nats_url or runtime.get("nats_url")
    if not nats_url:
        print("error: no NATS URL (set WELLPULSE_NATS_URL, or run `wellpulse up` with this data dir)", file=sys.stderr)
        return 1
    try:
        config = SparkplugConfig.from_toml(Path(args.config)) if args.config else SparkplugConfig()
    except (OSError, ValueError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run_bridge(nats_url, config, settings.database_url or runtime.get("database_url"), stop,
                         metrics_port=args.metrics_port)

    print(f"sparkplug bridge on {redact_url(nats_url)}", file=sys.stderr)
    asyncio.run(main())
    return 0


def add_sparkplug_commands(subparsers: Any) -> None:
    sp = subparsers.add_parser("sparkplug", help="Sparkplug B: the host that maps edge nodes to tenants' equipment")
    sub = sp.add_subparsers(dest="sparkplug_command", required=True)
    bridge = sub.add_parser("bridge", help="decode spBv1.0/# from the NATS MQTT listener into readings")
    bridge.add_argument("--config", help="TOML: [groups] group = tenant, [equipment] 'group/node/device' = id, "
                                         "groups_are_tenants = true")
    bridge.add_argument("--data-dir", help="data dir of `wellpulse up` (default .wellpulse)")
    bridge.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve the per-device counters to Prometheus on this port")
    bridge.set_defaults(func=bridge_command)
