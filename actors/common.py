"""Helpers shared by the actors: logging and connections built in one place, and riding out an outage."""

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client as NATS

from config import Settings
from store import bus, db
from store.outage import backing_service_down

T = TypeVar("T")
OUTAGE_WAITS = (0.25, 0.5, 1.0, 2.0)  # seconds between attempts while a backing service is down
log = logging.getLogger(__name__)

ACTOR_OPTIONS = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
NAMESPACE = "wellpulse"


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("WELLPULSE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def open_connections(settings: Settings, name: str, *, pool_size: int,
                           tenant_id: str) -> tuple["db.asyncpg.Pool", NATS]:
    """The actor's pool connects as the app role, bound to its tenant: RLS sees nothing else."""
    if not settings.database_url or not settings.nats_url:
        raise RuntimeError("actors need resolved database_url and nats_url")
    pool = await db.create_pool(settings.resolved_app_database_url(), min_size=1, max_size=pool_size,
                                tenant_id=tenant_id)
    nc = await bus.connect(settings.nats_url, name)
    return pool, nc


async def while_down_retry(action: Callable[[], Awaitable[T]], *, what: str,
                           on_wait: Callable[[], Awaitable[None]] | None = None,
                           stopping: Callable[[], bool] = lambda: False) -> T:
    """Run `action` until it succeeds, waiting out an outage of the database or the bus.

    The hot path holds its work in place rather than handing it back: what is handed back comes again
    behind newer readings, and the models skip what is older than the last they learned. Any other
    error is raised at once (a bug or bad data may never pass), and so is an outage once `stopping`.
    `on_wait` runs before each wait (e.g. telling JetStream the messages are still in progress).
    """
    for attempt in itertools.count():
        try:
            return await action()
        except Exception as exc:
            if stopping() or not backing_service_down(exc):
                raise
            if attempt == 0:
                log.warning("%s: backing service unavailable (%s); holding it until it is back", what,
                            type(exc).__name__)
        if on_wait is not None:
            await on_wait()
        await asyncio.sleep(OUTAGE_WAITS[min(attempt, len(OUTAGE_WAITS) - 1)])
    raise AssertionError("unreachable")
