"""Alert services: reading alerts and their events, the operator's actions on them (acknowledge, resolve,
shelve, unshelve) and on sensors (out of service and back), for the alerts and equipment routers and the
WebSocket replay.

Every action runs in a unit of work (`serve.uow`): the store's change and its audit row in one transaction,
then, after the commit, its events on the ALERTS stream and, when an operator gave a verdict, a nudge to the
equipment's actor (it learns the verdict from the store). Refusals are `schema.errors` classes.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schema.errors import NotFound
from schema.severity import SEVERITY_RANK
from serve.auth import Principal
from serve.listing import tenant_page
from serve.services import Services
from serve.uow import tenant_work
from store import alerts as store
from store import assets as asset_store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = ["acknowledge", "events_after", "get_alert", "kpis", "list_alerts", "replay_floor", "resolve",
           "return_to_service", "shelve", "take_out_of_service", "unshelve"]

# An action on one alert in the store: (conn, now) -> (the alert or None, the events it committed).
StoreAction = Callable[[asyncpg.Connection, datetime], Awaitable[tuple[Any, list[Any]]]]
# Event kinds that carry an operator's verdict to the models.
_VERDICT_KINDS = ("acknowledged", "resolved", "verdict")


async def list_alerts(services: Services, tenant_id: str, q: ListQuery, *, min_severity: str,
                      well_ids: list[str] | None) -> tuple[list[dict[str, Any]], int]:
    """A page of alerts; ``min_severity`` and ``well_ids`` filter besides the query's own filters."""
    extra: list[tuple[str, list[Any]]] = []
    if min_severity != "info":
        extra.append((store.MIN_SEVERITY_SQL, [SEVERITY_RANK[min_severity]]))
    if well_ids is not None:
        extra.append((store.WELL_FILTER_SQL, [well_ids]))
    return await tenant_page(services, tenant_id, store.ALERTS, q, extra_where=extra)


