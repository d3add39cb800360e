"""The ``wellpulse`` command: up, node, simulate, backtest, tenant, token, migrate, nats, backup, restore, keys,
gateway, sparkplug.

A dispatcher: each sub-command's module (`cli.up`, `cli.simulate`, ...) parses its options and calls the code that
does the work (`serve.runtime`, `sim`, `models.backtest`, `store`); nothing below imports this package.
"""

import argparse
import logging

from cli.backtest import add_backtest_arguments, backtest_command
from cli.database import add_database_commands
from cli.gateway import add_gateway_commands
from cli.keys import add_keys_commands
from cli.nats import add_nats_commands
from cli.node import add_node_command
from cli.simulate import add_simulate_arguments, simulate_command
from cli.sparkplug import add_sparkplug_commands
from cli.tenant import add_tenant_commands
from cli.up import add_up_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wellpulse", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_up_command(sub)
    add_node_command(sub)

    sim = sub.add_parser("simulate", help="publish realistic SCADA readings with injected faults")
    add_simulate_arguments(sim)
    sim.set_defaults(func=simulate_command)

    backtest = sub.add_parser("backtest", help="replay a CSV through the models, no look-ahead")
    add_backtest_arguments(backtest)
    backtest.set_defaults(func=backtest_command)

    add_tenant_commands(sub)
    add_database_commands(sub)
    add_nats_commands(sub)
    add_keys_commands(sub)
    add_gateway_commands(sub)
    add_sparkplug_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
