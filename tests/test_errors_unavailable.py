"""A database or bus that cannot be reached is a 503 to retry, never a 500 (real connection attempts)."""

import asyncio
from typing import Any

import asyncpg
import nats
import nats.errors
import pytest

from actors.common import while_down_retry
from store.embedded import free_port
from store.outage import backing_service_down

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`


async def test_unreachable_database_and_bus_count_as_unavailable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(Exception) as db_error:
        await asyncpg.connect(f"postgresql://u:p@127.0.0.1:{port}/x", timeout=2)
    assert backing_service_down(db_error.value)
    async def quiet(exc: Exception) -> None:
        pass

    with pytest.raises(Exception) as bus_error:
        await asyncio.wait_for(nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=1, max_reconnect_attempts=1,
                                            allow_reconnect=False, error_cb=quiet), 20)
    assert isinstance(bus_error.value, nats.errors.NoServersError) and backing_service_down(bus_error.value)


def test_bugs_and_bad_data_are_not_unavailability() -> None:
    assert not backing_service_down(ValueError("bad"))
    assert not backing_service_down(KeyError("x"))
    assert not backing_service_down(asyncpg.InterfaceError("another operation is in progress"))
    try:
        try:
            raise ConnectionRefusedError("down")
        except ConnectionRefusedError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert backing_service_down(wrapped)  # the cause counts


async def test_ingest_waits_out_an_outage_but_not_a_bug(pg_settings: Any) -> None:
    """`while_down_retry` (the hot path holding its batch): retried while the database cannot be reached,
    raised at once for anything else, and for an outage too once the actor is stopping."""
    dead = [f"postgresql://u:p@127.0.0.1:{free_port()}/x" for _ in range(2)]  # nothing listens there
    tried: list[str] = []
    waits: list[int] = []

    async def connect() -> asyncpg.Connection:
        url = dead[len(tried)] if len(tried) < len(dead) else pg_settings.database_url
        tried.append(url)
        return await asyncpg.connect(url, timeout=5)

    async def waited() -> None:
        waits.append(len(tried))

    conn = await while_down_retry(connect, what="test", on_wait=waited)
    try:
        assert tried[-1] == pg_settings.database_url and waits == [1, 2]
        with pytest.raises(asyncpg.UndefinedTableError):  # a bug is not waited out
            await while_down_retry(lambda: conn.execute("SELECT * FROM no_such_table"), what="test", on_wait=waited)
        assert waits == [1, 2]
    finally:
        await conn.close()
    tried.clear()
    with pytest.raises(OSError):  # stopping: the caller hands the work back instead
        await while_down_retry(connect, what="test", on_wait=waited, stopping=lambda: True)
    assert len(tried) == 1
