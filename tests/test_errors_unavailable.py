"""A database or bus that cannot be reached is a 503 to retry, never a 500 (real connection attempts)."""

import asyncio

import asyncpg
import nats
import nats.errors
import pytest

from serve.errors import backing_service_down
from store.embedded import free_port

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
