"""Bring the whole system up and down in order: servers, schema, streams, Ray, actors, Serve.

``wellpulse up``, the tests and the benchmarks all use this one piece, so what is
tested is what runs.
"""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors.common import NAMESPACE
from actors.supervisor import SUPERVISOR_NAME, Supervisor
from config import Settings
from config.secrets import SECRETS_DIR, SecretBox, read_or_make_secret, resolve_secrets
from store import assets, bus, db, tenants
from store.admin import reseal_secrets
from store.embedded import EmbeddedNats, EmbeddedPostgres, free_port, port_is_free, wait_for_port
from store.migrate import MigrationResult, migrate

log = logging.getLogger(__name__)
APP_NAME = "wellpulse"
RAY_DIR_MAX_CHARS = 32
RUNTIME_FILE = "runtime.json"
NATS_SYNC_INTERVAL_S = 2.0


def load_runtime_urls(data_dir: Path | str) -> dict[str, Any]:
    """What a running ``wellpulse up`` with this data dir wrote about itself: ``nats_url`` (with the app's
    credentials), ``database_url``, ``base_url``, ``pid``; ``{}`` when none is running there.

    CLI commands use it as the fallback for URLs the environment does not set.
    """
    path = Path(data_dir) / RUNTIME_FILE
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except PermissionError:  # alive, someone else's
        return info
    except (OSError, ValueError, KeyError, TypeError):  # absent, unreadable, or its process is gone
        return {}
    return info


