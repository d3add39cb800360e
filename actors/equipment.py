"""EquipmentActor: hosts the model state of one or more pieces of equipment.

It learns from batches the TenantActor sends after the readings are committed, turns
model decisions into alert rows (committed first) and ALERTS messages, and checkpoints
its entities so a restart resumes where it left off.
"""

import asyncio
import contextlib
import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import ray

from actors.common import ACTOR_OPTIONS, open_connections, setup_logging, while_down_retry
from config import Settings
from config.secrets import UntrustedBlob, sign_blob, verify_blob
from models import (
    MODEL_VERSION,
    AlertChange,
    EquipmentState,
    FailurePredictor,
    Rule,
    Sensitivity,
    Snapshot,
    rules_for_equipment,
    tenant_rules_for,
)
from models import checkpoint as model_checkpoint
from models.alerts import alarm_profile
from models.failure import Example
from schema.alerts import AlertEvent
from schema.subjects import alerts_subject
from store import alerts as alert_store
from store import assets as asset_store
from store import checkpoints as checkpoint_store
from store import predictions as prediction_store
from store import readings as reading_store
from store import rules as rule_store
from store import tenants as tenant_store

log = logging.getLogger(__name__)
SnapshotTuple = tuple[datetime, dict[str, float], bool]  # ts, values to learn, historical
CATCH_UP_LIMIT = 20_000
TICK_SECONDS = 5.0


def build_rules(equipment_id: str, equipment_type: str, rule_rows: Sequence[dict[str, Any]],
                sensitivity: Sensitivity = "medium") -> list[Rule]:
    """What an equipment runs (`models.rules_for_equipment`): its type's defaults and the tenant's rules that
    apply to it (`rule_rows`, all of the tenant's), at its sensitivity. A rule that cannot be built is logged and
    left out: one bad row must not stop the tenant's equipment."""
    rules, rejected = rules_for_equipment(equipment_type, tenant_rules_for(rule_rows, equipment_id, equipment_type),
                                          sensitivity)
    for bad in rejected:
        log.warning("rule %s ignored: %s", bad.rule_id, bad.reason)
    return rules


def to_change_rows(changes: Sequence[AlertChange], entities: dict[str, EquipmentState] | None = None,
                   ) -> list[alert_store.AlarmChange]:
    """The store's rows of model changes, each with its rule's alarm profile (latched, requires running, low
    pressure, sensors)."""
    rows = []
    for c in changes:
        entity = (entities or {}).get(c.equipment_id)
        rule = None if entity is None else next((r for r in entity.rules if r.rule_id == c.rule_id), None)
        details = c.details
        profile = alarm_profile(rule, details)
        rows.append(alert_store.AlarmChange(
            kind=c.kind, equipment_id=c.equipment_id, rule_id=c.rule_id, severity=c.severity, ts=c.ts,
            message=c.message, details=details, latched=profile.latched, requires_running=profile.requires_running,
            low_pressure=profile.low_pressure, sensors=profile.sensors))
    return rows


async def publish_alert_events(js: Any, tenant_id: str, events: Sequence[Any]) -> None:
    """Publish committed alert events; Nats-Msg-Id makes a republish after a crash harmless."""
    for row in events:
        event = AlertEvent(**dict(row))
        await js.publish(
            alerts_subject(tenant_id, event.equipment_id), event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": f"alert-event-{event.seq}"},
        )


def stored_snapshots(rows: Sequence[Any]) -> list[Snapshot]:
    """`store.readings.readings_after` rows as the models learn them: historical ones stay historical."""
    return [Snapshot(r["ts"], r["vals"], bool(r["historical"])) for r in rows]


def _unit(x: float) -> float:
    return min(1.0, max(0.0, x))


def prediction_row(entity: EquipmentState, state_bytes: int) -> prediction_store.PredictionRow:
    """What the API shows of an entity (``GET /v1/equipment/{id}/predictions``), as of its checkpoint."""
    p = entity.predictions()
    return prediction_store.PredictionRow(
        equipment_id=entity.equipment_id, equipment_type=entity.equipment_type, model_version=p["model_version"],
        samples_seen=p["samples_seen"], values_seen=p["values_seen"], last_learned_ts=entity.last_learned_ts,
        warming_up=p["warming_up"], anomaly_score=_unit(p["anomaly"]["score"]),
        equipment_score=_unit(p["anomaly"]["equipment_score"]),
        multivariate_score=_unit(p["anomaly"]["multivariate_score"]),
        failure_probability=_unit(p["failure"]["probability"]), horizon_seconds=p["failure"]["horizon_seconds"],
        sensors=p["anomaly"]["sensors"], failure=p["failure"], drift=p["drift"], state_bytes=state_bytes,
    )


