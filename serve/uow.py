"""The unit of work of every service that changes something: one tenant transaction, its audit rows, and the
effects that must wait for the commit.

A change is told to the outside (NATS: alert events on ALERTS, a nudge on ``ctl.<tenant>``) only once it is
committed: the actors and WebSocket clients re-read what they are told from the database, so a message about a
change that then rolled back would show them nothing (or, worse, a stale state), and a message sent before the
commit could be acted on before the change is visible. A service therefore registers effects while it works
(`UnitOfWork.after_commit` and its shortcuts) and the unit of work runs them after the commit, in the order they
were registered; a rollback drops them.

The audit row is the exception: it is written inside the transaction (`UnitOfWork.record`), so a change and
its audit row commit or roll back together (``audit_log`` is append-only; an audit row written after the commit
could be lost with the change kept). `record` is the one place a service writes one.

    async with tenant_work(services, principal.tenant_id, audit) as uow:
        row = await store.update_rule(uow.conn, ...)
        await uow.record(action="update", entity_type="alert_rule", entity_id=rule_id, old=old, new=row)
        uow.notify_actors("rules")
    # committed; the actors have been told
"""

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import asyncpg

from actors.equipment import publish_alert_events
from serve.services import Services
from store import audit as audit_log
from store.audit import AuditContext

__all__ = ["Effect", "TenantWork", "UnitOfWork", "tenant_work"]

Effect = Callable[[], Awaitable[None]]


class UnitOfWork:
    """A transaction (``async with``) that runs the effects registered in it after it commits, and drops them
    when it rolls back. Pure of the app's wiring, so it is tested against PostgreSQL alone."""

    def __init__(self, transaction: AbstractAsyncContextManager[asyncpg.Connection], *,
                 audit: AuditContext | None = None) -> None:
        self._transaction = transaction
        self._audit = audit
        self._effects: list[Effect] = []
        self._conn: asyncpg.Connection | None = None

    @property
    def conn(self) -> asyncpg.Connection:
        """The transaction's connection, for the repository functions (`store.*`)."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not open (use it in `async with`)")
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self._transaction.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        effects, self._effects = self._effects, []
        self._conn = None
        # Raises when the commit fails: then nothing is flushed either.
        suppressed = bool(await self._transaction.__aexit__(exc_type, exc, tb))
        if exc_type is None:
            for effect in effects:
                await effect()
        return suppressed

    def after_commit(self, effect: Effect) -> None:
        """Run ``effect`` once the transaction has committed (never, if it rolls back)."""
        self._effects.append(effect)

    async def record(self, *, action: str, entity_type: str, entity_id: str | None, old: Any = None,
                     new: Any = None) -> None:
        """The change's audit row, in the change's own transaction."""
        if self._audit is None:
            raise RuntimeError("this unit of work was opened without an audit context")
        await audit_log.record(self.conn, self._audit, action=action, entity_type=entity_type, entity_id=entity_id,
                               old=old, new=new)


class TenantWork(UnitOfWork):
    """A unit of work on the API's connections: a tenant's transaction, with the effects the API has."""

    def __init__(self, services: Services, tenant_id: str, audit: AuditContext | None = None) -> None:
        super().__init__(services.tenant_tx(tenant_id), audit=audit)
        self.services = services
        self.tenant_id = tenant_id
        self._nudges: dict[tuple[tuple[str, str], ...], list[str]] = {}

    def notify_actors(self, *reasons: str, **fields: str) -> None:
        """Tell the tenant's actors after the commit (`Services.notify_actors`). Calls with the same ``fields``
        become one message naming every reason: each message costs the actors a reload."""
        key = tuple(sorted(fields.items()))
        if key not in self._nudges:
            self._nudges[key] = []
            self.after_commit(lambda: self.services.notify_actors(self.tenant_id, *self._nudges[key], **fields))
        self._nudges[key].extend(reasons)

    def publish_alert_events(self, events: Sequence[Any]) -> None:
        """Publish committed alert events on the ALERTS stream (the WebSocket feed and other consumers)."""
        if events:
            self.after_commit(lambda: publish_alert_events(self.services.js, self.tenant_id, events))


def tenant_work(services: Services, tenant_id: str, audit: AuditContext | None = None) -> TenantWork:
    """The unit of work of one request's change (``audit`` is the request's, `serve.deps.Audit`)."""
    return TenantWork(services, tenant_id, audit)
