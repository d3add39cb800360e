"""TenantActor: owns one tenant's durable JetStream consumer.

Per batch: validate each message (bad ones go to ``dlq.<tenant>`` and are acked), write
the readings idempotently, hand them to the EquipmentActors, and only then ack. A crash
anywhere before the ack means redelivery, which the idempotent write and the models'
"already learned" check make harmless. While the database is down, the batch waits where it is
(`TenantActor._write_in_order`): handed back, it would come again behind newer readings, which the
models would then skip as late.
"""

import asyncio
import contextlib
import json
import logging
import pickle
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import ray
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from actors.common import ACTOR_OPTIONS, NAMESPACE, open_connections, setup_logging, while_down_retry
from actors.equipment import EquipmentActor, SnapshotTuple, publish_alert_events
from actors.notifier import Notifier, RetryPolicy, ack_links_of
from actors.placement import place
from config import SYSTEM_CLOCK, Clock, Settings
from config.secrets import SecretBox
from schema.ids import InvalidIdentifier, check_equipment_id
from schema.in_app_notifications import inbox_message
from schema.subjects import alerts_tenant_filter, ctl_subject, inapp_subject, split_tele_subject
from schema.telemetry import DEFAULT_MAX_AGE, Reading, parse_telemetry, validation_reason
from store import alerts as alert_store
from store import assets as asset_store
from store import bus
from store import emissions as emission_store
from store import readings as reading_store

log = logging.getLogger(__name__)
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))
# An idle consumer's long poll. A message ends it at once (bench.alert_latency at 20 values/s: p50 22 ms with
# 0.25 s, 25 ms with 1 s), so it only sets how often an idle tenant asks: ten idle tenants took 0.73 of the 2
# cores at 0.25 s and 0.57 at 1 s. `stop` waits for the poll in progress, at most this long.
FETCH_TIMEOUT = 1.0
HOUSEKEEPING_SECONDS = 5.0  # how often overdue alerts escalate and ended silences and shelves release
RELOAD_SECONDS = 60.0  # the safety reload of registry and rules, besides ctl.<tenant>
# ctl.<tenant> commands for one equipment's models (comms_loss: a source's death notice, gateway/sparkplug.py)
MODEL_COMMANDS = frozenset({"model_reset", "failure", "comms_loss"})
MAX_DLQ_DEVICES = 1000  # distinct equipment labels of the per-device DLQ counter, per tenant