def shared_model(stored: prediction_store.TypeModel | None, key: str) -> FailurePredictor | None:
    """The type's shared failure model, or None (none yet, not signed by us, or unreadable)."""
    if stored is None:
        return None
    try:
        payload = verify_blob(key, stored.state)
    except UntrustedBlob as exc:
        log.error("shared failure model refused (%s): it was not written by this installation", exc)
        return None
    try:
        return model_checkpoint.loads(payload, FailurePredictor)  # a document, or a pickle of an older version
    except model_checkpoint.StateError as exc:
        log.warning("shared failure model of version %s unreadable (%s); starting a new one",
                    stored.model_version, exc)
        return None


def teach_shared(stored: prediction_store.TypeModel | None, examples: Sequence[Example],
                 failures: int, key: str) -> prediction_store.TypeModel:
    """The shared model after learning `examples` (`failures` of them newly reported failures)."""
    model = shared_model(stored, key) or FailurePredictor()
    model.learn_examples(examples)
    model.failures_seen += failures
    state = sign_blob(key, model_checkpoint.dumps(model))
    return prediction_store.TypeModel(MODEL_VERSION, state, model.labels_seen, model.failures_seen)


class Restored(NamedTuple):
    """A checkpointed entity, and whether its checkpoint was an old pickle (to be re-written in today's format)."""

    entity: EquipmentState
    from_pickle: bool


def restore_entity(blob: bytes, key: str) -> Restored | None:
    """A checkpointed entity, or None when the blob is not signed by this installation (never read) or cannot
    be read by this version (an unknown type tag, a newer format, a pickle naming a class that is gone): a fresh
    model then, never an actor that fails on every message of the equipment."""
    try:
        data = verify_blob(key, blob)
    except UntrustedBlob as exc:
        log.error("model checkpoint refused (%s): a fresh model warms up instead", exc)
        return None
    try:
        return Restored(EquipmentState.from_bytes(data), model_checkpoint.is_pickle(data))
    except Exception as exc:  # any failure to read our own, signed blob
        log.error("model checkpoint unreadable (%s: %s): a fresh model warms up instead", type(exc).__name__, exc)
        return None


