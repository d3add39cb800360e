"""The field-event service: one domain event appended without a sync chunk (``POST /v1/field-events``).

It takes the path of a chunk's ``events`` (`serve.sync.run_chunk` over `store.sync.apply_chunk`): stored
append-only, projected (a maintenance record opens or closes, a finding opens the equipment's ``inspection``
alert), published to ``field.<tenant>.<equipment>`` after the commit. The same event again is answered with its
first outcome; its id with other content is refused (`schema.errors.EventIdReused`).
"""

import asyncpg
import orjson

from schema.field_events import FieldEventStored, ParsedEvent
from serve.auth import Principal
from serve.services import Services
from serve.sync import run_chunk
from store import field_events as fe
from store import sync as store
from store.audit import AuditContext

__all__ = ["append_event"]


async def append_event(services: Services, principal: Principal, audit: AuditContext, event: ParsedEvent,
                       ) -> FieldEventStored:
    """Apply the event once (a device's sync status is tracked when the event names its device) and answer
    with what is stored of it; ``duplicate`` when it was received before."""
    device = event.device_id or f"{principal.kind.value}:{principal.subject}"
    ctx = store.SyncContext(tenant_id=principal.tenant_id, device_id=device, actor=principal.actor, audit=audit)
    tracked = event.device_id is not None

    async def apply(conn: asyncpg.Connection) -> store.ChunkOutcome:
        return await store.apply_chunk(conn, ctx, [], [event], pull=False, track_device=tracked)

    chunk = await run_chunk(services, ctx, key=None, body_hash=event.content_hash, apply=apply, track_device=tracked)
    answer = chunk.data["applied"][0]
    async with services.tenant_tx(principal.tenant_id) as conn:
        stored = (await fe.events_by_id(conn, principal.tenant_id, [event.event_id]))[event.event_id]
    effects = stored["effects"] if isinstance(stored["effects"], list) else orjson.loads(stored["effects"])
    return FieldEventStored(
        event_id=event.event_id, type=event.type, equipment_id=event.equipment_id,
        record_id=answer.get("record_id", answer["id"]), version=answer["version"], outcome=stored["outcome"],
        effects=effects, duplicate=answer["outcome"] == "duplicate")
