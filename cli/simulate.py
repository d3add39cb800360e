"""``wellpulse simulate``: parse the options, run `sim.run_simulation` until ``--duration`` or a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from dataclasses import asdict
from typing import Any

from schema.ids import InvalidIdentifier, check_tenant_id
from sim import (
    DEFAULT_NATS_URL,
    Fault,
    FaultKind,
    FeedSimulator,
    MessageBatcher,
    NormalBehaviour,
    SimulationStats,
    demo_fleet,
    parse_fault_spec,
    run_simulation,
    snapshot_interval,
)
from sim.faults import FAULT_SPEC_HELP
from store.nats_auth import redact_url

__all__ = ["add_simulate_arguments", "simulate_command", "stop_on_signals"]


def _arg_type(convert: Any, what: str) -> Any:
    """Wrap a validator so argparse reports its message (and exits 2) instead of a generic one."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = what
    return parse


def _positive(kind: type[int] | type[float]) -> Any:
    def convert(text: str) -> int | float:
        value = kind(text)
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"must be > 0, got {text!r}")
        return value

    return convert


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port (1-65535), got {text!r}")
    return value


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``wellpulse simulate`` (kept here so the CLI module only wires sub-commands)."""
    parser.add_argument(
        "--nats",
        default=None,
        metavar="URL",
        help=f"NATS URL (default: $WELLPULSE_NATS_URL or {DEFAULT_NATS_URL})",
    )
    parser.add_argument(
        "--tenant", required=True, type=_arg_type(check_tenant_id, "tenant"), help="tenant id"
    )
    parser.add_argument("--equipment", type=_arg_type(_positive(int), "count"), default=50, help="fleet size")
    parser.add_argument(
        "--rate",
        type=_arg_type(_positive(float), "rate"),
        default=2000.0,
        help="sensor values per second, total",
    )
    parser.add_argument(
        "--duration",
        type=_arg_type(_positive(float), "seconds"),
        default=None,
        help="seconds (default: forever)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same feed)")
    parser.add_argument(
        "--fault-every",
        type=_arg_type(_non_negative_float, "seconds"),
        default=60.0,
        help="inject a random fault every N seconds (0 disables)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        type=_arg_type(parse_fault_spec, "fault"),
        metavar=FAULT_SPEC_HELP,
        help=f"inject a fault (repeatable); kinds: {', '.join(FaultKind)}",
    )
    parser.add_argument(
        "--truth",
        default=None,
        metavar="PATH",
        help="append every injected fault (kind, equipment, sensor, start, end) to PATH as JSON lines",
    )
    parser.add_argument(
        "--no-normal-operations",
        dest="normal_operations",
        action="store_false",
        help="no set-point changes, pump-off cycles or late data (only cycles, walk and noise)",
    )
    parser.add_argument(
        "--modbus-server", type=_arg_type(_port, "port"), default=None, metavar="PORT",
        help="instead of publishing, serve the fleet as Modbus TCP RTUs on 127.0.0.1:PORT (one unit per equipment)",
    )
    parser.add_argument(
        "--opcua-server", type=_arg_type(_port, "port"), default=None, metavar="PORT",
        help="instead of publishing, serve the fleet as an OPC UA node tree on opc.tcp://127.0.0.1:PORT/wellpulse/",
    )
    parser.add_argument(
        "--gateway-config", default=None, metavar="PATH",
        help="with --modbus-server/--opcua-server: write the matching `wellpulse gateway` TOML here "
             "(PATH.modbus.toml / PATH.opcua.toml when both)",
    )
    parser.add_argument(
        "--snapshots-per-message",
        type=_arg_type(_positive(int), "count"),
        default=1,
        help="snapshots of one equipment per message",
    )
    add_sparkplug_arguments(parser)


def add_sparkplug_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sparkplug", action="store_true",
                        help="publish Sparkplug B over MQTT as one edge node with a device per equipment "
                             "(group = tenant); needs --mqtt")
    parser.add_argument("--mqtt", metavar="URL", default=None,
                        help="mqtt://user:password@host:port (`wellpulse nats feed-credentials T` prints it; "
                             "default $WELLPULSE_MQTT_URL)")
    parser.add_argument("--node", default="rtu-1", help="Sparkplug edge node id (with --sparkplug)")


def sparkplug_command(args: argparse.Namespace) -> int:
    """``wellpulse simulate --sparkplug``: the fleet as a Sparkplug B edge node; a JSON summary at the end."""
    from sim.sparkplug import run_sparkplug_simulation

    url = args.mqtt or os.environ.get("WELLPULSE_MQTT_URL")
    if not url:
        print("error: --sparkplug needs --mqtt URL (see `wellpulse nats feed-credentials <tenant>`)", file=sys.stderr)
        return 2

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await run_sparkplug_simulation(url, args.tenant, node=args.node, equipment=args.equipment,
                                              rate=args.rate, duration=args.duration, seed=args.seed, stop=stop)

    try:
        stats = asyncio.run(main())
    except (OSError, ValueError) as exc:
        print(f"error: MQTT: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"tenant": args.tenant, "node": args.node, **asdict(stats)}), flush=True)
    return 0


def _check_args(args: argparse.Namespace) -> list[Fault]:
    """Validate again what argparse may not have (a Namespace built in code skips the ``type=`` hooks)."""
    check_tenant_id(args.tenant)
    if args.equipment < 1:
        raise ValueError("--equipment must be >= 1")
    snapshot_interval(demo_fleet(1), args.rate)  # validates the rate
    MessageBatcher(args.snapshots_per_message)
    faults = [f if isinstance(f, Fault) else parse_fault_spec(f) for f in (args.faults or [])]
    probe = FeedSimulator(demo_fleet(args.equipment))
    for fault in faults:
        probe.inject(fault)  # unknown equipment or sensor: a usage error, reported before connecting
    return faults


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets (both: SIGINT alone left processes running under a supervisor); for a
    command's ``asyncio.run`` that ends with the process, so the handlers are not removed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _serve_field(args: argparse.Namespace) -> int:
    """Serve the fleet as simulated RTUs (Modbus TCP) and/or an OPC UA server until ``--duration`` or a signal,
    for ``wellpulse gateway modbus|opcua`` to poll; write the gateways' configurations first."""
    from pathlib import Path

    from sim.modbus_server import modbus_gateway_config, serve_fleet_modbus
    from sim.opcua_server import opcua_gateway_config, serve_fleet_opcua  # asyncua itself loads when serving

    logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO is every node of the address space
    fleet = demo_fleet(args.equipment)
    both = bool(args.modbus_server and args.opcua_server)
    configs: dict[str, str] = {}
    if args.modbus_server:
        configs["modbus"] = modbus_gateway_config(args.tenant, "127.0.0.1", args.modbus_server, fleet)
    if args.opcua_server:
        configs["opcua"] = opcua_gateway_config(args.tenant, f"opc.tcp://127.0.0.1:{args.opcua_server}/wellpulse/",
                                                fleet)
    if args.gateway_config:
        for kind, text in configs.items():
            path = Path(f"{args.gateway_config}.{kind}.toml" if both else args.gateway_config)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}: wellpulse gateway {kind} --config {path}", file=sys.stderr)

    async def main() -> None:
        stop = stop_on_signals()
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        servers = []
        if args.modbus_server:
            servers.append(serve_fleet_modbus(fleet, stop, port=args.modbus_server, seed=args.seed))
        if args.opcua_server:
            servers.append(serve_fleet_opcua(fleet, stop, port=args.opcua_server, seed=args.seed))
        await asyncio.gather(*servers)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    """Run the simulator until ``--duration`` or SIGINT/SIGTERM; print a one-line JSON summary.

    Exit codes: 0 done, 1 NATS unreachable or failed, 2 bad arguments.
    """
    if getattr(args, "sparkplug", False):
        return sparkplug_command(args)
    try:
        faults = _check_args(args)
    except (InvalidIdentifier, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "modbus_server", None) or getattr(args, "opcua_server", None):
        return _serve_field(args)
    nats_url = args.nats or os.environ.get("WELLPULSE_NATS_URL") or DEFAULT_NATS_URL

    async def main() -> SimulationStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Both: SIGINT alone left processes running here when a supervisor sent SIGTERM.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        try:
            return await run_simulation(
                nats_url,
                args.tenant,
                equipment=args.equipment,
                rate=args.rate,
                duration=args.duration,
                seed=args.seed,
                fault_every=args.fault_every or None,
                faults=faults,
                snapshots_per_message=args.snapshots_per_message,
                stop=stop,
                truth_path=getattr(args, "truth", None),
                normal=None if getattr(args, "normal_operations", True) else NormalBehaviour.none(),
            )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        stats = asyncio.run(main())
    except (OSError, ConnectionError, TimeoutError) as exc:
        print(f"error: NATS at {redact_url(nats_url)}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        import nats.errors

        if isinstance(exc, nats.errors.Error):
            print(f"error: NATS at {redact_url(nats_url)}: {exc!r}", file=sys.stderr)
            return 1
        raise
    print(json.dumps({"tenant": args.tenant, **asdict(stats)}), flush=True)
    return 0
