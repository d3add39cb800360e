"""The feed: a fleet's telemetry with its faults, as the message bodies a SCADA gateway sends. Pure, seeded.

:class:`FeedSimulator` turns a timestamp into message bodies (exactly the JSON the gateways send, see
``schema.telemetry``); :class:`MessageBatcher` groups them as gateways that send every N polls do.

>>> from datetime import UTC, datetime
>>> from sim.fleet import demo_fleet
>>> sim = FeedSimulator(demo_fleet(2), seed=1)
>>> [m["equipment_id"] for m in sim.next_snapshots(datetime(2026, 1, 1, tzinfo=UTC))]
['PJ-0001', 'CMP-0002']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schema.telemetry import MAX_READINGS_PER_MESSAGE
from sim.faults import (
    DEFAULT_FAULT_DURATION,
    PRECURSOR_FAULTS,
    PRECURSOR_POWER,
    SPIKE_DEFAULT_READINGS,
    VALUE_FAULTS,
    ActiveFault,
    Fault,
    FaultKind,
    FaultSchedule,
    fault_fits,
    truth_record,
)
from sim.fleet import EquipmentSpec, format_ts, truncate_ms
from sim.normal import NormalBehaviour, SimulatedUnit

__all__ = ["LATE_BATCH_MAX_READINGS", "FeedSimulator", "MessageBatcher", "SimMessage"]

log = logging.getLogger(__name__)

# A late batch larger than this is split: the contract caps a message at MAX_READINGS_PER_MESSAGE and
# NATS at 1 MiB per payload by default (a pump-jack snapshot is ~170 bytes, so 5,000 fit with room).
LATE_BATCH_MAX_READINGS = min(5_000, MAX_READINGS_PER_MESSAGE)


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message to publish: its body (JSON-ready), whose subject it goes to, and its dedup id."""

    equipment_id: str
    body: dict[str, Any]
    msg_id: str
    values: int  # sensor values carried, for rate accounting


def _message(equipment_id: str, snapshots: list[dict[str, Any]], batch: bool = False) -> SimMessage:
    body = {"readings": snapshots} if batch or len(snapshots) > 1 else snapshots[0]
    return SimMessage(
        equipment_id,
        body,
        f"{equipment_id}:{snapshots[0]['ts']}",
        sum(len(s["values"]) for s in snapshots),
    )