@ray.remote(**ACTOR_OPTIONS)
class EquipmentActor:
    def __init__(self, tenant_id: str, slot: str, settings: Settings) -> None:
        setup_logging()
        self.tenant_id = tenant_id
        self.slot = slot
        self.settings = settings
        self._model_key = settings.secret("model_signing_key")
        self.entities: dict[str, EquipmentState] = {}
        self._lock = asyncio.Lock()
        self._pool = None
        self._nc = None
        self._js = None
        self._registry: dict[str, str] | None = None
        self._sensitivity: dict[str, str] = {}
        self._rule_rows: list[dict[str, Any]] | None = None
        # Values learned per entity since its last checkpoint: only entities that learned
        # enough are saved, so the cost stays per reading, not per hosted entity.
        self._unsaved: dict[str, int] = defaultdict(int)
        self._last_checkpoint = time.monotonic()
        self._tick_task: asyncio.Task | None = None
        self.counters = {"values_learned": 0, "snapshots_learned": 0, "alert_events": 0, "restored": 0,
                         "checkpoints_refused": 0, "checkpoints_migrated": 0, "caught_up_snapshots": 0}
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.started_at = time.time()

    async def _ensure_started(self) -> None:
        if self._pool is None:
            self._pool, self._nc = await open_connections(
                self.settings, f"equipment-{self.tenant_id}-{self.slot}", pool_size=2, tenant_id=self.tenant_id)
            self._js = self._nc.jetstream()
        if self._tick_task is None or self._tick_task.done():
            self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _load_registry(self) -> None:
        equipment = await asset_store.list_equipment(self._pool, self.tenant_id)
        self._registry = {e.equipment_id: e.type for e in equipment}
        default, by_type = await tenant_store.tenant_sensitivity(self._pool, self.tenant_id)
        self._sensitivity = {
            e.equipment_id: e.anomaly_sensitivity or by_type.get(e.type) or default or "medium" for e in equipment}
        self._rule_rows = [dict(r) for r in await rule_store.list_rules(self._pool, self.tenant_id)]

    def _rules_of(self, equipment_id: str) -> tuple[str, list[Rule]]:
        """(type, rules) of an equipment: type defaults, then the tenant's own rules, at its sensitivity."""
        etype = (self._registry or {}).get(equipment_id, "other")
        sensitivity = self._sensitivity.get(equipment_id, "medium")
        return etype, build_rules(equipment_id, etype, self._rule_rows or [], sensitivity)

    async def _entity(self, equipment_id: str, *, catch_up: bool = True) -> EquipmentState:
        entity = self.entities.get(equipment_id)
        if entity is not None:
            return entity
        if self._registry is None or equipment_id not in self._registry:
            await self._load_registry()
        etype, rules = self._rules_of(equipment_id)
        blobs = await checkpoint_store.load_checkpoints(self._pool, self.tenant_id, [equipment_id])
        restored = restore_entity(blobs[equipment_id], self._model_key) if equipment_id in blobs else None
        if restored is not None:
            entity = restored.entity
            entity.set_rules(rules)
            self.counters["restored"] += 1
            if restored.from_pickle:  # migration: the next checkpoint writes it in today's format
                self._unsaved[equipment_id] += 1
                self.counters["checkpoints_migrated"] += 1
        else:
            if equipment_id in blobs:
                self.counters["checkpoints_refused"] += 1
            entity = EquipmentState(equipment_id, etype, rules, seed=self.settings.model_seed)
            # A new equipment starts from what its type has learned in this tenant: useful on day one.
            shared = shared_model(await prediction_store.load_type_model(self._pool, self.tenant_id, etype),
                                  self._model_key)
            if shared is not None:
                entity.adopt_failure_model(shared)
        open_alerts = await alert_store.load_open_alerts(self._pool, self.tenant_id, [equipment_id])
        entity.restore_open_alerts((r["rule_id"], r["severity"]) for r in open_alerts)
        self.entities[equipment_id] = entity
        await self._learn_field_records([equipment_id])
        await self._learn_verdicts([equipment_id])
        if not catch_up:
            return entity
        # Readings committed after the checkpoint were learned by a process that is gone;
        # learn them again so the model is what it would have been without the crash. Without a checkpoint
        # too: an equipment new since the last checkpoint had batches committed that died with the process.
        # The store keeps each snapshot's `historical` flag (migration 024): re-learned, it opens no alert either.
        rows = await self._stored_after(equipment_id, entity)
        if rows:
            changes = entity.learn_many(stored_snapshots(rows))
            self.counters["caught_up_snapshots"] += len(rows)
            self._unsaved[equipment_id] += len(rows)  # learned here, not by the batch: the checkpoint must know
            await self._emit(changes)
        return entity

    async def _stored_after(self, equipment_id: str, entity: EquipmentState) -> list[Any]:
        """Committed readings the model has not learned (a restore's catch-up and `resync` both ask this)."""
        return await reading_store.readings_after(self._pool, self.tenant_id, equipment_id, entity.last_learned_ts,
                                                  CATCH_UP_LIMIT)

    async def _emit(self, changes: Sequence[AlertChange]) -> None:
        if not changes:
            return
        rows = to_change_rows(changes, self.entities)
        # The models have moved on: a change that is not stored now is never made again (unless this actor
        # dies and re-learns from its checkpoint), so an outage is waited out with the batch held.
        events = await while_down_retry(lambda: alert_store.persist_changes(self._pool, self.tenant_id, rows),
                                        what=f"alert changes of tenant {self.tenant_id}")
        self.counters["alert_events"] += len(events)
        await publish_alert_events(self._js, self.tenant_id, events)

    async def process(self, payload: bytes) -> int:
        """Learn a committed batch: pickled {equipment id: [(ts, values, historical)]}, in arrival order.

        Returns the number of sensor values learned (those already learned are skipped).
        """
        batch: dict[str, list[SnapshotTuple]] = pickle.loads(payload)  # from our own TenantActor only  # noqa: S301  signed by this installation (config.secrets.verify_blob) or from our own actor
        async with self._lock:
            t0 = time.perf_counter()
            await self._ensure_started()
            changes: list[AlertChange] = []
            learned = 0
            for equipment_id, snapshots in batch.items():
                entity = await self._entity(equipment_id)
                before = entity.values_seen
                t1 = time.perf_counter()
                changes.extend(entity.learn_many([Snapshot(ts, values, historical)
                                                  for ts, values, historical in snapshots]))
                self.stage_seconds["models"] += time.perf_counter() - t1
                learned += entity.values_seen - before
                self._unsaved[equipment_id] += entity.values_seen - before
                self.counters["snapshots_learned"] += len(snapshots)
            self.counters["values_learned"] += learned
            t2 = time.perf_counter()
            await self._emit(changes)
            t3 = time.perf_counter()
            self.stage_seconds["alerts"] += t3 - t2
            if time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_every_seconds:
                await self._checkpoint()  # every entity that learned anything
            else:
                await self._checkpoint(min_unsaved=self.settings.checkpoint_every_readings)
            self.stage_seconds["checkpoint"] += time.perf_counter() - t3
            self.stage_seconds["process"] += time.perf_counter() - t0
            return learned

    async def resync(self) -> int:
        """Learn whatever the store holds beyond each hosted entity's last learned reading.

        The TenantActor calls this when it (re)starts or a batch failed: batches it had
        committed but not yet handed over are in the database, and their redelivery will
        come after newer data, too late for the models. Returns snapshots caught up.
        """
        async with self._lock:
            await self._ensure_started()
            caught_up = 0
            for equipment_id, entity in self.entities.items():
                rows = await self._stored_after(equipment_id, entity)
                if rows:
                    await self._emit(entity.learn_many(stored_snapshots(rows)))
                    self._unsaved[equipment_id] += len(rows)
                    caught_up += len(rows)
            self.counters["caught_up_snapshots"] += caught_up
            return caught_up

    async def host(self, equipment_ids: list[str]) -> None:
        """Make sure these entities are loaded (so silent equipment is still watched for stale data)."""
        async with self._lock:
            await self._ensure_started()
            for equipment_id in equipment_ids:
                await self._entity(equipment_id)

    async def reload(self) -> None:
        """Registry or rules changed (``ctl.<tenant>``): rebuild every hosted entity's rules."""
        async with self._lock:
            await self._ensure_started()
            await self._load_registry()
            for gone in [e for e in self.entities if e not in (self._registry or {})]:
                # Deleted (decommissioned): no more ticks, no stale-data alerts for it.
                del self.entities[gone]
                self._unsaved.pop(gone, None)
            for equipment_id, entity in self.entities.items():
                entity.set_rules(self._rules_of(equipment_id)[1])
            await self._learn_field_records(list(self.entities))
            await self._learn_verdicts(list(self.entities))

    async def _learn_verdicts(self, equipment_ids: list[str]) -> int:
        """Operators' verdicts these entities have not learned (`EquipmentState.apply_verdict`): saved at once,
        then marked learned in the store. A verdict sent twice (a crash between the two) is applied once: the
        entity remembers the alerts it learned. The API's ``ctl.<tenant>`` nudge brings them here; the periodic
        reload catches a lost one. Returns the verdicts applied."""
        pending = await alert_store.pending_verdicts(self._pool, self.tenant_id, equipment_ids)
        applied = 0
        for r in pending:
            entity = self.entities.get(r["equipment_id"])
            if entity is not None and entity.apply_verdict(r["id"], r["rule_id"], r["verdict"], r["sensors"]):
                self._unsaved[r["equipment_id"]] += 1
                applied += 1
        if applied:
            await self._checkpoint()
        if pending:
            await alert_store.mark_verdicts_applied(self._pool, self.tenant_id, [r["id"] for r in pending])
        return applied

    async def _learn_field_records(self, equipment_ids: list[str]) -> None:
        """Maintenance windows and ``failure_repair`` jobs of these entities, for their failure models.

        Idempotent (a window or a failure learned before changes nothing), so every reload re-reads the
        latest records: a label whose control message was lost arrives with the next reload.
        """
        for r in await prediction_store.field_records(self._pool, self.tenant_id, equipment_ids):
            entity = self.entities.get(r["equipment_id"])
            if entity is None:
                continue
            before = (entity.failure.failures_seen, entity.last_maintenance_ts, entity.failure.pending)
            if r["kind"] == "failure_repair":
                entity.record_failure(r["started_at"])
            if r["ended_at"] is not None:
                entity.record_maintenance(r["started_at"], r["ended_at"])
            if before != (entity.failure.failures_seen, entity.last_maintenance_ts, entity.failure.pending):
                self._unsaved[r["equipment_id"]] += 1

    async def label_failure(self, equipment_id: str, failed_at: datetime) -> dict[str, Any]:
        """A failure reported from the field (``ctl.<tenant>``): label the window before it, teach the type's
        shared model, and save at once so the predictions show it. The same report twice is learned once."""
        async with self._lock:
            await self._ensure_started()
            entity = await self._entity(equipment_id)
            examples = entity.record_failure(failed_at)
            self._unsaved[equipment_id] += 1
            await self._checkpoint()
            return {"equipment_id": equipment_id, "examples": len(examples),
                    "failure_probability": entity.failure_probability}

    async def comms_lost(self, equipment_id: str, ts: datetime, reason: str) -> int:
        """The source reported the equipment lost (``ctl.<tenant>`` ``comms_loss``): open the alert now; returns
        the alert events published."""
        async with self._lock:
            await self._ensure_started()
            entity = await self._entity(equipment_id)
            changes = entity.comms_lost(ts, reason)
            await self._emit(changes)
            self._unsaved[equipment_id] += 1
            return len(changes)

    async def reset_model(self, equipment_id: str) -> dict[str, Any]:
        """Drop an entity's models and checkpoint (``ctl.<tenant>``, a manager's reset); a fresh one warms up
        from the next reading (nothing stored before it is learned again), its rules and open alerts kept."""
        async with self._lock:
            await self._ensure_started()
            old = self.entities.pop(equipment_id, None)
            self._unsaved.pop(equipment_id, None)
            await prediction_store.delete_model(self._pool, self.tenant_id, equipment_id)
            resume = old.last_learned_ts if old is not None else None
            if resume is None:
                resume = await prediction_store.latest_reading_ts(self._pool, self.tenant_id, equipment_id)
            entity = await self._entity(equipment_id, catch_up=False)  # a reset learns nothing stored before
            entity.resume_after(resume)
            self._unsaved[equipment_id] += 1
            await self._checkpoint()
            return {"equipment_id": equipment_id, "resumes_after": None if resume is None else resume.isoformat()}

    async def _checkpoint(self, *, min_unsaved: int = 1) -> None:
        due = [eid for eid, n in self._unsaved.items() if n >= min_unsaved]
        items: list[checkpoint_store.CheckpointRow] = []
        rows = []
        examples: dict[str, list[Example]] = defaultdict(list)
        failures: dict[str, int] = defaultdict(int)
        for eid in due:
            entity = self.entities[eid]
            drained, reported = entity.shared_examples()  # before saving: each goes to the type once
            examples[entity.equipment_type].extend(drained)
            failures[entity.equipment_type] += reported
            blob = sign_blob(self._model_key, entity.to_bytes())
            items.append(checkpoint_store.CheckpointRow(eid, MODEL_VERSION, blob, entity.last_learned_ts,
                                                        entity.samples_seen))
            rows.append(prediction_row(entity, len(blob)))
        if items:
            async with self._pool.acquire() as conn, conn.transaction():  # model and predictions agree
                await checkpoint_store.save_checkpoints(conn, self.tenant_id, items)
                await prediction_store.save_predictions(conn, self.tenant_id, rows)
        for eid in due:
            del self._unsaved[eid]
        for etype, learned in examples.items():
            if learned or failures[etype]:
                await prediction_store.update_type_model(
                    self._pool, self.tenant_id, etype,
                    lambda stored, learned=learned, n=failures[etype]: teach_shared(
                        stored, learned, n, self._model_key))
        if min_unsaved <= 1:
            self._last_checkpoint = time.monotonic()

    async def checkpoint(self) -> int:
        async with self._lock:
            await self._ensure_started()
            await self._checkpoint()
            return len(self.entities)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                async with self._lock:
                    now = datetime.now(UTC)
                    changes = [c for e in self.entities.values() for c in e.tick(now)]
                    await self._emit(changes)
                    if self._unsaved and (time.monotonic() - self._last_checkpoint
                                          >= self.settings.checkpoint_every_seconds):
                        await self._checkpoint()  # a quiet feed still gets its models saved
            except Exception:  # a bad tick must not end the loop
                log.exception("tick failed for %s/%s", self.tenant_id, self.slot)

    async def status(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "node_id": ray.get_runtime_context().get_node_id(),
            "entities": {eid: e.summary() for eid, e in self.entities.items()},
            "counters": dict(self.counters),
            "stage_seconds": dict(self.stage_seconds),
            "started_at": self.started_at,
        }

    async def stop(self) -> None:
        """Checkpoint and close; called on orderly shutdown."""
        async with self._lock:
            if self._pool is None:
                return
            if self._tick_task:
                self._tick_task.cancel()
            await self._checkpoint()
            with contextlib.suppress(Exception):
                await self._nc.close()
            await self._pool.close()
            self._pool = None

