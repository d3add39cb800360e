"""``wellpulse node``: join this machine to a WellPulse Ray cluster as a worker node.

The first machine runs ``wellpulse up`` with ``WELLPULSE_RAY_HEAD_HOST`` set to an address the others can reach
(and databases every node can reach); each further machine runs ``wellpulse node --address HEAD:PORT``. Its CPUs
then take TenantActors (placed with ``SPREAD``: not all on the head) and Serve's replicas and proxies; when it is
lost, the Supervisor re-places its tenants on the nodes left.

The node is Ray's own (``ray start --block``), authenticated with the head's Ray token: the file the head made
(``<data_dir>/secrets/ray_auth_token``), copied here and named by ``--auth-token-file``.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_node_command", "node_command_argv"]


def node_command_argv(address: str, *, num_cpus: int | None = None, node_ip: str = "127.0.0.1",
                      temp_dir: Path | None = None) -> list[str]:
    """The ``ray start`` command line that joins the cluster at `address` and blocks while the node runs."""
    ray_cli = Path(sys.executable).parent / "ray"
    argv = [str(ray_cli), "start", "--block", f"--address={address}", f"--node-ip-address={node_ip}",
            "--disable-usage-stats"]
    if num_cpus is not None:
        argv.append(f"--num-cpus={num_cpus}")
    if temp_dir is not None:
        argv.append(f"--temp-dir={temp_dir}")
    return argv


def node_environment(auth_token_file: Path | None) -> dict[str, str]:
    """The environment of the node: Ray's token authentication as the head has it.

    ``RAY_AUTH_MODE=disabled`` in the environment (a head started that way, tests on loopback) passes through.
    """
    env = dict(os.environ)
    if env.get("RAY_AUTH_MODE") == "disabled":
        return env
    if auth_token_file is None and env.get("RAY_AUTH_TOKEN_PATH"):
        return env  # Ray's own variable, set by whoever started us
    if auth_token_file is None:
        raise ValueError("--auth-token-file is required: the head's <data_dir>/secrets/ray_auth_token, copied here")
    if not auth_token_file.is_file():
        raise ValueError(f"--auth-token-file: no such file {auth_token_file}")
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(auth_token_file.resolve())})
    return env


def _node(args: argparse.Namespace) -> int:
    try:
        env = node_environment(args.auth_token_file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    argv = node_command_argv(args.address, num_cpus=args.num_cpus, node_ip=args.node_ip, temp_dir=args.temp_dir)
    print(f"joining the Ray cluster at {args.address} as {args.node_ip}; Ctrl-C leaves it", flush=True)
    # Replaced by Ray's process: a signal to this one reaches the node itself.
    os.execve(argv[0], argv, env)  # noqa: S606  our own binary, fixed argv, no shell


def add_node_command(sub: Any) -> None:
    node = sub.add_parser("node", help="join this machine to a WellPulse Ray cluster as a worker node")
    node.add_argument("--address", required=True, help="the head's Ray address, HOST:PORT (printed by wellpulse up)")
    node.add_argument("--node-ip", default="127.0.0.1", help="this machine's address the head can reach")
    node.add_argument("--num-cpus", type=int, help="CPUs this node offers (default: all)")
    node.add_argument("--temp-dir", type=Path, help="Ray's temp dir on this node (default /tmp/ray)")
    node.add_argument("--auth-token-file", type=Path,
                      help="the head's Ray token (<data_dir>/secrets/ray_auth_token), copied to this machine")
    node.set_defaults(func=_node)
