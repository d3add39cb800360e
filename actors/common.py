"""Start-up helpers shared by the actors: logging and connections built in one place."""

import logging
import os

from nats.aio.client import Client as NATS

from config import Settings
from store import bus, db

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
