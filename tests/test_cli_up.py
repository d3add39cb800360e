"""`wellpulse up --demo` as a newcomer runs it: comes up, ingests its demo feed, and Ctrl-C leaves nothing behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from store.embedded import free_port


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, resp.read()


def _status(url: str) -> int:
    try:
        return _get(url)[0]
    except urllib.error.HTTPError as exc:
        return exc.code


def _our_processes(cli: psutil.Process, data_dir: Path) -> list[psutil.Process]:
    """Everything the CLI started: its children, the Ray head's tree, the embedded servers."""
    ours = {p.pid: p for p in cli.children(recursive=True)}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline or ("ray start --head" in cmdline and proc.pid in ours):
            ours[proc.pid] = proc
            ours.update({c.pid: c for c in proc.children(recursive=True)})
    return list(ours.values())


def _alive(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            continue
    return alive


def test_up_demo_runs_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "wp", free_port()
    log_path = tmp_path / "up.log"
    env = dict(os.environ)
    # As a newcomer runs it: Ray's token authentication on (the suite turns it off for its own heads).
    for key in ("WELLPULSE_DATABASE_URL", "WELLPULSE_NATS_URL", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_AUTH_TOKEN_PATH", "WELLPULSE_APP_DB_PASSWORD"):
        env.pop(key, None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--demo", "--data-dir", str(data_dir), "--port", str(port),
             "--rate", "300"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything." not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "wellpulse up did not come up in 180 s"
            time.sleep(0.5)
        output = log_path.read_text(errors="replace")
        token = re.search(r"operator token \(12 h\):\n(\S+)", output).group(1)  # type: ignore[union-attr]
        assert f"alert emails land in {data_dir / 'demo-mail'}" in output and (data_dir / "demo-mail").is_dir()
        base = f"http://127.0.0.1:{port}"
        status, body = _get(f"{base}/health")
        ray = json.loads(body)["checks"]["ray"]
        assert status == 200 and ray["tenants"] == ray["tenants_running"] == 1, ray
        assert _status(f"{base}/metrics") == 401  # per-tenant figures need the metrics token
        metrics_token = (data_dir / "secrets" / "metrics_token").read_text().strip()
        ingested = 0.0
        while ingested == 0.0 and time.monotonic() < deadline:
            metrics = _get(f"{base}/metrics", metrics_token)[1].decode()
            match = re.search(r'wellpulse_readings_ingested_total\{tenant="demo"\} (\S+)', metrics)
            ingested = float(match.group(1)) if match else 0.0
            time.sleep(1)
        assert ingested > 0, "the demo feed never reached the database"
        assert _get(f"{base}/v1/alerts", token)[0] == 200
        assert token not in log_path.read_text(errors="replace").split(token, 1)[1], "token logged after the banner"
        started_by_cli = _our_processes(psutil.Process(proc.pid), data_dir)
        assert len(started_by_cli) > 5  # servers, the Ray head, raylet, actors...
        _assert_ray_refuses_strangers(started_by_cli)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
    gone_by = time.monotonic() + 30  # what it started ends with it: polled, the last ones may take a moment
    while _alive(started_by_cli) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert _alive(started_by_cli) == []
    _assert_no_secret_logged(data_dir, [log_path])


def _assert_ray_refuses_strangers(processes: list[psutil.Process]) -> None:
    """Whoever reaches the Ray head without its token runs no code there."""
    head = next(p for p in processes if "start --head" in " ".join(p.cmdline()))
    port = next(a.split("=", 1)[1] for a in head.cmdline() if a.startswith("--port="))
    probe = ("import ray\n"
             f"ray.init(address='127.0.0.1:{port}')\n"
             "print('ran', ray.get(ray.remote(lambda: 41 + 1).remote()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run([sys.executable, "-c", probe], env={**env, "RAY_AUTH_MODE": "disabled"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "ran 42" not in done.stdout
    assert "Authentication" in done.stderr or "InvalidAuthToken" in done.stderr, done.stderr[-2000:]


def _assert_no_secret_logged(data_dir: Path, extra_logs: list[Path]) -> None:
    """No generated secret (JWT key, DB and NATS passwords, data and signing keys, metrics token) in any log."""
    secret_files = [*(data_dir / "secrets").iterdir(), *data_dir.glob("*.password"),
                    *(data_dir / "nats").glob("*.password"), *(data_dir / "nats").glob("*.secret")]
    values = {f.name: f.read_text().strip() for f in secret_files if f.is_file()}
    assert {"jwt_secret", "app_db_password", "data_key", "model_signing_key", "metrics_token",
            "ray_auth_token"} <= set(values)
    logs = [*extra_logs, *(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in {".log", ".out", ".err"})]
    for log_file in logs:
        text = log_file.read_text(errors="replace")
        leaked = [name for name, value in values.items() if len(value) >= 16 and value in text]
        assert not leaked, f"{leaked} appear in {log_file}"
