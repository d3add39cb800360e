"""Telling an outage of a backing service (PostgreSQL, NATS) from a bug or bad data.

The API answers an outage with a 503 to retry (`serve.errors`); ingest holds its batch and waits
(`actors.tenant`). Both must agree on what an outage is, so it is decided here, once.
"""

import asyncpg
import nats.errors

__all__ = ["backing_service_down"]

_DOWN: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError, asyncpg.ConnectionDoesNotExistError,
    nats.errors.ConnectionClosedError, nats.errors.NoServersError, nats.errors.TimeoutError,
    nats.errors.ConnectionReconnectingError, nats.errors.OutboundBufferLimitError,
)


def backing_service_down(exc: BaseException) -> bool:
    """Whether `exc` says the database or the bus cannot be reached (as opposed to a bug or bad data).

    >>> backing_service_down(ConnectionRefusedError()), backing_service_down(ValueError("bad"))
    (True, False)
    """
    if isinstance(exc, _DOWN):
        return True
    # A pooled connection the server closed under us; other InterfaceErrors are our own misuse.
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and backing_service_down(cause)
