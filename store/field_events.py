"""Field events in the database and on NATS: the append-only log, what events cause, their publication.

``field_events`` holds every synced record change and every domain event (schema/field_events.py)
with its outcome; the entity tables are their projection (store/sync.py). What an event causes
is decided here from the projection's before and after states:

- a maintenance job that opens (started, no end) moves its equipment to ``maintenance`` and one
  that closes restores the status it had (the same rules as the REST API, serve/assets.py); the
  alert pipeline silences by the open job and the status (``wellpulse_silenced``);
- a finding with a severity opens (or raises) the equipment's ``inspection`` alert;
- a reported failure (or a ``failure_repair`` job) is a label for the failure model.

Events are published to ``field.<tenant>.<equipment>`` only after their transaction commits, in
batches per equipment (`schema.field_events.FieldEventBatch`).
"""

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from schema.severity import SEVERITY_RANK
from schema.subjects import field_subject
from store import alerts as alert_store

INSPECTION_RULE = "inspection"
MAINTENANCE_STARTED = "maintenance_started"
MAINTENANCE_FINISHED = "maintenance_finished"
FAILURE_REPORTED = "failure_reported"
INSPECTION_FINDING = "inspection_finding"


@dataclass
class FieldEventRow:
    """One row of ``field_events`` (``data``: the change's fields, or the domain event's payload)."""

    event_id: str
    type: str
    actor: str
    outcome: str
    occurred_at: datetime
    content_hash: str
    device_id: str | None = None
    entity_type: str | None = None
    record_id: str | None = None
    equipment_id: str | None = None
    base_version: int | None = None
    version: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    effects: list[str] = field(default_factory=list)
    upload_id: str | None = None


_COLUMNS = ("event_id uuid, type text, device_id text, actor text, entity_type text, record_id uuid,"
            " equipment_id text, base_version integer, version integer, outcome text, occurred_at timestamptz,"
            " data jsonb, effects jsonb, content_hash text, upload_id uuid")


async def insert_events(conn: asyncpg.Connection, tenant_id: str, rows: Sequence[FieldEventRow]) -> None:
    """Append events (one statement, whatever their number)."""
    if not rows:
        return
    payload = orjson.dumps([vars(r) for r in rows]).decode()
    names = ", ".join(part.split()[0] for part in _COLUMNS.split(", "))
    await conn.execute(
        f"INSERT INTO field_events (tenant_id, {names}) SELECT $1, {names}"
        f" FROM jsonb_to_recordset($2::text::jsonb) AS x({_COLUMNS})",
        tenant_id, payload)


