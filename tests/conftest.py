"""Real servers for the tests: PostgreSQL, NATS with JetStream, Ray and the Serve app.

Each starts once per session on free ports under a temp dir. Set
``WELLPULSE_TEST_DATABASE_URL`` to use an existing PostgreSQL server instead (a fresh
database is created on it and dropped afterwards).

Two tiers: ``-m fast`` runs the tests marked ``fast`` (pure ones, and services called against PostgreSQL and
NATS alone through the `services` fixture: no Ray, no Serve) and the doctests; the rest need the `stack`.
A test marked fast that asks for the stack is refused at collection, so the tier stays fast.
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from config import Settings
from config.secrets import resolve_secrets
from store import bus
from store.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from store.migrate import migrate
from tests.helpers import JWT_SECRET

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# PostgreSQL roles are cluster-wide: every stack a test starts on the shared server must give the app role the
# same password, or the last migration run would lock the others' new connections out.
os.environ.setdefault("WELLPULSE_APP_DB_PASSWORD", "test-app-" + uuid.uuid4().hex)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_configure(config: pytest.Config) -> None:
    """schemathesis's plugin (test_api_fuzz), where the fast tier does not skip that module (see pyproject.toml)."""
    if (config.option.markexpr or "").strip() != "fast":
        config.pluginmanager.import_plugin("schemathesis.pytest.plugin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Doctests are pure (models/, schema/, config/, ...): they belong to the fast tier. A fast test must not
    start Ray and Serve: one that asks for the stack is an error here rather than a slow fast tier."""
    root = Path(str(config.rootpath))
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.fast)
        elif item.get_closest_marker("fast") and "stack" in getattr(item, "fixturenames", ()):
            where = Path(str(item.path)).relative_to(root)
            raise pytest.UsageError(f"{where}::{item.name} is marked fast but needs the stack (Ray and Serve)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m fast``, a test module with no fast test is not even imported: collecting test_api_fuzz alone
    (schemathesis reads the whole API) takes half a minute, all of it deselected afterwards."""
    if (config.option.markexpr or "").strip() != "fast" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return "mark.fast" not in collection_path.read_text(encoding="utf-8")


def _fresh_database(server_url: str) -> tuple[str, str]:
    name = f"wellpulse_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server_url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _database_on(server_url: str) -> Iterator[str]:
    """URL of a fresh database on the server, dropped on the way out."""
    url, name = _fresh_database(server_url)
    try:
        yield url
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres | None]:
    """The session's own PostgreSQL server (None when ``WELLPULSE_TEST_DATABASE_URL`` names one): a test
    that must stop and restart the database (tests/test_outage.py) holds this."""
    if os.environ.get("WELLPULSE_TEST_DATABASE_URL"):
        yield None
        return
    # Not under pytest's temp root: any pytest started on this machine (a Ray node started by a test runs one)
    # makes that root private to its owner again, and the server, running as another user, loses its files.
    home = Path(tempfile.mkdtemp(prefix="wellpulse-test-pg-"))
    server = EmbeddedPostgres(home / "data", database="postgres").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(embedded_pg: EmbeddedPostgres | None) -> str:
    """URL of a PostgreSQL server's maintenance database."""
    return embedded_pg.url if embedded_pg is not None else os.environ["WELLPULSE_TEST_DATABASE_URL"]


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    """A fresh database on the TimescaleDB server named by WELLPULSE_TEST_TIMESCALE_URL, or a visible skip."""
    server = os.environ.get("WELLPULSE_TEST_TIMESCALE_URL")
    if not server:
        pytest.skip("WELLPULSE_TEST_TIMESCALE_URL is not set: TimescaleDB path not tested on this machine")
    with _database_on(server) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    with _database_on(pg_server) as url:
        yield url


@pytest.fixture
def fresh_database(pg_server: str) -> Iterator[str]:
    """A database of its own for one test (one that must start empty), dropped after it."""
    with _database_on(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def embedded_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The session's authorizing NATS server (with its MQTT listener on ``mqtt_port``); feed users are added with
    ``set_tenants``."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), mqtt_port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(embedded_nats: EmbeddedNats) -> str:
    """The session's NATS server's URL, with the app user's credentials (store.nats_auth)."""
    return embedded_nats.url


@pytest.fixture(scope="session")
def settings(database_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    outbox = tmp_path_factory.mktemp("outbox") / "messages.jsonl"
    return Settings(
        database_url=database_url, nats_url=nats_url, data_dir=tmp_path_factory.mktemp("wp"),
        host="127.0.0.1", port=free_port(), jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        checkpoint_every_readings=200, checkpoint_every_seconds=2.0, equipment_actor_budget=2,
        fetch_batch=500, ws_queue_size=50,
        # Cheap argon2 (the bench states the production cost); limits far above what the suite sends
        # (tests/test_rate_limits.py checks the limits themselves); messages to an outbox file.
        argon2_time_cost=1, argon2_memory_kib=8 * 1024, rate_limit_user_per_minute=100_000,
        rate_limit_tenant_per_hour=1_000_000, message_sender=f"file:{outbox}",
        # Notification receivers (tests/receivers.py) listen on loopback.
        notify_allow_private_networks=True,
    )


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Any]:
    """The whole system as ``wellpulse up`` runs it (migrations, streams, Ray, actors, Serve)."""
    from serve.runtime import Stack

    stack = Stack(settings)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def pg_settings(settings: Settings, pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """`settings` for the fast tier: a migrated database of its own, secrets resolved; no Ray, no Serve.

    Its own database, so that a stack running in the same session never starts actors for its tenants.
    """
    with _database_on(pg_server) as url:
        fast = resolve_secrets(settings.model_copy(update={"database_url": url,
                                                           "data_dir": tmp_path_factory.mktemp("fast")}))
        migrate(url, retention_days=fast.retention_days, app_user=fast.app_db_user,
                app_password=fast.secret("app_db_password"))
        yield fast


@pytest.fixture(scope="session")
async def services(pg_settings: Settings) -> AsyncIterator[Any]:
    """What the routes hand to a service (`serve.services.Services`), connected to PostgreSQL and NATS only:
    services are called directly, as the routes call them, without Ray or Serve."""
    from serve.services import Services

    nc = await bus.connect(pg_settings.nats_url or "", "fast-tier-setup")
    try:
        s = pg_settings  # the limits the stack sets too: a session running both never flips them
        await bus.ensure_streams(nc.jetstream(), bus.StreamLimits(
            telemetry_max_bytes=s.telemetry_stream_max_bytes, dlq_max_bytes=s.dlq_stream_max_bytes,
            per_subject_max_msgs=s.stream_max_msgs_per_subject))
    finally:
        await nc.close()
    ready = await Services(pg_settings).ready()
    try:
        yield ready
    finally:
        await ready.close()


@pytest.fixture(scope="module", autouse=True)
async def _retire_module_tenants() -> AsyncIterator[None]:
    yield
    from tests.helpers import retire_created_tenants

    await retire_created_tenants()


@pytest.fixture
async def http(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def db_conn(stack: Any) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A real HTTP receiver (tests/receivers.py) on a free port, for webhook, Slack- and Teams-shaped posts."""
    from tests.receivers import HttpReceiver

    r = HttpReceiver()
    await r.start()
    yield r
    await r.stop()