async def kpis(services: Services, tenant_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        return await store.alert_kpis(conn, tenant_id, start, end)


async def get_alert(services: Services, tenant_id: str, alert_id: int) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The alert and its events, oldest first; `NotFound` when the tenant has no such alert."""
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_alert(conn, tenant_id, alert_id)
        events = await store.alert_events(conn, tenant_id, alert_id) if row is not None else []
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    return row, events


async def acknowledge(services: Services, principal: Principal, audit: AuditContext, alert_id: int, *,
                      comment: str | None, verdict: str | None) -> asyncpg.Record:
    async def act(conn: asyncpg.Connection, now: datetime) -> tuple[Any, list[Any]]:
        return await store.acknowledge_alert(conn, principal.tenant_id, alert_id, actor=principal.actor,
                                             comment=comment, verdict=verdict, now=now)

    return await _act(services, principal.tenant_id, audit, alert_id, "acknowledge", act, old={"state": "open"},
                      new=lambda alert: {"state": alert["state"], **_comment(comment, verdict)}, verdict=verdict)


async def resolve(services: Services, principal: Principal, audit: AuditContext, alert_id: int, *,
                  comment: str | None, verdict: str | None) -> asyncpg.Record:
    async def act(conn: asyncpg.Connection, now: datetime) -> tuple[Any, list[Any]]:
        return await store.resolve_alert(conn, principal.tenant_id, alert_id, actor=principal.actor,
                                         comment=comment, verdict=verdict, now=now)

    return await _act(services, principal.tenant_id, audit, alert_id, "resolve", act,
                      new=lambda alert: {"state": "resolved", **_comment(comment, verdict)}, verdict=verdict)


async def shelve(services: Services, principal: Principal, audit: AuditContext, alert_id: int, *, minutes: int,
                 reason: str) -> asyncpg.Record:
    async def act(conn: asyncpg.Connection, now: datetime) -> tuple[Any, list[Any]]:
        return await store.shelve_alert(conn, principal.tenant_id, alert_id, minutes=minutes, reason=reason,
                                        actor=principal.actor, now=now)

    return await _act(services, principal.tenant_id, audit, alert_id, "shelve", act,
                      new=lambda alert: {"minutes": minutes, "reason": reason})


async def unshelve(services: Services, principal: Principal, audit: AuditContext, alert_id: int,
                   ) -> asyncpg.Record:
    async def act(conn: asyncpg.Connection, now: datetime) -> tuple[Any, list[Any]]:
        return await store.unshelve_alert(conn, principal.tenant_id, alert_id, actor=principal.actor, now=now)

    return await _act(services, principal.tenant_id, audit, alert_id, "unshelve", act)


def _comment(comment: str | None, verdict: str | None) -> dict[str, Any]:
    return {"comment": comment, **({"verdict": verdict} if verdict else {})}


async def _act(services: Services, tenant_id: str, audit: AuditContext, alert_id: int, action: str,
               call: StoreAction, *, old: dict[str, Any] | None = None,
               new: Callable[[Any], dict[str, Any]] | None = None, verdict: str | None = None) -> asyncpg.Record:
    """One operator action: the store's change, audited when it changed something; after the commit its
    events are published and a verdict goes to the models. A state the store refuses raises its `Conflict`."""
    async with tenant_work(services, tenant_id, audit) as uow:
        alert, events = await call(uow.conn, datetime.now(UTC))
        if events:
            await uow.record(action=action, entity_type="alert", entity_id=str(alert_id), old=old,
                             new=None if new is None else new(alert))
        uow.publish_alert_events(events)
        if alert is not None and verdict is not None and any(e["kind"] in _VERDICT_KINDS for e in events):
            uow.notify_actors("verdict", equipment_id=alert["equipment_id"])
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


# ---------------------------------------------------------------- sensors out of service (ISA-18.2)


async def take_out_of_service(services: Services, principal: Principal, audit: AuditContext, equipment_id: str,
                              sensor: str, *, reason: str, until: datetime | None) -> asyncpg.Record:
    """Suppress the alerts about a sensor (every sensor of the alert out of service) from now until ``until``
    or `return_to_service`; the suppressions' events go out after the commit."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        if not await asset_store.equipment_exists(uow.conn, principal.tenant_id, equipment_id):
            raise NotFound(f"equipment {equipment_id} not found")
        row, events = await store.set_out_of_service(uow.conn, principal.tenant_id, equipment_id, sensor,
                                                     reason=reason, until=until, actor=principal.actor)
        await uow.record(action="out_of_service", entity_type="equipment", entity_id=equipment_id,
                         new={"sensor": sensor, "reason": reason,
                              "until": None if until is None else until.isoformat()})
        uow.publish_alert_events(events)
    return row


async def return_to_service(services: Services, principal: Principal, audit: AuditContext, equipment_id: str,
                            sensor: str) -> None:
    """The sensor's suppressed alerts whose condition still holds come back (`NotFound` unless it is out of
    service)."""
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        row, events = await store.end_out_of_service(uow.conn, principal.tenant_id, equipment_id, sensor,
                                                     actor=principal.actor)
        if row is None:
            raise NotFound(f"sensor {sensor} of {equipment_id} is not out of service")
        await uow.record(action="return_to_service", entity_type="equipment", entity_id=equipment_id,
                         old={"sensor": sensor, "reason": row["reason"]})
        uow.publish_alert_events(events)


# ---------------------------------------------------------------- the WebSocket feed's replay


async def replay_floor(services: Services, tenant_id: str, since: int, until: int, limit: int) -> int | None:
    """Where a replay of (since, until] starts when it holds more than ``limit`` events (its newest ones are
    sent), else None."""
    async with services.tenant_tx(tenant_id) as conn:
        return await store.replay_floor(conn, tenant_id, since, until, limit)


async def events_after(services: Services, tenant_id: str, after: int, limit: int) -> list[asyncpg.Record]:
    async with services.tenant_tx(tenant_id) as conn:
        return await store.events_since(conn, tenant_id, after, limit)
