"""The HTTP ingest service: a parsed batch goes to ``tele.<tenant>.<equipment>``, the subject and consumer the
SCADA feeds use, once per ``Idempotency-Key``.

No database: the TenantActor stores what it consumes. A key's answer is kept in the NATS key-value bucket
``store.bus.IDEMPOTENCY_BUCKET`` (created at start-up with the streams, bound once per replica in
`Services.ready`), and the messages carry a ``Nats-Msg-Id`` made from the key (or the body), so a concurrent
retry is dropped by JetStream's dedup window as well.
"""

import hashlib
import json
from collections import defaultdict
from typing import Any

from nats.js.errors import KeyNotFoundError

from schema.api import IngestAccepted
from schema.errors import IdempotencyKeyReused
from schema.subjects import tele_msg_id, tele_subject
from schema.telemetry import TelemetryBatch
from serve.services import Services

__all__ = ["ingest"]


async def ingest(services: Services, tenant_id: str, batch: TelemetryBatch, *, body: bytes,
                 idempotency_key: str | None) -> tuple[IngestAccepted, bool]:
    """Publish the batch, one message per equipment; ``(answer, replayed)``, where a key seen before with the
    same body is answered as the first time without publishing (`IdempotencyKeyReused` with another body)."""
    body_hash = hashlib.sha256(body).hexdigest()
    kv_key = None
    if idempotency_key:
        kv_key = f"{tenant_id}.{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
        stored = await _stored_answer(services, kv_key)
        if stored is not None:
            if stored["body_hash"] != body_hash:
                raise IdempotencyKeyReused("Idempotency-Key was already used with a different body")
            return IngestAccepted(**{**stored["result"], "idempotent_replay": True}), True
    by_equipment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for reading in batch.readings:
        by_equipment[reading.equipment_id].append(reading.model_dump(mode="json"))
    for equipment_id, readings in by_equipment.items():
        # Same key (or same body) -> same Nats-Msg-Id: JetStream drops a concurrent retry.
        msg_id = tele_msg_id(tenant_id, f"http:{kv_key or body_hash}:{equipment_id}")
        await services.js.publish(tele_subject(tenant_id, equipment_id),
                                  json.dumps({"readings": readings}).encode(), headers={"Nats-Msg-Id": msg_id})
    result = IngestAccepted(messages=len(by_equipment), readings=sum(len(r["values"]) for r in
                            (x for v in by_equipment.values() for x in v)), equipment=sorted(by_equipment))
    if kv_key is not None:
        await services.idempotency.put(kv_key, json.dumps({"body_hash": body_hash,
                                                           "result": result.model_dump()}).encode())
    return result, False


async def _stored_answer(services: Services, kv_key: str) -> dict[str, Any] | None:
    try:
        entry = await services.idempotency.get(kv_key)
    except KeyNotFoundError:
        return None
    if entry.value is None:  # an entry without a value holds no answer
        return None
    answer: dict[str, Any] = json.loads(entry.value)
    return answer
