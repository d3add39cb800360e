"""The sync service: running a chunk, for every route that applies one (``/v1/sync``, its upload sessions in
`serve.uploads`, ``/v1/field-events``), and the conflicts and device status of offline sync.

A chunk is applied in one transaction (store/sync.py), a unit of work (`serve.uow`). Its answer is stored with
it: a retry after a dropped connection (the same ``Idempotency-Key``, the same upload chunk, or the same body) gets
that answer again and applies nothing twice; a deadlock with another writer retries the chunk. After the commit,
its field events go to ``field.<tenant>.<equipment>``, its alert events to the ALERTS stream, and the tenant's
actors are told when silences (maintenance) or the registry (equipment status) changed. A conflict resolved by a
reviewer has the same effects. Refusals are `schema.errors` classes.
"""

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from actors.equipment import publish_alert_events
from schema.errors import DomainError, IdempotencyKeyReused, NotFound
from schema.field_events import ParsedEvent
from schema.sync import ParsedChange
from serve.auth import Principal
from serve.listing import tenant_page
from serve.predictions import report_failure
from serve.services import Services
from serve.uow import tenant_work
from store import field_events as fe
from store import sync as store
from store.audit import AuditContext
from store.listing import ListQuery

__all__ = ["ChunkAnswer", "device_status", "get_conflict", "list_conflicts", "resolve_conflict",
           "run_chunk", "sync_chunk", "sync_context"]

log = logging.getLogger(__name__)
DEADLOCK_RETRIES = 3


@dataclass
class ChunkAnswer:
    """A chunk's answer as JSON (serialized once: stored as the receipt and sent as it is), and whether
    it is a stored one sent again."""

    json: bytes
    replayed: bool

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.json)  # a stored answer: a JSON object
        return data


def sync_context(principal: Principal, audit: AuditContext, device_id: str, upload_id: str | None = None,
                 ) -> store.SyncContext:
    """Who applies a chunk: the caller, for the device (and upload session) it names."""
    return store.SyncContext(tenant_id=principal.tenant_id, device_id=device_id, actor=principal.actor, audit=audit,
                             upload_id=upload_id)


async def sync_chunk(services: Services, principal: Principal, audit: AuditContext, *, device_id: str,
                     changes: Sequence[ParsedChange], events: Sequence[ParsedEvent], cursor: int, pull: bool,
                     idempotency_key: str | None, body_hash: str) -> ChunkAnswer:
    """A device's chunk (``POST /v1/sync``), applied once per ``idempotency_key``; without one, a chunk that
    changes something is known by its content (``body_hash``: event ids make it unique)."""
    if idempotency_key:
        key: str | None = "key:" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    else:
        key = f"body:{device_id}:{body_hash}" if changes or events else None
    ctx = sync_context(principal, audit, device_id)

    def apply(conn: asyncpg.Connection) -> Awaitable[store.ChunkOutcome]:
        return store.apply_chunk(conn, ctx, changes, events, cursor=cursor, pull=pull,
                                 pull_limit=services.settings.sync_pull_limit)

    return await run_chunk(services, ctx, key=key, body_hash=body_hash, apply=apply)


async def run_chunk(services: Services, ctx: store.SyncContext, *, key: str | None, body_hash: str,
                    apply: Callable[[asyncpg.Connection], Awaitable[store.ChunkOutcome]],
                    track_device: bool = True) -> ChunkAnswer:
    """Apply a chunk once, or answer with what it answered the first time. Runs to its end even if the client
    leaves."""
    task = asyncio.ensure_future(_run_chunk(services, ctx, key=key, body_hash=body_hash, apply=apply,
                                            track_device=track_device))
    # A dropped connection cancels the request; the chunk still commits (or not) as a whole and
    # stores its answer, which the device's retry then gets.
    return await asyncio.shield(task)


async def _run_chunk(services: Services, ctx: store.SyncContext, *, key: str | None, body_hash: str,
                     apply: Callable[[asyncpg.Connection], Awaitable[store.ChunkOutcome]],
                     track_device: bool) -> ChunkAnswer:
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return await _attempt(services, ctx, key=key, body_hash=body_hash, apply=apply)
        except IdempotencyKeyReused:  # the request's fault, not the device's data: its sync status keeps no error
            raise
        except DomainError as exc:
            if track_device:
                await _record_error(services, ctx, exc.message)
            raise
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_RETRIES - 1:
                raise
            log.warning("sync chunk of %s/%s hit a deadlock; retrying", ctx.tenant_id, ctx.device_id)
    raise AssertionError("unreachable")


async def _attempt(services: Services, ctx: store.SyncContext, *, key: str | None, body_hash: str,
                   apply: Callable[[asyncpg.Connection], Awaitable[store.ChunkOutcome]]) -> ChunkAnswer:
    async with tenant_work(services, ctx.tenant_id) as uow:
        stored = await store.find_receipt(uow.conn, ctx.tenant_id, key) if key is not None else None
        if stored is None:
            outcome = await apply(uow.conn)
            answer = ChunkAnswer(orjson.dumps(outcome.result), replayed=False)
            if key is not None:
                await store.save_receipt(uow.conn, ctx.tenant_id, key, ctx.device_id, body_hash, answer.json)
        elif stored["body_hash"] != body_hash:
            raise IdempotencyKeyReused("this chunk's key was already used with a different body",
                                       [{"field": "Idempotency-Key", "message": "reused"}])
        else:
            answer = ChunkAnswer(stored["response"].encode(), replayed=True)
            # A replay: its events may never have been published (a crash between commit and publish).
            messages = await _stored_messages(uow.conn, ctx.tenant_id, answer.data)
            outcome = store.ChunkOutcome(result={}, messages=messages)  # published again; nothing else redone
        uow.after_commit(functools.partial(_after_commit, services, ctx.tenant_id, outcome))
    return answer