class Rejected(Exception):
    """A message that can never be stored: it goes to the DLQ."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def decode_message(subject: str, data: bytes, tenant_id: str, max_future_skew: timedelta,
                   max_age: timedelta = DEFAULT_MAX_AGE) -> tuple[str, list[Reading]]:
    """Equipment id and snapshots of one message, or ``Rejected`` with the reason."""
    try:
        subject_tenant, equipment_id = split_tele_subject(subject)
    except (ValueError, InvalidIdentifier) as exc:
        raise Rejected(str(exc), "bad_subject") from exc
    if subject_tenant != tenant_id:
        raise Rejected(f"subject {subject!r} is not this tenant's", "bad_subject")
    try:
        batch = parse_telemetry(data, max_future_skew=max_future_skew, max_age=max_age)
    except ValidationError as exc:
        raise Rejected(validation_reason(exc), rejection_code(exc)) from exc
    snapshots = []
    for reading in batch.readings:
        if reading.equipment_id != equipment_id:
            raise Rejected(
                f"equipment_id {reading.equipment_id!r} does not match subject equipment {equipment_id!r}",
                "equipment_mismatch")
        snapshots.append(reading)
    return equipment_id, snapshots


def rejection_code(exc: ValidationError) -> str:
    """``not_json``, ``clock_skew`` (every error a timestamp outside the accepted window: a device's clock, not
    its data) or ``invalid``."""
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return "not_json"
    if errors and all(e["loc"][-1:] == ("ts",) and e["type"] == "value_error"
                      and ("in the future" in e["msg"] or "older than the retention" in e["msg"]) for e in errors):
        return "clock_skew"
    return "invalid"


def dlq_device(subject: str) -> str:
    """The equipment a dead-lettered message was published for (``?`` when its subject names none validly): the
    per-device label of ``wellpulse_dlq_device_messages_total``."""
    parts = subject.split(".")
    if len(parts) != 3:
        return "?"
    try:
        return check_equipment_id(parts[2])
    except InvalidIdentifier:
        return "?"


def stored_rows(tenant_id: str, equipment_id: str, reading: Reading) -> list[reading_store.IngestRow]:
    """The rows of one snapshot, each value with its quality (None: good) and the snapshot's historical flag
    (None: live)."""
    quality, ts = reading.quality, reading.ts
    historical = True if reading.historical else None
    if not quality:
        return [(tenant_id, equipment_id, sensor, ts, value, None, historical)
                for sensor, value in reading.values.items()]
    return [(tenant_id, equipment_id, sensor, ts, value, _stored_quality(quality.get(sensor)), historical)
            for sensor, value in reading.values.items()]


def _stored_quality(quality: str | None) -> str | None:
    return None if quality is None or quality == "good" else quality


def learned_snapshot(reading: Reading) -> SnapshotTuple:
    """What the models learn of a snapshot: its values of good or uncertain quality, and whether it is historical
    (learned without alerts). Bad values are stored, never learned."""
    quality = reading.quality
    values = dict(reading.values) if not quality else {
        sensor: value for sensor, value in reading.values.items() if quality.get(sensor) != "bad"}
    return reading.ts, values, reading.historical


async def housekeeping_round(pool: Any, tenant_id: str, *, now: datetime,
                             default_escalate_after: float) -> list[Any]:
    """The time-driven alert changes at `now`; returns their committed events, for the caller to publish.

    Alerts open and unacknowledged longer than the tenant's delay (or `default_escalate_after` seconds)
    escalate, and silences, maintenance and shelves that ended by `now` release what they held. Apart from
    the actor so that a test runs a round against PostgreSQL alone, with a `config.ManualClock`'s time.
    """
    after = await alert_store.escalate_after_seconds(pool, tenant_id)  # tenant setting
    if after is None:
        after = default_escalate_after
    events = await alert_store.escalate_overdue(pool, tenant_id, now=now, older_than=now - timedelta(seconds=after))
    # Silences and maintenance end by the clock too, not only by an API call.
    return events + await alert_store.release_suppressed(pool, tenant_id, now=now)


@ray.remote(**ACTOR_OPTIONS)
class TenantActor:
    def __init__(self, tenant_id: str, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        setup_logging()
        self.tenant_id = tenant_id
        self.settings = settings
        self.clock = clock  # what housekeeping decides by (escalation, silence and shelve ends)
        self._housekeeping_lock = asyncio.Lock()
        self._last_reload = clock.monotonic()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._pool = None
        self._nc = None
        self._js = None
        self.notifier: Notifier | None = None  # sends the tenant's notifications (actors/notifier.py)
        self._notifier_task: asyncio.Task | None = None
        self.equipment: dict[str, asset_store.EquipmentInfo] = {}
        self.placement: dict[str, str] = {}
        self.retired: set[str] = set()  # reported, but deleted from the registry
        self.actors: dict[str, Any] = {}
        self.counters: dict[str, Any] = {
            "messages": 0, "snapshots": 0, "readings_ingested": 0, "readings_duplicate": 0, "batches": 0,
            "empty_fetches": 0, "dlq": defaultdict(int), "errors": 0, "write_retries": 0,
            # (equipment, reason) -> messages; at most MAX_DLQ_DEVICES equipment, then "other" (bounded labels)
            "dlq_device": defaultdict(int),
        }
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.write_hist = [0] * len(WRITE_BUCKETS)
        self.write_sum = 0.0
        self.lag = (0, 0)
        self.last_batch_at: float | None = None

    # ----------------------------------------------------------- lifecycle

    async def ensure_running(self) -> bool:
        """Idempotent start; the Supervisor calls it after creation and after restarts."""
        if self._task is None or self._task.done():
            if self._task is not None and self._task.exception():
                log.error("consume loop of %s ended: %r; restarting", self.tenant_id, self._task.exception())
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        if self._pool is None:
            self._pool, self._nc = await open_connections(self.settings, f"tenant-{self.tenant_id}", pool_size=3,
                                                          tenant_id=self.tenant_id)
            self._js = self._nc.jetstream()
            await self._nc.subscribe(ctl_subject(self.tenant_id), cb=self._on_ctl)
            await self._start_notifier()
        await self._load_registry()
        sub = await bus.telemetry_subscription(self._js, self.tenant_id,
                                               max_ack_pending=self.settings.max_ack_pending)
        await self._resync_models()
        housekeeping = asyncio.get_running_loop().create_task(self._housekeeping())
        in_flight: asyncio.Task | None = None
        try:
            while not self._stopping:
                t_fetch = time.perf_counter()
                msgs = await bus.fetch_batch(sub, self.settings.fetch_batch, FETCH_TIMEOUT)
                if not msgs:
                    self.stage_seconds["fetch_empty"] += time.perf_counter() - t_fetch
                    self.counters["empty_fetches"] += 1
                    continue
                self.stage_seconds["fetch"] += time.perf_counter() - t_fetch
                # Two batches in flight: while the models learn batch N (and then ack it),
                # batch N+1 is decoded and committed. Learning stays in order per tenant.
                try:
                    learn = await self._store_batch(msgs)
                except Exception:
                    await self._redeliver(msgs)
                    continue
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.get_running_loop().create_task(self._learn_and_ack(*learn))
            if in_flight is not None:
                await in_flight
        finally:
            housekeeping.cancel()

    async def _start_notifier(self) -> None:
        """The tenant's notifier runs beside ingest, woken by the tenant's ALERTS messages (see actors/notifier.py
        for why here)."""
        js = self._js

        async def publish(events: Any) -> None:
            await publish_alert_events(js, self.tenant_id, events)

        nc = self._nc

        async def announce(inbox: Any) -> None:
            await nc.publish(inapp_subject(self.tenant_id), inbox_message(inbox))

        notifier = self.notifier = Notifier(self._pool, self.tenant_id, SecretBox.from_settings(self.settings),
                                            policy=RetryPolicy.from_settings(self.settings), clock=self.clock,
                                            publish=publish, ack_links=ack_links_of(self.settings),
                                            announce=announce,
                                            allow_private_networks=self.settings.notify_allow_private_networks)

        async def on_alert(_msg: Any) -> None:
            notifier.wake.set()

        await self._nc.subscribe(alerts_tenant_filter(self.tenant_id), cb=on_alert)
        self._notifier_task = asyncio.get_running_loop().create_task(notifier.run_forever())

    async def _redeliver(self, msgs: list[Any]) -> None:
        # DB or an EquipmentActor is down: hand the batch back for a prompt redelivery
        # instead of waiting out ack_wait. Nothing half-done is lost.
        log.exception("batch of %d failed for %s; redelivering", len(msgs), self.tenant_id)
        self.counters["errors"] += 1
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.nak(delay=1)
        await asyncio.sleep(1)

    async def _load_registry(self) -> None:
        equipment = await asset_store.list_equipment(self._pool, self.tenant_id)
        self.equipment = {e.equipment_id: e for e in equipment}
        self.retired.clear()
        self._place()

    def _place(self) -> None:
        dedicated = {e.equipment_id for e in self.equipment.values() if e.dedicated}
        self.placement = place(self.equipment, budget=self.settings.equipment_actor_budget, dedicated=dedicated)
        for slot in set(self.placement.values()) - set(self.actors):
            # Detached: an actor's children die with it, and a TenantActor crash must not
            # take the warm models down with it. ``stop`` ends them explicitly.
            self.actors[slot] = EquipmentActor.options(
                name=f"equipment:{self.tenant_id}:{slot}", namespace=NAMESPACE, get_if_exists=True,
                lifetime="detached",
            ).remote(self.tenant_id, slot, self.settings)

    async def _on_ctl(self, msg: Any) -> None:
        try:
            command = json.loads(msg.data or b"{}")
            if not isinstance(command, dict):
                raise ValueError("control message must be a JSON object")
            log.info("tenant %s control: %s", self.tenant_id, command.get("reload", "registry"))
            if command.get("reload") in MODEL_COMMANDS:
                await self._model_command(command)
                return
            await self._reload()
        except Exception as exc:
            log.warning("bad control message for %s: %s", self.tenant_id, exc)

    async def _model_command(self, command: dict[str, Any]) -> None:
        """One equipment's models: ``model_reset`` (a manager's reset), ``failure`` (a label, ``failed_at``) or
        ``comms_loss`` (the source lost it, at ``ts``: an alert at once)."""
        equipment_id = check_equipment_id(command.get("equipment_id"))
        if equipment_id not in self.placement:
            await self._load_registry()  # registered since the last reload
        actor = self.actors.get(self.placement.get(equipment_id, ""))
        if actor is None:
            raise ValueError(f"{command['reload']} for unknown equipment {equipment_id!r}")
        if command["reload"] == "model_reset":
            await actor.reset_model.remote(equipment_id)
            return
        stamp = "ts" if command["reload"] == "comms_loss" else "failed_at"
        at = datetime.fromisoformat(str(command.get(stamp)))
        if at.tzinfo is None:
            raise ValueError(f"{stamp} needs a time zone")
        if command["reload"] == "comms_loss":
            await actor.comms_lost.remote(equipment_id, at, str(command.get("reason", "source reported"))[:200])
            return
        await actor.label_failure.remote(equipment_id, at)

    async def _reload(self) -> None:
        """Re-read registry and rules everywhere; open the alerts a silence or maintenance that ended held back."""
        await self._load_registry()
        await asyncio.gather(*(a.reload.remote() for a in self.actors.values()))
        await publish_alert_events(self._js, self.tenant_id,
                                   await alert_store.release_suppressed(self._pool, self.tenant_id))

    # ----------------------------------------------------------- the hot path

    async def _store_batch(self, msgs: list[Any]) -> tuple[list[Any], dict[str, list], int, int]:
        """Decode, park the bad, commit the good; returns what ``_learn_and_ack`` needs."""
        t0 = time.perf_counter()
        rows: list[reading_store.IngestRow] = []
        by_equipment: dict[str, list[SnapshotTuple]] = defaultdict(list)
        good, bad = [], []
        skew = self.settings.max_future_skew
        for msg in msgs:
            try:
                equipment_id, snapshots = decode_message(msg.subject, msg.data, self.tenant_id, skew,
                                                         self.settings.max_reading_age)
            except Rejected as exc:
                bad.append((msg, exc))
                continue
            except Exception as exc:  # whatever it is, it must not block the stream
                bad.append((msg, Rejected(f"unreadable message: {exc}", "error")))
                continue
            good.append(msg)
            by_equipment[equipment_id].extend(map(learned_snapshot, snapshots))
            for reading in snapshots:
                rows.extend(stored_rows(self.tenant_id, equipment_id, reading))
        for msg, exc in bad:
            await bus.publish_dlq(self._js, self.tenant_id, subject=msg.subject, payload=msg.data,
                                  reason=exc.reason, headers=msg.headers)
            self.counters["dlq"][exc.code] += 1
            self._count_device_dlq(dlq_device(msg.subject), exc.code)
            await msg.ack()
        self.stage_seconds["decode"] += time.perf_counter() - t0
        inserted = await self._write_in_order(good, list(by_equipment), rows)
        return good, by_equipment, len(rows), inserted

    def _count_device_dlq(self, device: str, code: str) -> None:
        by_device = self.counters["dlq_device"]
        if (device, code) not in by_device and len({d for d, _ in by_device}) >= MAX_DLQ_DEVICES:
            device = "other"
        by_device[(device, code)] += 1

    async def _write_in_order(self, good: list[Any], equipment: list[str],
                              rows: list[reading_store.IngestRow]) -> int:
        """Write the batch's readings; while the database is down, hold the batch and try again.

        Handing the batch back (a nak) would let newer messages overtake it, and an incident inside the
        held-back readings would be stored but never alerted on (the models skip late snapshots).
        ``in_progress`` keeps JetStream from redelivering the held messages meanwhile.
        """
        async def keep_in_progress() -> None:
            self.counters["write_retries"] += 1
            for msg in good:
                with contextlib.suppress(Exception):  # the bus may be down too; redelivery then keeps the order
                    await msg.in_progress()

        return await while_down_retry(lambda: self._write(equipment, rows), on_wait=keep_in_progress,
                                      what=f"readings of tenant {self.tenant_id}", stopping=lambda: self._stopping)

    async def _write(self, equipment: list[str], rows: list[reading_store.IngestRow]) -> int:
        unknown = [e for e in equipment if e not in self.equipment and e not in self.retired]
        if unknown:
            # A feed may report equipment before anyone registered it: keep its data, register it.
            # Registered by the API since our last reload: left as it is. Deleted: stays deleted
            # (its readings are kept, no model learns them), and is not looked up again until
            # the next reload.
            await asset_store.register_seen_equipment(self._pool, self.tenant_id, unknown)
            await self._load_registry()
            self.retired.update(e for e in unknown if e not in self.equipment)
        started = time.perf_counter()
        inserted = await reading_store.copy_readings(self._pool, rows) if rows else 0
        elapsed = time.perf_counter() - started
        self._observe_write(elapsed)
        self.stage_seconds["write"] += elapsed
        return inserted

    async def _learn_and_ack(self, good: list[Any], by_equipment: dict[str, list], rows: int, inserted: int) -> None:
        if not good:
            return
        t1 = time.perf_counter()
        try:
            await self._learn(by_equipment)
        except Exception:
            await self._redeliver(good)
            await self._resync_models()
            return
        t2 = time.perf_counter()
        for msg in good:
            await msg.ack()
        self.stage_seconds["learn"] += t2 - t1
        self.stage_seconds["ack"] += time.perf_counter() - t2
        self.counters["messages"] += len(good)
        self.counters["snapshots"] += sum(len(v) for v in by_equipment.values())
        self.counters["readings_ingested"] += inserted
        self.counters["readings_duplicate"] += rows - inserted
        self.counters["batches"] += 1
        self.last_batch_at = time.time()

    async def _learn(self, by_equipment: dict[str, list[SnapshotTuple]]) -> None:
        per_slot: dict[str, dict[str, list]] = defaultdict(dict)
        for equipment_id, snapshots in by_equipment.items():
            if equipment_id in self.placement:  # not a deleted (decommissioned) equipment
                per_slot[self.placement[equipment_id]][equipment_id] = snapshots
        # Pickled here, once, with the C pickler: Ray's own serialization of a thousand
        # small dicts and datetimes costs about four times as much (measured, 2 cores).
        await asyncio.gather(*(self.actors[slot].process.remote(pickle.dumps(batch, protocol=5))
                               for slot, batch in per_slot.items()))

    async def _resync_models(self) -> None:
        # A previous incarnation (or a failed batch) may have committed readings that no
        # model learned; their redelivery would arrive behind newer data and be skipped.
        try:
            await asyncio.gather(*(a.resync.remote() for a in self.actors.values()))
        except Exception:
            log.exception("model resync failed for %s", self.tenant_id)

    def _observe_write(self, seconds: float) -> None:
        self.write_sum += seconds
        for i, bound in enumerate(WRITE_BUCKETS):
            if seconds <= bound:
                self.write_hist[i] += 1
                break

    # ----------------------------------------------------------- background duties

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                await self.housekeep()
            except Exception:
                log.exception("housekeeping failed for %s", self.tenant_id)

    async def housekeep(self) -> int:
        """One housekeeping round now (the loop runs one every few seconds); returns how many alert events it
        published. Tests call it to see a round's outcome at once instead of sleeping through the interval;
        rounds never overlap."""
        if self._pool is None:
            return 0  # not consuming yet: the loop's first round comes after the start
        async with self._housekeeping_lock:
            self.lag = await bus.consumer_lag(self._js, self.tenant_id)
            events = await housekeeping_round(self._pool, self.tenant_id, now=self.clock.now(),
                                              default_escalate_after=self.settings.escalate_after_seconds)
            await publish_alert_events(self._js, self.tenant_id, events)
            events = [*events, *await self._daily_emissions()]
            if self.clock.monotonic() - self._last_reload >= RELOAD_SECONDS:
                self._last_reload = self.clock.monotonic()
                await self._reload()  # a lost ctl message only delays a change
            by_slot: dict[str, list[str]] = defaultdict(list)
            for equipment_id, slot in self.placement.items():
                by_slot[slot].append(equipment_id)
            await asyncio.gather(*(self.actors[s].host.remote(ids) for s, ids in by_slot.items()))
            return len(events)

    async def _daily_emissions(self) -> list[Any]:
        """Once a day (the first round after midnight in the tenant's zone), the emissions of the week up to
        yesterday (`store.emissions.daily_run`: idempotent, a ledger row per day); its threshold alert events
        are published once committed. A failure is logged and tried again next round, without holding up the
        rest of the housekeeping."""
        try:
            calculation = await emission_store.daily_run(self._pool, self.tenant_id, now=self.clock.now())
        except Exception:
            log.exception("daily emissions calculation failed for %s", self.tenant_id)
            return []
        if calculation is None:
            return []
        await publish_alert_events(self._js, self.tenant_id, calculation.events)
        return calculation.events

    async def settled(self) -> bool:
        """Whether everything published to the tenant so far is stored, learned and acked (nothing waiting, nothing
        unacked): a test's condition before it checks that nothing more happens, instead of a sleep."""
        if self._js is None:
            return False
        try:
            pending, unacked = await bus.consumer_lag(self._js, self.tenant_id)
        except NotFoundError:  # the consumer is not made yet (the actor is starting): not settled
            return False
        return pending == 0 and unacked == 0

    async def stats(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "counters": {k: (dict(v) if isinstance(v, defaultdict) else v) for k, v in self.counters.items()},
            "write_hist": list(self.write_hist), "write_sum": self.write_sum,
            "write_buckets": list(WRITE_BUCKETS), "stage_seconds": dict(self.stage_seconds),
            "lag_pending": self.lag[0], "lag_ack_pending": self.lag[1],
            "equipment": len(self.equipment), "equipment_actors": len(self.actors),
            "running": self._task is not None and not self._task.done(),
            "last_batch_at": self.last_batch_at,
            "notifications": self.notifier.stats() if self.notifier is not None else None,
        }

    async def equipment_status(self) -> list[dict[str, Any]]:
        return await asyncio.gather(*(a.status.remote() for a in self.actors.values()))

    async def equipment_actor(self, equipment_id: str) -> Any:
        return self.actors.get(self.placement.get(equipment_id, ""))

    async def stop(self) -> None:
        """Stop consuming, checkpoint the models, close connections."""
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
        await asyncio.gather(*(a.stop.remote() for a in self.actors.values()), return_exceptions=True)
        if self._notifier_task is not None:
            self._notifier_task.cancel()
        if self.notifier is not None:
            await self.notifier.close()
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self._pool is not None:
            await self._pool.close()