class FeedSimulator:
    """Pure, seeded generator of a fleet's telemetry, with faults.

    Each equipment has its own random stream (seeded from ``seed`` and its id), so one equipment's
    faults or outages never change what the others report; injecting the same faults at the same
    timestamps reproduces a run exactly. ``normal`` sets the normal behaviour (see `NormalBehaviour`).
    Every fault activated is recorded in `truth` (see `truth_record`); `drain_truth` hands out the new ones.
    """

    def __init__(
        self,
        fleet: Sequence[EquipmentSpec],
        seed: int = 0,
        schedule: FaultSchedule | None = None,
        normal: NormalBehaviour | None = None,
    ) -> None:
        ids = [e.equipment_id for e in fleet]
        if len(set(ids)) != len(ids):
            raise ValueError("equipment ids must be unique")
        self.fleet: tuple[EquipmentSpec, ...] = tuple(fleet)
        self.schedule = schedule
        self._units = {e.equipment_id: SimulatedUnit(e, seed, normal) for e in self.fleet}
        self.truth: list[dict[str, Any]] = []
        self._truth_sent = 0
        self._rng = random.Random(f"faults:{seed}")  # noqa: S311  simulated sensor noise, not security
        self._faults: dict[str, list[ActiveFault]] = {eid: [] for eid in ids}
        self._pending_relative: list[Fault] = []
        self._last_value: dict[str, dict[str, float]] = {eid: {} for eid in ids}
        self.epoch: datetime | None = None
        self.last_ts: datetime | None = None
        self.faults_injected = 0

    # -- faults ---------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Accept a fault now; raises ``ValueError`` if it names unknown equipment or a foreign sensor.

        A fault with a relative (or no) start injected before the first tick waits for that tick.
        """
        unit = self._units.get(fault.equipment_id)
        if unit is None:
            raise ValueError(f"unknown equipment {fault.equipment_id!r}")
        names = [s.name for s in unit.sensors]
        if fault.kind in PRECURSOR_FAULTS and not fault_fits(fault.kind, unit.spec):
            raise ValueError(f"{fault.equipment_id} has no {' and '.join(n for n, _ in PRECURSOR_FAULTS[fault.kind])} "
                             f"for a {fault.kind} fault")
        if fault.kind in VALUE_FAULTS:
            if not names:
                raise ValueError(f"{fault.equipment_id} has no sensors for a {fault.kind} fault")
            if fault.sensor is not None and fault.sensor not in names:
                raise ValueError(
                    f"{fault.equipment_id} has no sensor {fault.sensor!r} (has {', '.join(names)})"
                )
        if not isinstance(fault.start, datetime) and self.epoch is None:
            self._pending_relative.append(fault)
        else:
            self._activate(fault)
        self.faults_injected += 1

    def _activate(self, fault: Fault) -> None:
        if fault.start is None:
            # "Now": the next tick, which is any timestamp after the last one generated.
            assert self.epoch is not None  # noqa: S101  narrows a type; not a check of input
            start = self.last_ts + timedelta(milliseconds=1) if self.last_ts else self.epoch
        elif isinstance(fault.start, timedelta):
            assert self.epoch is not None  # noqa: S101  narrows a type; not a check of input
            start = self.epoch + fault.start
        else:
            start = fault.start.astimezone(UTC)
        sensor = fault.sensor
        if fault.kind in VALUE_FAULTS and sensor is None:
            sensor = self._rng.choice(self._units[fault.equipment_id].sensors).name
        duration = fault.duration if fault.duration is not None else DEFAULT_FAULT_DURATION[fault.kind]
        end = None if duration is None else start + duration
        active = ActiveFault(fault, sensor if fault.kind in VALUE_FAULTS else None, start, end)
        if end is None:
            active.spikes_left = SPIKE_DEFAULT_READINGS
        unit = self._units[fault.equipment_id]
        moved: list[str] = []
        magnitude: float | None = None
        if fault.kind in PRECURSOR_FAULTS:
            moved = [name for name, _ in PRECURSOR_FAULTS[fault.kind]]
            first = PRECURSOR_FAULTS[fault.kind][0][1]
            magnitude = abs(first) if fault.magnitude is None else fault.magnitude
        elif active.sensor is not None:
            moved = [active.sensor]
            if fault.kind is FaultKind.DRIFT:
                magnitude = fault.magnitude
        for name in moved:
            spec = next(s for s in unit.sensors if s.name == name)
            # Before the unit has a normal to measure (the first tick), a tenth of the range stands in.
            active.sigma[name] = unit.normal_std(name) or 0.1 * (spec.high - spec.low)
        self._faults[fault.equipment_id].append(active)
        self.truth.append(truth_record(fault, unit.spec.equipment_type.value, moved, start, end, magnitude))
        # Said out loud so whoever watches the alerts can tell what they should be seeing.
        log.info("fault %s on %s%s from %s%s", fault.kind.value, fault.equipment_id,
                 f" ({active.sensor})" if active.sensor else "", start.isoformat(timespec="seconds"),
                 f" for {duration.total_seconds():.0f}s" if duration is not None else "")

    @property
    def active_faults(self) -> list[Fault]:
        """Faults injected and not yet over (including ones scheduled to start later)."""
        return [a.fault for faults in self._faults.values() for a in faults if not a.normal] + list(
            self._pending_relative
        )

    @property
    def truth_pending(self) -> bool:
        """Whether faults were activated since the last `drain_truth`."""
        return len(self.truth) > self._truth_sent

    def drain_truth(self) -> list[dict[str, Any]]:
        """Truth records of the faults activated since the last call (all of them stay in `truth`)."""
        new = self.truth[self._truth_sent :]
        self._truth_sent = len(self.truth)
        return new

    def normal_std(self, equipment_id: str, sensor: str) -> float | None:
        """Standard deviation of a sensor's fault-free values so far (None before 30 values)."""
        return self._units[equipment_id].normal_std(sensor)

    def normal_events(self, equipment_id: str) -> list[tuple[datetime, str]]:
        """The latest normal events of one equipment, oldest first (at most NORMAL_EVENTS_KEPT): operator
        set-point changes, pump stops and starts, late deliveries. Not faults: what a false alert may follow."""
        return list(self._units[equipment_id].events)

    # -- generation -----------------------------------------------------------------------------

    def next_snapshots(self, ts: datetime) -> list[dict[str, Any]]:
        """Message bodies for the tick at ``ts``: one snapshot per equipment currently reporting.

        An equipment whose ``late_batch`` outage has just ended also contributes its held snapshots as
        one ``{"readings": [...]}`` body (before its live snapshot), exactly as a store-and-forward
        gateway resends on reconnect.
        """
        return [m.body for m in self.next_messages(ts)]

    def next_messages(self, ts: datetime) -> list[SimMessage]:
        """Like :meth:`next_snapshots`, plus each body's equipment id and dedup id (for publishing)."""
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("ts must be timezone-aware")
        ts = truncate_ms(ts)
        if self.last_ts is not None and ts <= self.last_ts:
            # Same-millisecond snapshots would share a DB key and a dedup id: one would vanish.
            raise ValueError(
                f"timestamps must increase by at least 1 ms ({format_ts(ts)} after {format_ts(self.last_ts)})"
            )
        if self.epoch is None:
            self.epoch = ts
            pending, self._pending_relative = self._pending_relative, []
            for fault in pending:
                self._activate(fault)
        self.last_ts = ts
        if self.schedule is not None:
            for fault in self.schedule.due(ts, self.fleet):
                self.inject(fault)
        ts_text = format_ts(ts)
        out: list[SimMessage] = []
        for spec in self.fleet:
            eid = spec.equipment_id
            unit = self._units[eid]
            values = unit.step(ts)
            late = unit.late_due(ts)
            if late is not None:  # normal store-and-forward: held a little, sent as one batch
                held = ActiveFault(Fault(FaultKind.LATE_BATCH, eid), None, ts, ts + late, normal=True)
                self._faults[eid].append(held)
            faults = self._faults[eid]
            held_by: ActiveFault | None = None
            silent = False
            for af in faults:
                if not af.active(ts):
                    continue
                if af.kind is FaultKind.COMMS_LOSS:
                    silent = True
                elif af.kind is FaultKind.LATE_BATCH:
                    held_by = af
                elif af.kind in PRECURSOR_FAULTS:
                    self._apply_precursor(af, ts, values, eid)
                else:
                    self._apply_value_fault(af, ts, values, eid)
            self._last_value[eid].update(values)
            snapshot = {"equipment_id": eid, "ts": ts_text, "values": values}
            # Released batches first: the gateway drains its buffer, then resumes live reporting.
            for af in faults:
                if af.kind is FaultKind.LATE_BATCH and af.finished(ts) and af.held:
                    out.extend(self._release(eid, af.held))
                    af.held = []
            if held_by is not None and not silent:
                held_by.held.append(snapshot)
            elif not silent and values:
                out.append(_message(eid, [snapshot]))
            self._faults[eid] = [af for af in faults if not af.finished(ts) or af.held]
        return out

    def _apply_value_fault(self, af: ActiveFault, ts: datetime, values: dict[str, float], eid: str) -> None:
        assert af.sensor is not None  # noqa: S101  narrows a type; not a check of input
        spec = next(s for s in self._units[eid].sensors if s.name == af.sensor)
        span = spec.high - spec.low
        digits = self._units[eid].decimals[af.sensor]
        if af.kind is FaultKind.SPIKE:
            values[af.sensor] = round(spec.high + self._rng.uniform(3.0, 6.0) * span, digits)
            if af.end is None:
                af.spikes_left -= 1
        elif af.kind is FaultKind.DRIFT:
            assert af.end is not None  # noqa: S101  narrows a type; not a check of input
            ramp = af.fault.ramp.total_seconds() if af.fault.ramp is not None else (af.end - af.start).total_seconds()
            progress = 1.0 if ramp <= 0 else min(1.0, (ts - af.start).total_seconds() / ramp)
            if af.fault.magnitude is None:
                # Reaches 1.25 spans above its normal value at the end: out of range well before that.
                values[af.sensor] = round(values[af.sensor] + 1.25 * span * progress, digits)
            else:
                shift = af.fault.magnitude * af.sigma[af.sensor] * progress
                values[af.sensor] = round(values[af.sensor] + shift, digits)
        elif af.kind is FaultKind.STUCK:
            if af.stuck_value is None:
                af.stuck_value = self._last_value[eid].get(af.sensor, values[af.sensor])
            values[af.sensor] = af.stuck_value

    def _apply_precursor(self, af: ActiveFault, ts: datetime, values: dict[str, float], eid: str) -> None:
        """A developing failure: each sensor it moves shifts by its share of the magnitude times progress**power."""
        assert af.end is not None  # noqa: S101  narrows a type; not a check of input
        total = (af.end - af.start).total_seconds()
        progress = 1.0 if total <= 0 else min(1.0, (ts - af.start).total_seconds() / total)
        grown = progress ** PRECURSOR_POWER[af.kind]
        effects = PRECURSOR_FAULTS[af.kind]
        scale = 1.0 if af.fault.magnitude is None else af.fault.magnitude / abs(effects[0][1])
        digits = self._units[eid].decimals
        for name, sigmas in effects:
            if name in values:
                values[name] = round(values[name] + scale * sigmas * af.sigma[name] * grown, digits[name])

    @staticmethod
    def _release(eid: str, held: list[dict[str, Any]]) -> list[SimMessage]:
        size = LATE_BATCH_MAX_READINGS
        return [
            SimMessage(
                eid,
                {"readings": chunk},
                f"{eid}:{chunk[0]['ts']}",
                sum(len(s["values"]) for s in chunk),
            )
            for chunk in (held[i : i + size] for i in range(0, len(held), size))
        ]

    def flush(self) -> list[SimMessage]:
        """Release every snapshot still held by an unfinished ``late_batch`` (the feed is stopping).

        Stopping mid-outage would otherwise silently lose readings a real gateway still has on disk.
        """
        out: list[SimMessage] = []
        for eid, faults in self._faults.items():
            for af in faults:
                if af.held:
                    out.extend(self._release(eid, af.held))
                    af.held = []
        return out


class MessageBatcher:
    """Groups consecutive live snapshots of one equipment into ``{"readings": [...]}`` messages.

    Models gateways that poll often but send every N polls (fewer, larger messages); late batches are
    already batches and pass straight through. A partial batch flushed at shutdown keeps the batch form,
    so a feed configured for batches only ever sends batches.
    """

    def __init__(self, snapshots_per_message: int = 1):
        if not 1 <= snapshots_per_message <= MAX_READINGS_PER_MESSAGE:
            raise ValueError(f"snapshots_per_message must be between 1 and {MAX_READINGS_PER_MESSAGE}")
        self.per_message = snapshots_per_message
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def add(self, message: SimMessage) -> list[SimMessage]:
        if self.per_message == 1 or "readings" in message.body:
            return [message]
        pending = self._pending.setdefault(message.equipment_id, [])
        pending.append(message.body)
        if len(pending) < self.per_message:
            return []
        del self._pending[message.equipment_id]
        return [_message(message.equipment_id, pending, batch=True)]

    def flush(self) -> list[SimMessage]:
        out = [_message(eid, snaps, batch=True) for eid, snaps in self._pending.items() if snaps]
        self._pending.clear()
        return out


# ---------------------------------------------------------------------------------------------------