async def events_by_id(conn: asyncpg.Connection, tenant_id: str, event_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    if not event_ids:
        return {}
    rows = await conn.fetch(
        "SELECT event_id::text AS event_id, type, device_id, entity_type, record_id::text AS record_id, equipment_id,"
        " base_version, version, outcome, occurred_at, data, effects, content_hash FROM field_events"
        " WHERE tenant_id = $1 AND event_id = ANY($2::uuid[])", tenant_id, list(event_ids))
    return {r["event_id"]: r for r in rows}


# ---------------------------------------------------------------- what events cause


def job_open(state: Mapping[str, Any] | None, now: datetime) -> bool:
    """A maintenance job holds its equipment's status: live, started, and no end given (not even a planned one)."""
    if not state or state.get("_deleted"):
        return False
    started = state.get("started_at")
    return state.get("ended_at") is None and started is not None and datetime.fromisoformat(started) <= now


def maintenance_effects(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                        now: datetime) -> list[str]:
    """What a change of one maintenance record means for its equipment.

    >>> from datetime import UTC
    >>> now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    >>> job = {"started_at": "2026-11-22T08:00:00Z", "ended_at": None, "kind": "preventive", "_deleted": False}
    >>> maintenance_effects(None, job, now), maintenance_effects(job, {**job, "ended_at": "2026-11-22T11:00:00Z"}, now)
    (['maintenance_started'], ['maintenance_finished'])
    >>> maintenance_effects(None, {**job, "kind": "failure_repair"}, now)
    ['maintenance_started', 'failure_reported']
    """
    was, now_open = job_open(before, now), job_open(after, now)
    effects = []
    if now_open and not was:
        effects.append(MAINTENANCE_STARTED)
    if was and not now_open:
        effects.append(MAINTENANCE_FINISHED)
    if after and not after.get("_deleted") and after.get("kind") == "failure_repair" and not (
            before and before.get("kind") == "failure_repair"):
        effects.append(FAILURE_REPORTED)
    return effects


def new_findings(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Findings with a severity that ``after`` has and ``before`` had not.

    >>> f = {"code": None, "description": "leak", "severity": "critical"}
    >>> new_findings({"findings": []}, {"findings": [f, {"description": "dusty", "severity": None}]}) == [f]
    True
    """
    if not after or after.get("_deleted"):
        return []
    old = list((before or {}).get("findings") or [])
    return [f for f in after.get("findings") or [] if f.get("severity") and f not in old]


async def follow_jobs(conn: asyncpg.Connection, tenant_id: str, equipment_id: str | None, *, opened: bool,
                      ) -> dict[str, str] | None:
    """The equipment's status after one of its jobs opened or closed (serve/assets.py's rules); None for a job
    of no (or no live) equipment."""
    row = await conn.fetchrow(
        "SELECT status, status_before_maintenance FROM equipment WHERE tenant_id = $1 AND id = $2"
        " AND deleted_at IS NULL FOR UPDATE", tenant_id, equipment_id)
    if row is None:
        return None
    status, before = row["status"], row["status_before_maintenance"]
    if opened and status in ("operational", "failed"):
        await conn.execute(
            "UPDATE equipment SET status = 'maintenance', status_before_maintenance = $3, updated_at = now()"
            " WHERE tenant_id = $1 AND id = $2", tenant_id, equipment_id, status)
        return {"from": status, "to": "maintenance"}
    if not opened and status == "maintenance" and before is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM maintenance_records WHERE tenant_id = $1 AND equipment_id = $2"
            " AND deleted_at IS NULL AND ended_at IS NULL AND started_at <= now())", tenant_id, equipment_id):
        await conn.execute(
            "UPDATE equipment SET status = $3, status_before_maintenance = NULL, updated_at = now()"
            " WHERE tenant_id = $1 AND id = $2", tenant_id, equipment_id, before)
        return {"from": "maintenance", "to": before}
    return None


@dataclass(frozen=True)
class FindingReport:
    equipment_id: str
    severity: str
    description: str
    event_id: str
    inspection_id: str | None
    at: datetime


async def raise_inspection_alerts(conn: asyncpg.Connection, tenant_id: str, reports: Sequence[FindingReport],
                                  *, actor: str) -> list[asyncpg.Record]:
    """Open (or raise, never lower) each equipment's ``inspection`` alert; returns the committed-to-be events."""
    worst: dict[str, FindingReport] = {}
    for r in reports:
        if r.equipment_id not in worst or SEVERITY_RANK[r.severity] > SEVERITY_RANK[worst[r.equipment_id].severity]:
            worst[r.equipment_id] = r
    if not worst:
        return []
    open_rows = await conn.fetch(
        "SELECT equipment_id, severity FROM alerts WHERE tenant_id = $1 AND rule_id = $2 AND state <> 'resolved'"
        " AND equipment_id = ANY($3::text[])", tenant_id, INSPECTION_RULE, list(worst))
    current = {r["equipment_id"]: r["severity"] for r in open_rows}
    changes = [
        alert_store.AlarmChange(kind="opened", equipment_id=r.equipment_id, rule_id=INSPECTION_RULE,
                                severity=r.severity, ts=r.at, message=f"inspection finding: {r.description}"[:500],
                                details={"event_id": r.event_id, "inspection_id": r.inspection_id,
                                         "finding": r.description})
        for r in worst.values()
        if r.equipment_id not in current or SEVERITY_RANK[r.severity] > SEVERITY_RANK[current[r.equipment_id]]
    ]
    return await alert_store.persist_changes(conn, tenant_id, changes, actor=actor)


# ---------------------------------------------------------------- FIELD stream


@dataclass(frozen=True)
class Outgoing:
    """Committed field events on their way to NATS: a `FieldEventBatch` as JSON."""

    subject: str
    payload: bytes
    msg_id: str


BATCH_EVENTS = 200  # events per message at most (a chunk of 1,000 readings of one pump: five messages)


def event_body(tenant_id: str, row: FieldEventRow) -> dict[str, Any]:
    """One stored event in the shape of `FieldEventMessage` (serialized from our own row, no validation)."""
    return {"tenant_id": tenant_id, "event_id": row.event_id, "type": row.type, "equipment_id": row.equipment_id,
            "occurred_at": row.occurred_at, "device_id": row.device_id, "entity": row.entity_type,
            "record_id": row.record_id, "version": row.version, "outcome": row.outcome, "effects": row.effects,
            "data": row.data}


def messages(tenant_id: str, rows: Sequence[FieldEventRow]) -> list[Outgoing]:
    """The FIELD stream messages of stored events: per equipment, in order, up to `BATCH_EVENTS` each.
    Events without equipment (production records) have no subject and are not published.

    ``Nats-Msg-Id`` is derived from the events' ids: the same events published again are dropped by
    JetStream's duplicate window.
    """
    by_equipment: dict[str, list[FieldEventRow]] = {}
    for row in rows:
        if row.equipment_id:
            by_equipment.setdefault(row.equipment_id, []).append(row)
    out = []
    for equipment_id, group in by_equipment.items():
        for i in range(0, len(group), BATCH_EVENTS):
            part = group[i:i + BATCH_EVENTS]
            digest = hashlib.sha256("".join(r.event_id for r in part).encode()).hexdigest()[:32]
            body = {"tenant_id": tenant_id, "equipment_id": equipment_id,
                    "events": [event_body(tenant_id, r) for r in part]}
            out.append(Outgoing(field_subject(tenant_id, equipment_id), orjson.dumps(body),
                                f"field-{tenant_id}-{digest}"))
    return out


async def publish(js: Any, messages: Sequence[Outgoing], *, window: int = 1000) -> None:
    """Publish committed events; ``Nats-Msg-Id`` makes a republish (a replayed chunk) harmless."""
    pending: list[Any] = []
    for m in messages:
        pending.append(await js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id}))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
