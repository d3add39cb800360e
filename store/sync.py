"""Offline sync in PostgreSQL: a chunk of device changes applied in one transaction, all or nothing.

`apply_chunk` runs inside the caller's tenant transaction (`Services.tenant_tx`):

1. serialise the tenant's sync writers (an advisory lock) and name the device as the origin of
   every change this transaction makes (``wellpulse.sync_origin``, read by the change-log trigger);
2. refuse event ids already used with other content (`EventIdReused`), unknown references (`NotFound`);
3. lock the records the chunk touches, with their per-field stamps (the ``sync_stamps`` column);
   fields changed through the REST API since sync last wrote a record get API stamps;
4. apply the changes in order with `models.sync.apply_change` (the tenant's strategy per entity
   type); nothing is written until every change has passed (a `DomainError` names the offending one);
5. write the records, stamps, aliases, field events, conflicts, their effects (equipment status,
   inspection alerts) and one audit row for the chunk plus one per conflict;
6. read the server changes after the device's cursor (``sync_changes``, written by triggers for
   every change whoever made it), leaving out the device's own changes applied as sent.

Publishing to NATS and telling the actors happen after the commit (serve/sync.py).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from models.sync import (
    DELETED,
    ROLES,
    Change,
    Clock,
    History,
    Outcome,
    Record,
    Stamp,
    SyncRuleError,
    apply_change,
    concurrent_events,
    decode_stamps,
    encode_stamps,
    external_stamps,
    history_needed,
    resolve_review,
    strategy_for,
)
from schema.errors import Conflict, DomainError, EventIdReused, InvalidInput, NotFound
from schema.field_events import ParsedEvent
from schema.sync import ENTITY_MODELS, ParsedChange, error_path, patch_model
from store import audit as audit_log
from store import field_events as fe
from store.audit import AuditContext
from store.listing import FieldSpec, ResourceSpec

APPLY_LOCK = "sync_apply:"
CHANGES_LOCK = "sync_changes:"
_EVENT_NAMESPACE = uuid.UUID("8a3d4c1e-7f25-4b8e-a0a6-5b1d2c3e4f50")


# ---------------------------------------------------------------- entity tables


@dataclass(frozen=True)
class EntityTable:
    entity: str
    table: str
    fields: tuple[str, ...]
    natural_key: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()  # columns sync reads and writes besides the fields

    @property
    def read_columns(self) -> str:
        return ", ".join(["id::text AS id", *self.fields, *self.extra, "version", "created_by", "deleted_at",
                          "updated_at", "sync_stamps"])


def _table(entity: str, table: str, **kw: Any) -> EntityTable:
    return EntityTable(entity, table, tuple(ENTITY_MODELS[entity].model_fields), **kw)


TABLES: dict[str, EntityTable] = {t.entity: t for t in (
    _table("manual_reading", "manual_readings"),
    _table("production_record", "production_records", natural_key=("well_id", "day")),
    _table("maintenance_record", "maintenance_records"),
    _table("inspection", "inspections"),
    _table("note", "field_notes"),
    _table("attachment", "attachments", extra=("kept_from",)),
)}


def json_value(value: Any) -> Any:
    """A column value as the JSON value sync compares (pydantic's JSON form: UTC times end in Z)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def row_state(table: EntityTable, row: Mapping[str, Any]) -> dict[str, Any]:
    state = {name: json_value(row[name]) for name in table.fields}
    state[DELETED] = row["deleted_at"] is not None
    return state


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class SyncContext:
    tenant_id: str
    device_id: str
    actor: str
    audit: AuditContext
    upload_id: str | None = None


@dataclass
class ChunkOutcome:
    result: dict[str, Any]
    messages: list[Any] = field(default_factory=list)  # field_events.Outgoing, published after commit
    alert_events: list[asyncpg.Record] = field(default_factory=list)
    reloads: set[str] = field(default_factory=set)
    failures: list[dict[str, Any]] = field(default_factory=list)  # equipment_id, at, event_id, description
    applied: int = 0
    conflicts: int = 0


@dataclass
class _Item:
    """One record the chunk touches, as loaded and as it becomes."""

    table: EntityTable
    record_id: str
    before: Record | None
    record: Record | None
    created_by: str | None = None
    pending_conflict: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    deleted_at: Any = None
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    changed: bool = False
    last_event: int | None = None  # index into the chunk's field event rows
    last_path: str = ""
    written_fields: set[str] = field(default_factory=set)
    as_sent: bool = True  # every change of the chunk to it applied exactly as sent
    validate: bool = False  # a create as sent was validated when parsed; anything else is checked again


@dataclass
class _ConflictDraft:
    id: str
    entity: str
    record_id: str
    strategy: str
    status: str
    outcome: str
    base_version: int
    server: dict[str, Any]
    versions: list[dict[str, Any]]
    fields: list[dict[str, Any]]
    result: dict[str, Any] | None
    device_ids: list[str]
    event_id: str
    copy_id: str | None = None
    append: bool = False  # joins a pending conflict stored earlier
    event_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.event_id not in self.event_ids:
            self.event_ids.append(self.event_id)


# ---------------------------------------------------------------- receipts


async def find_receipt(conn: asyncpg.Connection, tenant_id: str, key: str) -> asyncpg.Record | None:
    """The stored answer to a chunk; waits for a concurrent attempt at the same chunk to finish first."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sync_receipt:' || $1 || ':' || $2))", tenant_id, key)
    return await conn.fetchrow("SELECT body_hash, response, device_id FROM sync_receipts WHERE tenant_id = $1"
                               " AND key = $2", tenant_id, key)


async def save_receipt(conn: asyncpg.Connection, tenant_id: str, key: str, device_id: str, body_hash: str,
                       response: bytes) -> None:
    await conn.execute("INSERT INTO sync_receipts (tenant_id, key, device_id, body_hash, response)"
                       " VALUES ($1, $2, $3, $4, $5)", tenant_id, key, device_id, body_hash, response.decode())


# ---------------------------------------------------------------- the chunk


async def apply_chunk(conn: asyncpg.Connection, ctx: SyncContext, changes: Sequence[ParsedChange],
                      events: Sequence[ParsedEvent] = (), *, cursor: int = 0, pull: bool = True,
                      pull_limit: int = 1000, now: datetime | None = None, track_device: bool = True,
                      ) -> ChunkOutcome:
    """Apply one chunk in the caller's transaction; raise a `DomainError` (nothing applied) if any change fails.

    ``track_device``: keep the device's sync status (not for a single event posted without a device).
    """
    now = now or datetime.now(UTC)
    tenant = ctx.tenant_id
    await _begin(conn, tenant, ctx.device_id)
    if pull:
        await _check_cursor(conn, tenant, cursor)
    chunk = await _ChunkWork.load(conn, ctx, changes, events)
    for pc in changes:
        await chunk.apply_change(pc)
    for ev in events:
        await chunk.apply_event(ev)
    await chunk.check()
    outcome = await chunk.write(now)
    result_changes: list[dict[str, Any]] = []
    new_cursor, has_more = cursor, False
    if pull:
        result_changes, new_cursor, has_more = await changes_since(conn, tenant, ctx.device_id, cursor, pull_limit)
    if track_device:
        await touch_device(conn, tenant, ctx.device_id, ctx.actor, new_cursor if pull else None)
    outcome.result = {
        "device_id": ctx.device_id, "applied": chunk.applied,
        "conflicts": [_settlement(d) for d in chunk.drafts],
        "changes": result_changes, "cursor": new_cursor, "has_more": has_more,
    }
    return outcome


async def _check_cursor(conn: asyncpg.Connection, tenant: str, cursor: int) -> None:
    latest = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM sync_changes WHERE tenant_id = $1", tenant)
    if cursor > latest:
        raise InvalidInput("cursor is ahead of the server", [
            {"field": "cursor", "message": f"the latest server change is {latest}; a cursor never passes it"}])


@dataclass
class _ChunkWork:
    """One chunk being applied: what was loaded for it (`load`), and what its changes and events make, gathered
    in memory (`apply_change`, `apply_event`) until every one has passed (`check`) and it is written (`write`)."""

    conn: asyncpg.Connection
    ctx: SyncContext
    strategies: dict[str, str]
    duplicates: dict[str, asyncpg.Record]  # event ids stored before with the same content
    aliases: dict[tuple[str, str], str]  # (entity, id sent) -> the record it landed on
    work: dict[tuple[str, str], _Item]  # (entity, record id) -> the record as loaded and as it becomes
    by_key: dict[tuple[Any, ...], str]  # a live production record's natural key -> its id
    applied: list[dict[str, Any]] = field(default_factory=list)  # the answer's ``applied``, in the chunk's order
    rows: list[fe.FieldEventRow] = field(default_factory=list)  # the field events to store
    drafts: list[_ConflictDraft] = field(default_factory=list)
    new_aliases: list[tuple[str, str, str]] = field(default_factory=list)  # (entity, alias id, record id)
    chunk_changes: dict[str, Change] = field(default_factory=dict)  # by event id: history for later changes
    errors: list[tuple[type[DomainError], dict[str, str]]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    findings: list[fe.FindingReport] = field(default_factory=list)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same event twice: the second a duplicate

    @classmethod
    async def load(cls, conn: asyncpg.Connection, ctx: SyncContext, changes: Sequence[ParsedChange],
                   events: Sequence[ParsedEvent]) -> _ChunkWork:
        """Refuse reused event ids and unknown references; lock and read the records the chunk may touch."""
        tenant = ctx.tenant_id
        strategies = await tenant_strategies(conn, tenant)
        duplicates = await _duplicates(conn, tenant, changes, events)
        aliases = await _aliases(conn, tenant, changes)
        work, by_key = await _load(conn, tenant, changes, events, aliases, duplicates)
        await _check_references(conn, tenant, changes, events, duplicates)
        return cls(conn, ctx, strategies, duplicates, aliases, work, by_key)

    def _repeated(self, event_id: str) -> bool:
        """Answer a change received before (in an earlier chunk or this one) as a duplicate."""
        if event_id in self.duplicates:
            self.applied.append(_duplicate_answer(event_id, self.duplicates[event_id]))
            return True
        if event_id in self.seen:
            first = self.seen[event_id]
            self.applied.append(_entry(event_id, first.get("id"), first.get("record_id"), first.get("version"),
                                       "duplicate"))
            return True
        return False

    def _answered(self, entry: dict[str, Any]) -> None:
        self.applied.append(entry)
        self.seen[entry["event_id"]] = entry

    async def apply_change(self, pc: ParsedChange) -> None:
        """A device's change to a record (``changes``): its row of the answer and its field event."""
        if self._repeated(pc.event_id):
            return
        table = TABLES[pc.entity]
        record_id = self.aliases.get((pc.entity, pc.record_id), pc.record_id)
        item = self.work.get((pc.entity, record_id))
        if (item is None or item.record is None) and pc.op == "create" and table.natural_key:
            existing = self.by_key.get(tuple(pc.data.get(k) for k in table.natural_key))
            if existing is not None and existing != record_id:  # the well's day has a record: the create joins it
                self.new_aliases.append((pc.entity, pc.record_id, existing))
                self.aliases[(pc.entity, pc.record_id)] = record_id = existing
                item = self.work[(pc.entity, record_id)]
        if item is None:
            item = self.work[(pc.entity, record_id)] = _Item(table, record_id, None, None)
        change = Change(pc.event_id, self.ctx.device_id, pc.op, record_id, pc.version, pc.client_ts, pc.data)
        out = await self._run(item, change, pc.path, len(self.rows), defaults=pc.defaults)
        if out is None:
            return
        if table.natural_key and not out.record.state.get(DELETED):
            self.by_key[tuple(out.record.state.get(k) for k in table.natural_key)] = record_id
        self.rows.append(fe.FieldEventRow(
            event_id=pc.event_id, type=f"{pc.entity}.{pc.op}", actor=self.ctx.actor, outcome=out.kind,
            occurred_at=pc.client_ts, content_hash=pc.content_hash, device_id=self.ctx.device_id,
            entity_type=pc.entity, record_id=record_id, equipment_id=out.record.state.get("equipment_id"),
            base_version=pc.version, version=out.record.version, data=pc.data, upload_id=self.ctx.upload_id))
        self._answered(_entry(pc.event_id, pc.record_id, record_id, out.record.version, out.kind,
                              _conflict_of(self.drafts, pc.event_id) if out.is_conflict else None))

    async def apply_event(self, ev: ParsedEvent) -> None:
        """A domain event (``events``): the maintenance jobs it opens or closes, the failure or finding it
        reports, its row of the answer and its field event."""
        if self._repeated(ev.event_id):
            return
        device = ev.device_id or self.ctx.device_id
        ev_record, ev_version, ev_outcome = await self._apply_to_jobs(ev, device)
        effects: list[str] = []
        if ev.type == fe.FAILURE_REPORTED:
            effects.append(fe.FAILURE_REPORTED)
            self.failures.append({"equipment_id": ev.equipment_id, "at": ev.occurred_at, "event_id": ev.event_id,
                                  "description": ev.data.get("description", "")})
        elif ev.type == fe.INSPECTION_FINDING:
            effects.append(fe.INSPECTION_FINDING)
            self.findings.append(fe.FindingReport(ev.equipment_id, ev.data["severity"], ev.data["description"],
                                                  ev.event_id, ev.data.get("inspection_id"), ev.occurred_at))
        entity = "maintenance_record" if ev_record else None
        self.rows.append(fe.FieldEventRow(
            event_id=ev.event_id, type=ev.type, actor=self.ctx.actor, outcome=ev_outcome, occurred_at=ev.occurred_at,
            content_hash=ev.content_hash, device_id=device, entity_type=entity, record_id=ev_record,
            equipment_id=ev.equipment_id, version=ev_version, data=ev.data, effects=effects,
            upload_id=self.ctx.upload_id))
        self._answered(_entry(ev.event_id, ev_record, ev_record, ev_version, ev_outcome,
                              _conflict_of(self.drafts, ev.event_id), entity=entity, op=ev.type))

    async def _apply_to_jobs(self, ev: ParsedEvent, device: str) -> tuple[str | None, int | None, str]:
        """Open or close the event's maintenance jobs: the record it lands on last, its version, the outcome."""
        index = len(self.rows)
        ev_record: str | None = None
        ev_version: int | None = None
        ev_outcome = "recorded"
        for target, patch, op in _event_targets(ev, self.work):
            item = self.work.setdefault(("maintenance_record", target),
                                        _Item(TABLES["maintenance_record"], target, None, None))
            if op == "update" and item.record is not None:
                if item.record.state.get("equipment_id") != ev.equipment_id:
                    self.errors.append((InvalidInput, {
                        "field": f"{ev.path}.data.maintenance_id",
                        "message": f"maintenance {target} is not a job of {ev.equipment_id}"}))
                    continue
                if item.record.state.get("ended_at") is not None:
                    ev_record, ev_version = target, item.record.version  # already finished: nothing to change
                    continue
            base = item.record.version if item.record is not None and op == "update" else 0
            change = Change(ev.event_id, device, op, target, base, ev.occurred_at, patch)
            out = await self._run(item, change, ev.path, index, id_field="data.maintenance_id")
            if out is not None:
                ev_record, ev_version, ev_outcome = target, out.record.version, out.kind
        return ev_record, ev_version, ev_outcome

    async def _run(self, item: _Item, change: Change, path: str, event_index: int, *,
                   defaults: dict[str, Any] | None = None, id_field: str = "id") -> Outcome | None:
        """Apply one change to its record with the tenant's strategy; ``None`` (and an error noted, so that
        every error of the chunk is answered at once) when a rule refuses it."""
        strategy = strategy_for(item.table.entity, self.strategies)
        history = None
        if history_needed(item.record, change, strategy):
            history = await _history(self.conn, self.ctx.tenant_id, item, change, self.chunk_changes)
        try:
            out = apply_change(item.record, change, strategy, ROLES[item.table.entity], defaults=defaults,
                               history=history)
        except SyncRuleError as exc:
            where = id_field if exc.field == "id" else exc.field
            self.errors.append((NotFound if isinstance(exc, NotFound) else InvalidInput,
                                {"field": f"{path}.{where}", "message": exc.message}))
            return None
        before = item.record
        item.record = out.record
        item.states[out.record.version] = dict(out.record.state)
        item.changed = True
        item.last_event, item.last_path = event_index, path
        item.written_fields.update(change.patch())
        item.validate = item.validate or before is not None or defaults is None or out.kind != "applied"
        item.as_sent = item.as_sent and out.kind == "applied"
        self.chunk_changes[change.event_id] = change
        if out.is_conflict:
            self.drafts.extend(_drafts(item, before, change, out, strategy.name, history, self.drafts))
        for copy in out.copies:  # keep_both: the losing version kept as a record of its own
            self.work[(item.table.entity, copy.record_id)] = _Item(
                item.table, copy.record_id, None,
                Record(dict(copy.state), 1, {k: Stamp(1, copy.device, copy.clock) for k in copy.state}),
                extra={"kept_from": item.record_id}, changed=True, last_event=event_index, last_path=path,
                written_fields=set(copy.state), as_sent=False)
        return out

    async def check(self) -> None:
        """Refuse the whole chunk when a change failed or would leave a record invalid (nothing is written yet)."""
        if self.errors:
            refusal, first = self.errors[0]
            raise refusal("no change of the chunk was applied: " + first["message"], [d for _, d in self.errors][:100])
        _validate_states(self.work)
        await _check_natural_keys(self.conn, self.ctx.tenant_id, self.work)

    async def write(self, now: datetime) -> ChunkOutcome:
        """Write the records, aliases, effects, field events, conflicts and audit rows; the outcome without its
        answer (`apply_chunk` adds what is pulled)."""
        conn, tenant = self.conn, self.ctx.tenant_id
        changed = [i for i in self.work.values() if i.changed and i.record is not None]
        await _lock_equipment(conn, tenant, changed)
        await _write_records(conn, tenant, self.ctx, changed, now)
        if self.new_aliases:
            await conn.executemany(
                "INSERT INTO sync_record_aliases (tenant_id, entity_type, alias_id, record_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING", [(tenant, e, a, r) for e, a, r in self.new_aliases])
        outcome = ChunkOutcome(result={}, failures=self.failures)
        await _effects(conn, self.ctx, changed, self.rows, self.findings, outcome, now)
        await fe.insert_events(conn, tenant, self.rows)
        await _write_conflicts(conn, tenant, self.drafts, now)
        await _audit(conn, self.ctx, self.rows, self.drafts)
        outcome.messages = fe.messages(tenant, self.rows)
        outcome.applied = sum(1 for a in self.applied if a["outcome"] != "duplicate")
        outcome.conflicts = len(self.drafts)
        return outcome


async def _begin(conn: asyncpg.Connection, tenant: str, origin: str) -> None:
    """One sync writer per tenant at a time; ``origin`` names who made this transaction's changes (the log's origin)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1 || $2)),"
                       " set_config('wellpulse.sync_origin', $3, true)", APPLY_LOCK, tenant, origin)


async def _lock_equipment(conn: asyncpg.Connection, tenant: str, items: Sequence[_Item]) -> None:
    """Lock the equipment whose jobs change before the first write: the REST API locks it before its own
    writes too, and the change-log lock comes with the first write; the same order on both sides."""
    ids = sorted({equipment for i in items if i.table.entity == "maintenance_record"
                  for s in ((i.before.state if i.before else {}), (i.record.state if i.record else {}))
                  if (equipment := s.get("equipment_id"))})
    if ids:
        await conn.execute("SELECT 1 FROM equipment WHERE tenant_id = $1 AND id = ANY($2::text[]) ORDER BY id"
                           " FOR UPDATE", tenant, ids)


def _conflict_of(drafts: Sequence[_ConflictDraft], event_id: str) -> str | None:
    for d in reversed(drafts):  # the newest first: a change's own conflict was just made
        if event_id in d.event_ids:
            return d.id
    return None


def _entry(event_id: str, record_id: str | None, landed_on: str | None, version: int | None, outcome: str,
           conflict_id: str | None = None, *, entity: str | None = None, op: str | None = None) -> dict[str, Any]:
    """One line of ``applied``, kept short (a chunk has thousands): what the device cannot know already."""
    entry: dict[str, Any] = {"event_id": event_id, "id": record_id, "version": version, "outcome": outcome}
    if landed_on is not None and landed_on != record_id:
        entry["record_id"] = landed_on
    if conflict_id is not None:
        entry["conflict_id"] = conflict_id
    if entity is not None:
        entry["entity"] = entity
    if op is not None:
        entry["op"] = op
    return entry


def _duplicate_answer(event_id: str, prev: asyncpg.Record) -> dict[str, Any]:
    """A change received before: applied once, answered with where it landed then."""
    return _entry(event_id, prev["record_id"], prev["record_id"], prev["version"], "duplicate",
                  entity=prev["entity_type"], op=prev["type"])


async def tenant_strategies(conn: asyncpg.Connection, tenant_id: str) -> dict[str, str]:
    value = await conn.fetchval("SELECT settings -> 'sync_strategies' FROM tenants WHERE id = $1", tenant_id)
    if isinstance(value, str):  # a connection without the jsonb codec
        value = json.loads(value)
    return dict(value or {})


async def _duplicates(conn: asyncpg.Connection, tenant: str, changes: Sequence[ParsedChange],
                      events: Sequence[ParsedEvent]) -> dict[str, asyncpg.Record]:
    """Event ids already stored with the same content (applied once: skipped); other content: `EventIdReused`."""
    items: list[ParsedChange | ParsedEvent] = [*changes, *events]
    stored = await fe.events_by_id(conn, tenant, [i.event_id for i in items])
    errors: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for item in items:
        prev = stored.get(item.event_id)
        if prev is not None and prev["content_hash"] != item.content_hash:
            errors.append({"field": f"{item.path}.event_id",
                           "message": f"event {item.event_id} was already received with other content"})
        elif item.event_id in seen and seen[item.event_id] != item.content_hash:
            errors.append({"field": f"{item.path}.event_id",
                           "message": f"event {item.event_id} appears twice in the chunk with different content"})
        seen[item.event_id] = item.content_hash
    if errors:
        raise EventIdReused("an event id was reused with different content", errors)
    # The same event twice in one chunk: the second is a duplicate of the first.
    return stored


async def _aliases(conn: asyncpg.Connection, tenant: str, changes: Sequence[ParsedChange]) -> dict[tuple[str, str],
                                                                                                    str]:
    ids = [c.record_id for c in changes if TABLES[c.entity].natural_key]
    if not ids:
        return {}
    rows = await conn.fetch("SELECT entity_type, alias_id::text AS alias_id, record_id::text AS record_id"
                            " FROM sync_record_aliases WHERE tenant_id = $1 AND alias_id = ANY($2::uuid[])",
                            tenant, ids)
    return {(r["entity_type"], r["alias_id"]): r["record_id"] for r in rows}


def _event_targets(ev: ParsedEvent, work: Mapping[tuple[str, str], _Item]) -> list[tuple[str, dict[str, Any], str]]:
    """The maintenance records a domain event changes: (record id, fields, op)."""
    when = json_value(ev.occurred_at)
    if ev.type == fe.MAINTENANCE_STARTED:
        target = ev.data.get("maintenance_id") or str(uuid.uuid5(_EVENT_NAMESPACE, ev.event_id))
        patch = {"equipment_id": ev.equipment_id, "kind": ev.data.get("kind", "preventive"),
                 "description": ev.data.get("description", ""), "started_at": when}
        if ev.data.get("performed_by"):
            patch["performed_by"] = ev.data["performed_by"]
        return [(target, patch, "create")]
    if ev.type == fe.MAINTENANCE_FINISHED:
        if ev.data.get("maintenance_id"):
            return [(ev.data["maintenance_id"], {"ended_at": when}, "update")]
        return [(rid, {"ended_at": when}, "update") for (entity, rid), item in sorted(work.items())
                if entity == "maintenance_record" and item.record is not None
                and item.record.state.get("equipment_id") == ev.equipment_id
                and item.record.state.get("ended_at") is None and not item.record.state.get(DELETED)]
    return []


async def _load(conn: asyncpg.Connection, tenant: str, changes: Sequence[ParsedChange], events: Sequence[ParsedEvent],
                aliases: Mapping[tuple[str, str], str], duplicates: Mapping[str, Any],
                ) -> tuple[dict[tuple[str, str], _Item], dict[tuple[Any, ...], str]]:
    """Lock and read every record the chunk may touch, with its stamps."""
    wanted: dict[str, set[str]] = defaultdict(set)
    keys: list[tuple[str, str]] = []
    for c in changes:
        if c.event_id in duplicates:
            continue
        wanted[c.entity].add(aliases.get((c.entity, c.record_id), c.record_id))
        if c.op == "create" and TABLES[c.entity].natural_key:
            keys.append((str(c.data.get("well_id")), str(c.data.get("day"))))
    open_jobs_of: set[str] = set()
    for ev in events:
        if ev.event_id in duplicates:
            continue
        if ev.data.get("maintenance_id"):
            wanted["maintenance_record"].add(ev.data["maintenance_id"])
        elif ev.type == fe.MAINTENANCE_FINISHED:
            open_jobs_of.add(ev.equipment_id)
        elif ev.type == fe.MAINTENANCE_STARTED:
            wanted["maintenance_record"].add(str(uuid.uuid5(_EVENT_NAMESPACE, ev.event_id)))
    rows_by_entity: dict[str, list[asyncpg.Record]] = {}
    for entity, ids in wanted.items():
        t = TABLES[entity]
        rows_by_entity[entity] = list(await conn.fetch(
            f"SELECT {t.read_columns} FROM {t.table} WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
            f" ORDER BY id FOR UPDATE", tenant, sorted(ids)))
    if keys:
        t = TABLES["production_record"]
        rows_by_entity.setdefault("production_record", []).extend(await conn.fetch(
            f"SELECT {t.read_columns} FROM {t.table} WHERE tenant_id = $1 AND deleted_at IS NULL"
            f" AND (well_id, day) IN (SELECT w, d::date FROM unnest($2::text[], $3::text[]) AS k(w, d))"
            f" ORDER BY id FOR UPDATE", tenant, [k[0] for k in keys], [k[1] for k in keys]))
    if open_jobs_of:
        t = TABLES["maintenance_record"]
        rows_by_entity.setdefault("maintenance_record", []).extend(await conn.fetch(
            f"SELECT {t.read_columns} FROM {t.table} WHERE tenant_id = $1 AND equipment_id = ANY($2::text[])"
            f" AND deleted_at IS NULL AND ended_at IS NULL ORDER BY id FOR UPDATE", tenant, sorted(open_jobs_of)))
    work: dict[tuple[str, str], _Item] = {}
    by_key: dict[tuple[Any, ...], str] = {}
    for entity, rows in rows_by_entity.items():
        t = TABLES[entity]
        packed = {row["id"]: _jsonb(row["sync_stamps"]) or {} for row in rows}
        # Changed outside sync (the REST API) since sync last wrote it: which fields, from the log.
        stale = [(row["id"], packed[row["id"]].get("@v", 0)) for row in rows
                 if packed[row["id"]].get("@v", 0) < row["version"]]
        known = await states_at(conn, tenant, t, [p for p in stale if p[1] > 0])
        for row in rows:
            if (entity, row["id"]) in work:
                continue
            state = row_state(t, row)
            stamps_of = packed[row["id"]]
            stamps = decode_stamps(stamps_of, state)
            synced_version = stamps_of.get("@v", 0)
            if synced_version < row["version"]:
                stamps = external_stamps(stamps, known.get(row["id"]) if synced_version else None, state,
                                         row["version"], row["updated_at"])
            pending = stamps_of.get("@pending")
            record = Record(state, row["version"], stamps, pending_review=bool(pending))
            work[(entity, row["id"])] = _Item(
                t, row["id"], record, record, created_by=row["created_by"], pending_conflict=pending,
                extra={k: json_value(row[k]) for k in t.extra}, deleted_at=row["deleted_at"],
                states={row["version"]: dict(state)})
            if t.natural_key and not state[DELETED]:
                by_key[tuple(state.get(k) for k in t.natural_key)] = row["id"]
    return work, by_key


def _jsonb(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def dumps(value: Any) -> str:
    """JSON text for a ``$n::text::jsonb`` parameter (the pool's jsonb codec is not involved)."""
    return orjson.dumps(value, default=json_value).decode()


async def states_at(conn: asyncpg.Connection, tenant: str, t: EntityTable, pairs: Sequence[tuple[str, int]],
                    ) -> dict[str, dict[str, Any]]:
    """Each record's state at the latest logged version not after the one given (from ``sync_changes``)."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        f"SELECT q.record_id::text AS record_id, r.* FROM unnest($3::uuid[], $4::int[]) AS q(record_id, at_version)"
        f" CROSS JOIN LATERAL (SELECT c.data FROM sync_changes c WHERE c.tenant_id = $1 AND c.entity_type = $2"
        f" AND c.record_id = q.record_id AND c.version <= q.at_version ORDER BY c.version DESC, c.seq DESC LIMIT 1) s"
        f" CROSS JOIN LATERAL jsonb_populate_record(NULL::{t.table}, s.data) AS r",
        tenant, t.entity, [p[0] for p in pairs], [p[1] for p in pairs])
    return {r["record_id"]: row_state(t, r) for r in rows}


async def _history(conn: asyncpg.Connection, tenant: str, item: _Item, change: Change,
                   chunk_changes: Mapping[str, Change]) -> History:
    assert item.record is not None  # noqa: S101  narrows a type; not a check of input
    if change.base_version == 0:
        base = None
    elif change.base_version in item.states:
        base = item.states[change.base_version]
    else:
        base = (await states_at(conn, tenant, item.table, [(item.record_id, change.base_version)])).get(item.record_id)
    ids = concurrent_events(item.record, change)
    versions = {e: chunk_changes[e] for e in ids if e in chunk_changes}
    stored = await fe.events_by_id(conn, tenant, [e for e in ids if e not in versions])
    for event_id, row in stored.items():
        versions[event_id] = _change_of(row, item.record_id)
    return History(base, versions)


def _change_of(row: asyncpg.Record, record_id: str) -> Change:
    """A stored field event as the change it made to ``record_id``."""
    data = _jsonb(row["data"]) or {}
    kind = row["type"]
    if kind == fe.MAINTENANCE_STARTED:
        patch = {"equipment_id": row["equipment_id"], "kind": data.get("kind", "preventive"),
                 "description": data.get("description", ""), "started_at": json_value(row["occurred_at"])}
        return Change(row["event_id"], row["device_id"] or "", "create", record_id, 0, row["occurred_at"], patch)
    if kind == fe.MAINTENANCE_FINISHED:
        return Change(row["event_id"], row["device_id"] or "", "update", record_id, row["base_version"] or 0,
                      row["occurred_at"], {"ended_at": json_value(row["occurred_at"])})
    op = kind.rsplit(".", 1)[-1]
    return Change(row["event_id"], row["device_id"] or "", op, record_id, row["base_version"] or 0,
                  row["occurred_at"], data)


async def _check_references(conn: asyncpg.Connection, tenant: str, changes: Sequence[ParsedChange],
                            events: Sequence[ParsedEvent], duplicates: Mapping[str, Any]) -> None:
    """Equipment and wells named by the chunk exist in the caller's tenant (another tenant's are unknown)."""
    uses: dict[str, list[tuple[str, str]]] = {"equipment": [], "wells": []}
    for c in changes:
        if c.event_id in duplicates:
            continue
        for name, table in (("equipment_id", "equipment"), ("well_id", "wells")):
            if c.data.get(name):
                uses[table].append((c.data[name], f"{c.path}.data.{name}"))
    for ev in events:
        if ev.event_id not in duplicates:
            uses["equipment"].append((ev.equipment_id, f"{ev.path}.equipment_id"))
    errors = []
    for table, refs in uses.items():
        if not refs:
            continue
        found = {r["id"] for r in await conn.fetch(
            f"SELECT id FROM {table} WHERE tenant_id = $1 AND id = ANY($2::text[]) AND deleted_at IS NULL",
            tenant, sorted({v for v, _ in refs}))}
        errors += [{"field": path, "message": f"no {'equipment' if table == 'equipment' else 'well'} {value!r}"}
                   for value, path in refs if value not in found]
    if errors:
        raise NotFound("the chunk names something that does not exist", errors[:100])


def _validate_states(work: Mapping[tuple[str, str], _Item]) -> None:
    """Every record the chunk changed must still be a valid record (e.g. ended_at not before started_at)."""
    errors = []
    for item in work.values():
        if not item.changed or not item.validate or item.record is None or item.record.pending_review:
            continue
        model = ENTITY_MODELS[item.table.entity]
        try:
            model.model_validate({k: v for k, v in item.record.state.items() if k != DELETED})
        except ValidationError as exc:
            for e in exc.errors():
                loc = tuple(e.get("loc", ()))
                # Rows written through the REST API may not meet every rule of ours: only what we wrote counts.
                if loc and loc[0] not in item.written_fields:
                    continue
                errors.append({"field": error_path(f"{item.last_path}.data", loc), "message": str(e.get("msg"))})
    if errors:
        raise InvalidInput("a change would leave a record invalid", errors[:100])


async def _check_natural_keys(conn: asyncpg.Connection, tenant: str, work: Mapping[tuple[str, str], _Item]) -> None:
    """One live production record per well and day, also after updates that move a record."""
    live: dict[tuple[Any, ...], _Item] = {}
    errors = []
    for item in work.values():
        t = item.table
        if not t.natural_key or item.record is None or item.record.state.get(DELETED):
            continue
        key = tuple(item.record.state.get(k) for k in t.natural_key)
        if key in live and live[key].record_id != item.record_id:
            errors.append({"field": f"{item.last_path}.data.day",
                           "message": f"two records for well {key[0]} on {key[1]}"})
        live[key] = item
    moved = [(k, i) for k, i in live.items() if i.changed and (i.before is None or tuple(
        i.before.state.get(f) for f in i.table.natural_key) != k)]
    if moved:
        rows = await conn.fetch(
            "SELECT id::text AS id, well_id, day FROM production_records WHERE tenant_id = $1 AND deleted_at IS NULL"
            " AND (well_id, day) IN (SELECT w, d::date FROM unnest($2::text[], $3::text[]) AS k(w, d))",
            tenant, [k[0] for k, _ in moved], [k[1] for k, _ in moved])
        taken = {(r["well_id"], r["day"].isoformat()): r["id"] for r in rows}
        for key, item in moved:
            other = taken.get(key)
            if other is not None and other != item.record_id and ("production_record", other) not in work:
                errors.append({"field": f"{item.last_path}.data.day",
                               "message": f"well {key[0]} already has record {other} on {key[1]}"})
    if errors:
        raise Conflict("one production record per well and day", errors[:100])


def _drafts(item: _Item, before: Record | None, change: Change, out: Outcome, strategy: str,
            history: History | None, drafts: list[_ConflictDraft]) -> list[_ConflictDraft]:
    """The conflict rows an outcome makes (or the pending one it joins)."""
    assert before is not None  # noqa: S101  narrows a type; not a check of input
    incoming = {"event_id": change.event_id, "device_id": change.device, "client_ts": json_value(change.ts),
                "base_version": change.base_version, "data": dict(change.data) if change.op != "delete"
                else {DELETED: True}}
    if out.kind == "pending":
        incoming["state"] = out.candidates.get(change.event_id)
        if before.pending_review:
            for d in drafts:  # a pending conflict made earlier in this very chunk
                if d.status == "pending" and d.record_id == item.record_id and d.entity == item.table.entity:
                    d.versions.append(incoming)
                    d.device_ids = sorted({*d.device_ids, change.device})
                    d.event_ids.append(change.event_id)
                    return []
            return [_ConflictDraft(item.pending_conflict or str(uuid.uuid4()), item.table.entity, item.record_id,
                                   strategy, "pending", "pending", change.base_version, {}, [incoming], [], None,
                                   [change.device], change.event_id, append=True)]
        versions = []
        waiting = dict(history.changes) if history else {}
        for event_id in out.concurrent:
            other = waiting.get(event_id)
            if other is None or event_id == change.event_id:
                continue
            versions.append({"event_id": other.event_id, "device_id": other.device, "client_ts": json_value(other.ts),
                             "base_version": other.base_version, "data": dict(other.data),
                             "state": out.candidates.get(event_id)})
        versions.append(incoming)
        versions.sort(key=lambda v: (v["client_ts"], v["event_id"]))
        conflict_id = str(uuid.uuid4())
        item.pending_conflict = conflict_id
        return [_ConflictDraft(conflict_id, item.table.entity, item.record_id, strategy, "pending", "pending",
                               change.base_version, {"version": before.version, "state": before.state}, versions, [],
                               None, sorted({v["device_id"] for v in versions}), change.event_id)]
    server_versions: dict[str, dict[str, Any]] = {}
    for name, stamp in before.stamps.items():
        if stamp.version > change.base_version and stamp.device != change.device:
            v = server_versions.setdefault(stamp.clock.event_id, {
                "event_id": stamp.clock.event_id or None, "device_id": stamp.device,
                "client_ts": json_value(stamp.clock.ts), "data": {}})
            v["data"][name] = before.state.get(name)
    versions = [*server_versions.values(), incoming]
    copy = out.copies[0].record_id if out.copies else None
    return [_ConflictDraft(str(uuid.uuid4()), item.table.entity, item.record_id, strategy, "settled", out.kind,
                           change.base_version, {"version": before.version, "state": before.state}, versions,
                           [{"field": c.field, "server": c.server, "client": c.client, "result": c.result}
                            for c in out.conflicts],
                           out.record.state, sorted({str(v["device_id"]) for v in versions}), change.event_id, copy)]


def _settlement(d: _ConflictDraft) -> dict[str, Any]:
    return {"id": d.id, "event_id": d.event_id, "entity": d.entity, "record_id": d.record_id, "strategy": d.strategy,
            "status": d.status, "outcome": d.outcome, "fields": d.fields, "copy_id": d.copy_id}


# ---------------------------------------------------------------- writes


def _row_json(item: _Item, ctx: SyncContext, now: datetime) -> dict[str, Any]:
    assert item.record is not None  # noqa: S101  narrows a type; not a check of input
    state = item.record.state
    row: dict[str, Any] = {name: state.get(name) for name in item.table.fields}
    row.update(item.extra)
    row["id"] = item.record_id
    row["version"] = item.record.version
    row["created_by"] = item.created_by or ctx.actor
    row["source"] = "sync"
    stamps: dict[str, Any] = encode_stamps(item.record.stamps)  # and two markers of other types
    stamps["@v"] = item.record.version
    if item.record.pending_review and item.pending_conflict:
        stamps["@pending"] = item.pending_conflict
    row["sync_stamps"] = stamps
    if state.get(DELETED):
        row["deleted_at"] = json_value(item.deleted_at or now)
    else:
        row["deleted_at"] = None
    return row


async def _write_records(conn: asyncpg.Connection, tenant: str, ctx: SyncContext, items: Sequence[_Item],
                         now: datetime) -> None:
    """One upsert per entity type, and per "as sent or not" (the change log's trigger reads it per statement)."""
    groups: dict[tuple[str, bool], list[_Item]] = defaultdict(list)
    for item in items:
        groups[(item.table.entity, item.as_sent)].append(item)
    for (entity, as_sent), group in sorted(groups.items()):
        t = TABLES[entity]
        cols = [*t.fields, *t.extra]
        payload = dumps([_row_json(i, ctx, now) for i in sorted(group, key=lambda i: i.record_id)])
        await conn.execute("SELECT set_config('wellpulse.sync_as_sent', $1, true)", "true" if as_sent else "false")
        await conn.execute(
            f"INSERT INTO {t.table} (tenant_id, id, {', '.join(cols)}, version, created_by, source, deleted_at,"
            f" sync_stamps) SELECT $1, r.id, {', '.join('r.' + c for c in cols)}, r.version, r.created_by, r.source,"
            f" r.deleted_at, r.sync_stamps FROM jsonb_populate_recordset(NULL::{t.table}, $2::text::jsonb) AS r"
            f" ON CONFLICT (tenant_id, id) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in cols)},"
            f" version = EXCLUDED.version, deleted_at = EXCLUDED.deleted_at, sync_stamps = EXCLUDED.sync_stamps,"
            f" updated_at = now()",
            tenant, payload)
    if groups:
        await conn.execute("SELECT set_config('wellpulse.sync_as_sent', 'false', true)")


async def _write_conflicts(conn: asyncpg.Connection, tenant: str, drafts: Sequence[_ConflictDraft],
                           now: datetime) -> None:
    for d in drafts:
        if d.append:
            await conn.execute(
                "UPDATE sync_conflicts SET versions = versions || $3::text::jsonb,"
                " device_ids = ARRAY(SELECT DISTINCT unnest(device_ids || $4::text[]) ORDER BY 1), updated_at = now()"
                " WHERE tenant_id = $1 AND id = $2",
                tenant, d.id, dumps(d.versions), d.device_ids)
    fresh = [{"id": d.id, "entity_type": d.entity, "record_id": d.record_id, "strategy": d.strategy,
              "status": d.status, "outcome": d.outcome, "base_version": d.base_version, "server": d.server,
              "versions": d.versions, "fields": d.fields, "result": d.result, "device_ids": d.device_ids,
              "settled_at": json_value(now) if d.status == "settled" else None,
              "settled_by": f"strategy:{d.strategy}" if d.status == "settled" else None}
             for d in drafts if not d.append]
    if fresh:
        await conn.execute(
            "INSERT INTO sync_conflicts (tenant_id, id, entity_type, record_id, strategy, status, outcome,"
            " base_version, server, versions, fields, result, device_ids, settled_at, settled_by)"
            " SELECT $1, x.id, x.entity_type, x.record_id, x.strategy, x.status, x.outcome, x.base_version, x.server,"
            " x.versions, x.fields, x.result, x.device_ids, x.settled_at, x.settled_by"
            " FROM jsonb_to_recordset($2::text::jsonb) AS x(id uuid, entity_type text, record_id uuid, strategy text,"
            " status text, outcome text, base_version integer, server jsonb, versions jsonb, fields jsonb,"
            " result jsonb, device_ids text[], settled_at timestamptz, settled_by text)",
            tenant, dumps(fresh))


def _plain(value: Any) -> Any:
    """JSON-safe (stamps hold datetimes)."""
    return None if value is None else orjson.loads(dumps(value))


async def _effects(conn: asyncpg.Connection, ctx: SyncContext, items: Sequence[_Item], rows: list[fe.FieldEventRow],
                   findings: list[fe.FindingReport], outcome: ChunkOutcome, now: datetime) -> None:
    """Equipment status for jobs that opened or closed, alerts for new findings; effects noted on the events."""
    tenant = ctx.tenant_id
    for item in items:
        if item.record is None or item.last_event is None or item.record.pending_review:
            continue
        before = item.before.state if item.before else None
        after = item.record.state
        row = rows[item.last_event]
        if item.table.entity == "maintenance_record":
            effects = fe.maintenance_effects(before, after, now)
            equipment = after.get("equipment_id")
            for effect in effects:
                if effect in (fe.MAINTENANCE_STARTED, fe.MAINTENANCE_FINISHED):
                    outcome.reloads.add("silences")
                    if await fe.follow_jobs(conn, tenant, equipment, opened=effect == fe.MAINTENANCE_STARTED):
                        outcome.reloads.add("registry")
            # Jobs are the failure models' maintenance windows, and a failure_repair job labels a failure: the
            # actors read them from the table on any reload (serve/predictions.py), so no label is sent here.
            outcome.reloads.add("maintenance")
            row.effects = sorted({*row.effects, *effects})
        elif item.table.entity == "inspection":
            new = fe.new_findings(before, after)
            for f in new:
                findings.append(fe.FindingReport(after["equipment_id"], f["severity"], f["description"],
                                                 row.event_id, item.record_id, now))
            if new:
                row.effects = sorted({*row.effects, fe.INSPECTION_FINDING})
    if "silences" in outcome.reloads:
        outcome.reloads.discard("maintenance")  # one reload re-reads both
    outcome.alert_events = await fe.raise_inspection_alerts(conn, tenant, findings, actor=ctx.actor)


async def _audit(conn: asyncpg.Connection, ctx: SyncContext, rows: Sequence[fe.FieldEventRow],
                 drafts: Sequence[_ConflictDraft]) -> None:
    """One row for the chunk, one per conflict (with every version: the losing one stays in the trail)."""
    if not rows:
        return
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[f"{r.type}:{r.outcome}"] += 1
    entries = [audit_log.AuditEntry("sync", "sync_chunk", ctx.device_id, None, {
        "device_id": ctx.device_id, "upload_id": ctx.upload_id, "counts": dict(counts),
        "event_ids": [r.event_id for r in rows]})]
    entries += [audit_log.AuditEntry("sync_conflict", d.entity, d.record_id, d.server or None, {
        "conflict_id": d.id, "strategy": d.strategy, "status": d.status, "outcome": d.outcome,
        "versions": d.versions, "result": d.result}) for d in drafts]
    await audit_log.record_many(conn, ctx.audit, entries, default=json_value)


# ---------------------------------------------------------------- pulling and devices


async def changes_since(conn: asyncpg.Connection, tenant: str, device_id: str, cursor: int, limit: int,
                        ) -> tuple[list[dict[str, Any]], int, bool]:
    """Server changes after ``cursor`` (up to ``limit``), the new cursor, and whether more wait.

    The device's own changes that landed exactly as it sent them are left out (it has them), but
    the cursor moves past them.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1 || $2))", CHANGES_LOCK, tenant)
    rows = await conn.fetch(
        "SELECT seq, origin = $4 AND as_sent AS own, entity_type, record_id::text AS record_id, op, version,"
        " CASE WHEN origin = $4 AND as_sent THEN NULL ELSE data END AS data, origin, changed_at"
        " FROM sync_changes WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        tenant, cursor, limit + 1, device_id)
    has_more = len(rows) > limit
    rows = rows[:limit]
    new_cursor = rows[-1]["seq"] if rows else cursor
    out = [{"seq": r["seq"], "entity": r["entity_type"], "id": r["record_id"], "op": r["op"], "version": r["version"],
            "data": _jsonb(r["data"]), "origin": r["origin"], "changed_at": json_value(r["changed_at"])}
           for r in rows if not r["own"]]
    return out, new_cursor, has_more


async def touch_device(conn: asyncpg.Connection, tenant: str, device_id: str, actor: str, cursor: int | None) -> None:
    await conn.execute(
        "INSERT INTO sync_devices (tenant_id, id, last_actor, last_sync_at, last_cursor, syncs)"
        " VALUES ($1, $2, $3, now(), coalesce($4, 0), 1)"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET last_actor = EXCLUDED.last_actor, last_sync_at = now(),"
        " last_cursor = coalesce($4, sync_devices.last_cursor), syncs = sync_devices.syncs + 1",
        tenant, device_id, actor, cursor)


async def record_device_error(conn: asyncpg.Connection, tenant: str, device_id: str, actor: str, error: str) -> None:
    await conn.execute(
        "INSERT INTO sync_devices (tenant_id, id, last_actor, last_error, last_error_at) VALUES ($1, $2, $3, $4, now())"
        " ON CONFLICT (tenant_id, id) DO UPDATE SET last_actor = EXCLUDED.last_actor, last_error = EXCLUDED.last_error,"
        " last_error_at = now()", tenant, device_id, actor, error[:2000])


async def device_status(conn: asyncpg.Connection, tenant: str, device_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT id AS device_id, first_seen_at, last_sync_at, last_cursor, syncs, last_error, last_error_at,"
        " (SELECT count(*) FROM sync_conflicts c WHERE c.tenant_id = d.tenant_id AND c.status = 'pending'"
        "  AND d.id = ANY(c.device_ids)) AS pending_conflicts"
        " FROM sync_devices d WHERE tenant_id = $1 AND id = $2", tenant, device_id)
    return dict(row) if row else None


# ---------------------------------------------------------------- upload sessions

UPLOAD_COLUMNS = ("id, device_id, status, cursor, total_chunks, next_chunk, applied_changes, conflicts, created_at,"
                  " updated_at, completed_at")


async def create_upload(conn: asyncpg.Connection, tenant: str, device_id: str, cursor: int, total_chunks: int | None,
                        created_by: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO sync_uploads (tenant_id, device_id, cursor, total_chunks, created_by)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {UPLOAD_COLUMNS}", tenant, device_id, cursor, total_chunks,
        created_by)


async def get_upload(conn: asyncpg.Connection, tenant: str, upload_id: str, *, for_update: bool = False,
                     ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {UPLOAD_COLUMNS} FROM sync_uploads WHERE tenant_id = $1 AND id = $2::uuid"
        f"{' FOR UPDATE' if for_update else ''}", tenant, upload_id)


async def advance_upload(conn: asyncpg.Connection, tenant: str, upload_id: str, applied: int, conflicts: int,
                         ) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE sync_uploads SET next_chunk = next_chunk + 1, applied_changes = applied_changes + $3,"
        f" conflicts = conflicts + $4, updated_at = now() WHERE tenant_id = $1 AND id = $2::uuid"
        f" RETURNING {UPLOAD_COLUMNS}", tenant, upload_id, applied, conflicts)


async def complete_upload(conn: asyncpg.Connection, tenant: str, upload_id: str) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE sync_uploads SET status = 'completed', completed_at = now(), updated_at = now()"
        f" WHERE tenant_id = $1 AND id = $2::uuid RETURNING {UPLOAD_COLUMNS}", tenant, upload_id)


# ---------------------------------------------------------------- conflicts

CONFLICTS = ResourceSpec(
    name="sync_conflicts", from_sql="sync_conflicts", default_sort="-created_at",
    fields=(
        FieldSpec("id", "id", "uuid"),
        FieldSpec("entity", "entity_type", "enum", enum=tuple(TABLES)),
        FieldSpec("record_id", "record_id", "uuid"),
        FieldSpec("strategy", "strategy", "enum",
                  enum=("newest_wins", "highest_value", "manual_review", "merge", "keep_both")),
        FieldSpec("status", "status", "enum", enum=("settled", "pending")),
        FieldSpec("outcome", "outcome"),
        FieldSpec("base_version", "base_version", "int"),
        FieldSpec("server", "server", filterable=False, sortable=False),
        FieldSpec("versions", "versions", filterable=False, sortable=False),
        FieldSpec("result", "result", filterable=False, sortable=False),
        FieldSpec("device_ids", "device_ids", filterable=False, sortable=False),
        FieldSpec("created_at", "created_at", "timestamp"),
        FieldSpec("settled_at", "settled_at", "timestamp"),
        FieldSpec("settled_by", "settled_by"),
        FieldSpec("comment", "comment", filterable=False, sortable=False),
    ),
)


async def get_conflict(conn: asyncpg.Connection, tenant: str, conflict_id: str, *, for_update: bool = False,
                       ) -> dict[str, Any] | None:
    columns = ", ".join(f'{f.column} AS "{f.name}"' for f in CONFLICTS.fields)
    row = await conn.fetchrow(f"SELECT {columns} FROM sync_conflicts WHERE tenant_id = $1 AND id = $2::uuid"
                              f"{' FOR UPDATE' if for_update else ''}", tenant, conflict_id)
    return dict(row) if row else None


async def resolve_conflict(conn: asyncpg.Connection, ctx: SyncContext, conflict_id: str, *, choose: str | None,
                           data: Mapping[str, Any] | None, comment: str | None,
                           now: datetime | None = None) -> ChunkOutcome:
    """Settle a conflict held for review; the chosen state becomes the record's next version."""
    now = now or datetime.now(UTC)
    tenant = ctx.tenant_id
    reviewer = f"review:{ctx.actor}"[:128]
    await _begin(conn, tenant, reviewer)
    conflict = await get_conflict(conn, tenant, conflict_id, for_update=True)
    if conflict is None:
        raise NotFound(f"conflict {conflict_id} not found", [{"field": "id", "message": "unknown"}])
    if conflict["status"] != "pending":
        raise Conflict("the conflict is already settled", [{"field": "id", "message": "settled"}])
    t = TABLES[conflict["entity"]]
    record_id = str(conflict["record_id"])
    row = await conn.fetchrow(f"SELECT {t.read_columns} FROM {t.table} WHERE tenant_id = $1 AND id = $2::uuid"
                              f" FOR UPDATE", tenant, record_id)
    if row is None:
        raise NotFound("the record of the conflict is gone", [{"field": "id", "message": "no record"}])
    state = row_state(t, row)
    record = Record(state, row["version"], decode_stamps(_jsonb(row["sync_stamps"]) or {}, state), pending_review=True)
    versions = _jsonb(conflict["versions"]) or []
    if data is not None:
        try:
            patch = patch_model(t.entity).model_validate(data).model_dump(mode="json", exclude_unset=True)
        except ValidationError as exc:
            raise InvalidInput("data is invalid", [
                {"field": error_path("data", e.get("loc", ())), "message": str(e.get("msg"))} for e in exc.errors()
            ]) from exc
        chosen = {**state, **patch}
    elif choose == "server":
        chosen = dict(state)
    else:
        match = [v for v in versions if v.get("event_id") == choose]
        if not match or match[0].get("state") is None:
            raise InvalidInput("choose names no version of this conflict", [
                {"field": "choose", "message": "one of the conflict's version event ids, or 'server'"}])
        chosen = dict(match[0]["state"])
    try:
        ENTITY_MODELS[t.entity].model_validate({k: v for k, v in chosen.items() if k != DELETED})
    except ValidationError as exc:
        raise InvalidInput("the chosen version is not a valid record", [
            {"field": error_path("data", e.get("loc", ())), "message": str(e.get("msg"))} for e in exc.errors()
        ]) from exc
    event_id = str(uuid.uuid4())
    new = resolve_review(record, chosen, reviewer=reviewer, clock=Clock(now, event_id))
    item = _Item(t, record_id, record, new, created_by=row["created_by"], deleted_at=row["deleted_at"],
                 extra={k: json_value(row[k]) for k in t.extra}, changed=True, last_event=0,
                 written_fields=set(chosen), as_sent=False)
    await _lock_equipment(conn, tenant, [item])
    await _write_records(conn, tenant, ctx, [item], now)
    await conn.execute("UPDATE sync_conflicts SET status = 'settled', outcome = 'resolved', result = $3::text::jsonb,"
                       " settled_at = now(), settled_by = $4, comment = $5, updated_at = now()"
                       " WHERE tenant_id = $1 AND id = $2::uuid", tenant, conflict_id,
                       dumps(new.state), ctx.actor, comment)
    payload = {"conflict_id": conflict_id, "choose": choose, "data": dict(data) if data is not None else None,
               "comment": comment}
    row_event = fe.FieldEventRow(
        event_id=event_id, type="conflict.resolved", actor=ctx.actor, outcome="applied", occurred_at=now,
        content_hash=event_id, entity_type=t.entity, record_id=record_id, equipment_id=new.state.get("equipment_id"),
        base_version=record.version, version=new.version, data=_plain(payload))
    outcome = ChunkOutcome(result={})
    # Effects against the last version everyone agreed on (the record before the review).
    await _effects(conn, ctx, [item], [row_event], [], outcome, now)
    await fe.insert_events(conn, tenant, [row_event])
    await audit_log.record(conn, ctx.audit, action="resolve_conflict", entity_type=t.entity, entity_id=record_id,
                           old=_plain({"conflict_id": conflict_id, "state": state}),
                           new=_plain({"conflict_id": conflict_id, "choose": choose, "state": new.state,
                                       "comment": comment}))
    outcome.messages = fe.messages(tenant, [row_event])
    outcome.result = {**(await get_conflict(conn, tenant, conflict_id) or {})}
    return outcome


# ---------------------------------------------------------------- attachments


async def get_attachment(conn: asyncpg.Connection, tenant: str, attachment_id: str, *, for_update: bool = False,
                         ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT id::text AS id, sha256, size_bytes, content_type, content_stored, kept_from::text AS kept_from,"
        f" deleted_at FROM attachments WHERE tenant_id = $1 AND id = $2::uuid{' FOR UPDATE' if for_update else ''}",
        tenant, attachment_id)


async def attachment_hashes(conn: asyncpg.Connection, tenant: str, attachment_id: str) -> set[str]:
    """Content an upload to this attachment may carry: its own sha256, or that of a version kept beside it."""
    rows = await conn.fetch("SELECT sha256 FROM attachments WHERE tenant_id = $1 AND (id = $2::uuid OR"
                            " kept_from = $2::uuid) AND sha256 IS NOT NULL", tenant, attachment_id)
    return {r["sha256"] for r in rows}


async def mark_content_stored(conn: asyncpg.Connection, tenant: str, sha256: str, size: int,
                              attachment_id: str) -> None:
    """Every attachment of the tenant holding this content has it now; one without a hash takes it."""
    await conn.execute(
        "UPDATE attachments SET content_stored = true, size_bytes = $3, updated_at = now()"
        " WHERE tenant_id = $1 AND sha256 = $2 AND NOT content_stored", tenant, sha256, size)
    await conn.execute(
        "UPDATE attachments SET sha256 = $2, size_bytes = $3, content_stored = true, updated_at = now()"
        " WHERE tenant_id = $1 AND id = $4::uuid AND sha256 IS NULL", tenant, sha256, size, attachment_id)

