"""`wellpulse node` (join a cluster) and the checks on a Ray head other machines may join.

The join itself runs in tests/test_cluster.py: its second node is started with this command.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from cli.node import node_command_argv, node_environment
from config import load_settings
from serve.runtime import Stack


def test_node_joins_with_ray_start_and_the_heads_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = node_command_argv("10.0.0.5:6380", num_cpus=4, node_ip="10.0.0.6", temp_dir=tmp_path)
    assert argv[1:4] == ["start", "--block", "--address=10.0.0.5:6380"]
    assert {"--node-ip-address=10.0.0.6", "--num-cpus=4", f"--temp-dir={tmp_path}"} <= set(argv)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    token = tmp_path / "ray_auth_token"
    token.write_text("ab" * 32)
    env = node_environment(token)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
    with pytest.raises(ValueError, match="--auth-token-file is required"):
        node_environment(None)
    with pytest.raises(ValueError, match="no such file"):
        node_environment(tmp_path / "missing")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a head started without auth (loopback tests)
    assert node_environment(None)["RAY_AUTH_MODE"] == "disabled"


def test_node_without_a_token_is_refused_by_the_cli(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "cli", "node", "--address", "127.0.0.1:1"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 2
    assert "--auth-token-file is required" in done.stderr


def test_a_joinable_head_needs_ray_auth_and_reachable_databases(tmp_path: Path) -> None:
    stack = Stack(load_settings(data_dir=tmp_path, ray_head_host="10.0.0.5"))
    assert not stack.head_is_local
    with pytest.raises(RuntimeError, match="token authentication"):
        stack._check_joinable({"RAY_AUTH_MODE": "disabled"})
    stack._check_joinable({"RAY_AUTH_MODE": "token"})  # configured URLs (no embedded servers): fine
    assert Stack(load_settings(data_dir=tmp_path)).head_is_local


def test_the_compose_cluster_profile_joins_the_apps_head() -> None:
    """docker-compose.yml's `node` service runs this command against the address the app's head listens on."""
    import yaml

    from cli import build_parser

    compose = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())
    app, node = compose["services"]["app"], compose["services"]["node"]
    assert node["profiles"] == ["cluster"]
    args = build_parser().parse_args(node["command"])
    head = f"{app['environment']['WELLPULSE_RAY_HEAD_HOST']}:{app['environment']['WELLPULSE_RAY_HEAD_PORT']}"
    assert args.address == head
    assert args.node_ip == node["networks"]["default"]["ipv4_address"]
    assert str(args.auth_token_file).startswith("/data/secrets/") and "appdata:/data:ro" in node["volumes"]