class Stack:
    def __init__(self, settings: Settings, *, serve_http: bool = True, log_to_driver: bool = True,
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.serve_http = serve_http
        self.log_to_driver = log_to_driver
        self.progress = progress  # told each part once it is up, with the seconds it took (`wellpulse up`)
        self.data_dir = Path(settings.data_dir).resolve()
        self.pg: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.migration: MigrationResult | None = None
        self.supervisor: Any = None
        self.ray_started_here = False
        self.ray_head: subprocess.Popen[bytes] | None = None
        self.ray_address: str | None = None  # the cluster's address (GCS), once Ray is up
        self._ray_tmp: Path | None = None
        self._nats_sync_lock = threading.Lock()
        self._nats_sync_stop = threading.Event()
        self._nats_sync_thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def _claim_data_dir(self) -> None:
        """One WellPulse per data dir: a second one would stop the first one's embedded servers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another WellPulse is running with data dir {self.data_dir}; "
                               "stop it or pass --data-dir") from None

    def _check_port_free(self) -> None:
        if not port_is_free(self.settings.host, self.settings.port):
            raise RuntimeError(f"cannot listen on {self.settings.host}:{self.settings.port} (in use or not "
                               "allowed); pass --port")

    @property
    def database_url(self) -> str:
        """The database's URL: configured, or the embedded server's once `start_servers` has run."""
        if not self.settings.database_url:
            raise RuntimeError("no database URL: start_servers() has not run")
        return self.settings.database_url

    @property
    def nats_url(self) -> str:
        """The NATS server's URL: configured, or the embedded server's once `start_servers` has run."""
        if not self.settings.nats_url:
            raise RuntimeError("no NATS URL: start_servers() has not run")
        return self.settings.nats_url

    @contextlib.contextmanager
    def _step(self, what: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        if self.progress is not None:
            self.progress(f"{what:<44} {time.monotonic() - began:5.1f} s")

    def start_servers(self) -> None:
        self._claim_data_dir()
        # Before anything uses a secret: configured ones are checked, missing ones made once in the data dir.
        self.settings = resolve_secrets(self.settings.model_copy(update={"data_dir": self.data_dir}))
        if self.serve_http:
            self._check_port_free()
        if not self.settings.database_url:
            with self._step("PostgreSQL (embedded)"):
                self.pg = EmbeddedPostgres(self.data_dir / "postgres").start()
            self.settings = self.settings.model_copy(update={"database_url": self.pg.url})
        if not self.settings.nats_url:
            feed_secret = self.settings.nats_feed_secret
            with self._step("NATS with JetStream and MQTT (embedded)"):
                self.nats = EmbeddedNats(self.data_dir / "nats", mqtt_port=self.settings.mqtt_port,
                                         feed_secret=feed_secret.get_secret_value() if feed_secret else None).start()
            self.settings = self.settings.model_copy(update={"nats_url": self.nats.url})
        with self._step("database migrations"):
            self.migration = migrate(self.database_url, retention_days=self.settings.retention_days,
                                     app_user=self.settings.app_db_user,
                                     app_password=self.settings.secret("app_db_password"))
        resealed = reseal_secrets(self.database_url, SecretBox.from_settings(self.settings))
        if resealed:
            log.info("sealed %d stored secrets (TOTP seeds, channel settings) with the current data key", resealed)
        asyncio.run(self._ensure_streams())
        self._start_nats_sync()
        self._write_runtime_file()

    def _write_runtime_file(self) -> None:
        info = {"pid": os.getpid(), "nats_url": self.settings.nats_url, "database_url": self.settings.database_url,
                "base_url": self.base_url,
                "mqtt_port": self.nats.mqtt_port if self.nats is not None else self.settings.mqtt_port}
        path = self.data_dir / RUNTIME_FILE
        tmp = path.with_name(RUNTIME_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the NATS URL carries a password
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _remove_runtime_file(self) -> None:
        path = self.data_dir / RUNTIME_FILE
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(path.read_text())["pid"] == os.getpid():
                path.unlink()

    def sync_nats_users(self) -> bool:
        """Give the embedded NATS one feed user per active tenant; ``True`` if that reloaded it."""
        if self.nats is None:
            return False
        with self._nats_sync_lock:
            return self.nats.set_tenants(tenants.list_active_tenants_sync(self.database_url))

    def _start_nats_sync(self) -> None:
        """Keep the embedded NATS's feed users in step with the tenants table (checked every 2 s)."""
        if self.nats is None:
            return
        self.sync_nats_users()
        self._nats_sync_stop.clear()

        def loop() -> None:
            while not self._nats_sync_stop.wait(NATS_SYNC_INTERVAL_S):
                try:
                    self.sync_nats_users()
                except Exception as exc:  # the DB restarting, say: try again next time
                    log.warning("NATS feed users not synced: %s", exc)

        self._nats_sync_thread = threading.Thread(target=loop, name="nats-user-sync", daemon=True)
        self._nats_sync_thread.start()

    def _stop_nats_sync(self) -> None:
        self._nats_sync_stop.set()
        if self._nats_sync_thread is not None:
            self._nats_sync_thread.join(15)
            self._nats_sync_thread = None

    async def _ensure_streams(self) -> None:
        nc = await bus.connect(self.nats_url, "wellpulse-setup")
        try:
            s = self.settings
            await bus.ensure_streams(nc.jetstream(), bus.StreamLimits(
                telemetry_max_bytes=s.telemetry_stream_max_bytes, dlq_max_bytes=s.dlq_stream_max_bytes,
                per_subject_max_msgs=s.stream_max_msgs_per_subject))
        finally:
            await nc.close()

    def start_ray(self) -> None:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS") or self._start_ray_head()
            self.ray_address = address
            # Not streamed to the driver, the actors' and Serve's logs stay in Ray's files (`ray_logs`).
            if not self.log_to_driver:
                logging.getLogger("ray.serve").setLevel(logging.WARNING)
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=self.log_to_driver,
                     logging_level=logging.INFO if self.log_to_driver else logging.WARNING)
            self.ray_started_here = True
        supervisor: Any = Supervisor  # @ray.remote made the class an actor class; ray's types keep the class
        self.supervisor = supervisor.options(
            name=SUPERVISOR_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime=None,
        ).remote(self.settings)
        ray.get(self.supervisor.start.remote())

    def _start_ray_head(self) -> str:
        """A local Ray head in its own session.

        Started by ``ray.init()`` instead, Ray's processes share the driver's process group
        and a Ctrl-C or a group SIGTERM kills them under the driver's feet, before the
        actors can checkpoint. In a session of its own, the driver stops it, last.
        """
        ray_dir = self.data_dir / "ray"
        if len(str(ray_dir)) > RAY_DIR_MAX_CHARS:
            # Ray's Unix sockets live some 70 characters below its temp dir, and a socket path
            # longer than 107 bytes cannot be bound: a deep data dir gets a short one in /tmp.
            ray_dir = Path(tempfile.mkdtemp(prefix="wellpulse-ray-"))
            self._ray_tmp = ray_dir
        ray_dir.mkdir(parents=True, exist_ok=True)
        host = self.settings.ray_head_host
        port = self.settings.ray_head_port or free_port()
        auth = self._ray_auth()
        if not self.head_is_local:
            self._check_joinable(auth)
        os.environ.update(auth)  # the driver's own ray.init authenticates with the same token
        from ray._raylet import Config  # type: ignore[attr-defined]  # compiled; not in ray's type stubs

        Config.initialize("")  # Ray read RAY_AUTH_MODE when it was imported: make it read it again
        env = {**os.environ, **auth}
        ray_cli = Path(sys.executable).parent / "ray"
        log_file = open(ray_dir / "head.log", "ab")
        self.ray_head = subprocess.Popen(  # noqa: S603  our own binaries, fixed argv, no shell
            # On loopback unless WELLPULSE_RAY_HEAD_HOST says otherwise: a head reachable from the network runs
            # the code of whoever reaches it, so then only with Ray's token (`_check_joinable`).
            [str(ray_cli), "start", "--head", "--block", f"--port={port}", f"--temp-dir={ray_dir}",
             f"--node-ip-address={host}",
             "--include-dashboard=false", "--disable-usage-stats", f"--num-cpus={max(os.cpu_count() or 2, 2)}"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        wait_for_port(host, port, 60, self.ray_head)
        return f"{host}:{port}"

    @property
    def ray_logs(self) -> Path | None:
        """Where the Ray head we started keeps its and the actors' logs (None: a cluster of one's own)."""
        if self.ray_head is None:
            return None
        return (self._ray_tmp or self.data_dir / "ray") / "session_latest" / "logs"

    @property
    def join_address(self) -> str | None:
        """The address other machines join with `wellpulse node` (None: a head on loopback, or not ours)."""
        return self.ray_address if self.ray_head is not None and not self.head_is_local else None

    @property
    def head_is_local(self) -> bool:
        """The Ray head we start is on loopback: no other machine can join it."""
        host = self.settings.ray_head_host
        return host in ("127.0.0.1", "::1", "localhost")

    def _check_joinable(self, auth: dict[str, str]) -> None:
        """A head other machines join: authenticated, and with databases those machines reach too."""
        if auth.get("RAY_AUTH_MODE") != "token":
            raise RuntimeError("WELLPULSE_RAY_HEAD_HOST beyond loopback needs Ray token authentication: "
                               "unset RAY_AUTH_MODE=disabled")
        if self.pg is not None or self.nats is not None:
            # Actors placed on another machine would dial 127.0.0.1 there.
            raise RuntimeError("a Ray head other machines join needs WELLPULSE_DATABASE_URL and "
                               "WELLPULSE_NATS_URL that every node can reach (the embedded servers are on loopback)")

    def _ray_auth(self) -> dict[str, str]:
        """Ray's token authentication for the head we start, with a token made once in the data dir.

        ``RAY_AUTH_MODE=disabled`` turns it off (the test suite does, on loopback-only heads).
        """
        if os.environ.get("RAY_AUTH_MODE") == "disabled":
            log.warning("Ray token authentication is off (RAY_AUTH_MODE=disabled)")
            return {"RAY_AUTH_MODE": "disabled"}
        path = self.data_dir / SECRETS_DIR / "ray_auth_token"
        read_or_make_secret(path, lambda: secrets.token_hex(32))  # the form `ray get-auth-token` makes
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}

    def _stop_ray_head(self) -> None:
        if self.ray_head is None or self.ray_head.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.ray_head.pid, signal.SIGTERM)
        try:
            # Actors have checkpointed by now; `ray start --block` lingers on SIGTERM.
            self.ray_head.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.ray_head.pid, signal.SIGKILL)
            self.ray_head.wait(5)

    def start_serve(self) -> None:
        from serve.app import build_deployment

        # The replicas serve HTTP themselves (serve/ingress.py): no Serve proxy.
        serve.start(proxy_location="Disabled", logging_config={"enable_access_log": False})
        serve.run(build_deployment(self.settings), name=APP_NAME, route_prefix=None, blocking=False)
        self.wait_http(timeout=120)

    def wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health/db", timeout=5) as resp:  # noqa: S310  http URL of our own server
                    if resp.status == 200:
                        return
            except Exception:  # noqa: S110  best effort, the caller goes on either way
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.base_url} did not answer within {timeout}s")

    def start(self) -> "Stack":
        self.start_servers()
        with self._step("Ray and the tenants' actors"):
            self.start_ray()
        if self.serve_http:
            with self._step(f"API on {self.base_url} ({self.settings.serve_replicas} replica(s))"):
                self.start_serve()
        return self

    async def register_tenant(self, tenant_id: str, name: str, equipment: list[tuple[str, str, str]]) -> None:
        """Create or reactivate a tenant with its equipment and start its TenantActor."""
        pool = await db.create_pool(self.database_url, max_size=1)
        try:
            await tenants.upsert_tenant(pool, tenant_id, name)
            await assets.upsert_equipment(pool, tenant_id, equipment)
        finally:
            await pool.close()
        await self.supervisor.add_tenant.remote(tenant_id)
        if self.nats is not None:
            await asyncio.to_thread(self.sync_nats_users)  # its feed credentials work from now on

    def add_tenant(self, tenant_id: str, name: str, equipment: list[tuple[str, str, str]]) -> None:
        asyncio.run(self.register_tenant(tenant_id, name, equipment))

    def stop(self) -> None:
        """Serve first (no new requests), then the actors (they checkpoint), then Ray, then the servers."""
        started = time.monotonic()
        if ray.is_initialized():
            if self.serve_http:
                try:
                    serve.shutdown()
                except Exception:
                    log.exception("serve shutdown")
                log.info("serve stopped (%.1fs)", time.monotonic() - started)
            if self.supervisor is not None:
                try:
                    ray.get(self.supervisor.stop.remote(), timeout=20)
                    log.info("actors stopped, models checkpointed (%.1fs)", time.monotonic() - started)
                except Exception:
                    log.exception("supervisor stop")
            if self.ray_started_here:
                ray.shutdown()
        self._stop_ray_head()
        if self._ray_tmp is not None:
            shutil.rmtree(self._ray_tmp, ignore_errors=True)
        self._stop_nats_sync()
        self._remove_runtime_file()
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()
        log.info("stopped (%.1fs)", time.monotonic() - started)