async def _stored_messages(conn: asyncpg.Connection, tenant: str, result: dict[str, Any]) -> list[fe.Outgoing]:
    ids = [a["event_id"] for a in result.get("applied", []) if a.get("outcome") != "duplicate"]
    rows = await fe.events_by_id(conn, tenant, ids)
    order = {event_id: i for i, event_id in enumerate(ids)}
    return fe.messages(tenant, [fe.FieldEventRow(
        event_id=r["event_id"], type=r["type"], actor="", outcome=r["outcome"], occurred_at=r["occurred_at"],
        content_hash=r["content_hash"], device_id=r["device_id"], entity_type=r["entity_type"],
        record_id=r["record_id"], equipment_id=r["equipment_id"], version=r["version"],
        data=r["data"] if isinstance(r["data"], dict) else orjson.loads(r["data"]),
        effects=r["effects"] if isinstance(r["effects"], list) else orjson.loads(r["effects"]))
        for r in sorted(rows.values(), key=lambda r: order[r["event_id"]])])


async def _record_error(services: Services, ctx: store.SyncContext, message: str) -> None:
    with contextlib.suppress(Exception):  # the device's status is a courtesy; the answer is the 4xx
        async with services.tenant_tx(ctx.tenant_id) as conn:
            await store.record_device_error(conn, ctx.tenant_id, ctx.device_id, ctx.actor, message)


_PUBLISHING: set[asyncio.Task[None]] = set()


def _publish_later(services: Services, tenant: str, messages: list[fe.Outgoing], alert_events: list[Any]) -> None:
    """Publish committed events without holding the answer back: the device hears first, NATS acks follow.

    The rows are committed; a failure here is logged, and a device's retry (its stored answer)
    publishes the chunk's events again (``Nats-Msg-Id`` drops what JetStream already has).
    """
    if not messages and not alert_events:
        return

    async def run() -> None:
        try:
            await fe.publish(services.js, messages)
            await publish_alert_events(services.js, tenant, alert_events)
        except Exception:
            log.warning("field events of tenant %s not published", tenant, exc_info=True)

    task = asyncio.get_running_loop().create_task(run())
    _PUBLISHING.add(task)
    task.add_done_callback(_PUBLISHING.discard)


async def _after_commit(services: Services, tenant: str, outcome: store.ChunkOutcome) -> None:
    """What a committed chunk causes outside the database: NATS messages, the actors told, failure labels."""
    _publish_later(services, tenant, outcome.messages, outcome.alert_events)
    if outcome.reloads:
        await services.notify_actors(tenant, *sorted(outcome.reloads))
    if outcome.failures:
        await label_failures(services, tenant, outcome.failures)


async def label_failures(services: Services, tenant: str, failures: list[dict[str, Any]]) -> None:
    """Reported failures as labels for the failure model: the equipment's actor learns each one
    (`serve.predictions.report_failure`, through ``ctl.<tenant>``). A ``failure_repair`` maintenance record
    is not sent here: the actors read those from the table themselves."""
    for failure in failures:
        try:
            await report_failure(services, tenant, failure["equipment_id"], failure["at"])
        except Exception:  # the event is stored and published; the label waits for the next report
            log.warning("failure label for %s/%s not sent", tenant, failure["equipment_id"], exc_info=True)


# ---------------------------------------------------------------- conflicts and devices


async def list_conflicts(services: Services, tenant_id: str, q: ListQuery) -> tuple[list[dict[str, Any]], int]:
    return await tenant_page(services, tenant_id, store.CONFLICTS, q)


async def get_conflict(services: Services, tenant_id: str, conflict_id: str) -> dict[str, Any]:
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.get_conflict(conn, tenant_id, conflict_id)
    if row is None:
        raise NotFound(f"conflict {conflict_id} not found")
    return row


async def resolve_conflict(services: Services, principal: Principal, audit: AuditContext, conflict_id: str, *,
                           choose: str | None, data: Mapping[str, Any] | None, comment: str | None,
                           ) -> dict[str, Any]:
    """Settle a conflict held for review (`store.sync.resolve_conflict`, which writes its audit row); the
    record's new version has a chunk's effects after the commit. Answers with the settled conflict."""
    ctx = sync_context(principal, audit, f"review:{principal.subject}")
    async with tenant_work(services, principal.tenant_id, audit) as uow:
        outcome = await store.resolve_conflict(uow.conn, ctx, conflict_id, choose=choose, data=data, comment=comment)
        uow.after_commit(functools.partial(_after_commit, services, principal.tenant_id, outcome))
    return outcome.result


async def device_status(services: Services, tenant_id: str, device_id: str) -> dict[str, Any]:
    """Last sync, last cursor, conflicts waiting for review that involve the device, and its last error."""
    async with services.tenant_tx(tenant_id) as conn:
        row = await store.device_status(conn, tenant_id, device_id)
    if row is None:
        raise NotFound(f"device {device_id} has never synced")
    return row
