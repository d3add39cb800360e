"""A realistic SCADA feed simulator: the demo feed, the load generator and a fault injector in one.

Why it exists: the pipeline (ingest, detectors, alerts) has to be exercised end to end without real
field equipment, with data that looks like the field's: levels that sit inside their normal ranges,
follow a daily cycle, move together where physics couples them, change operating point when an operator
says so, stop and start (pump-off control), arrive late now and then, and break in the ways real feeds and
machines break (spikes, drifting and stuck sensors, comms outages, store-and-forward resends, and failure
precursors that develop over hours: a compressor's bearing wearing, a valve leaking).

Two layers, so the interesting part is testable without a server:

- Pure generation (no IO, deterministic for a seed): :class:`FeedSimulator` turns a timestamp into
  message bodies (exactly the JSON the SCADA gateways send, see ``schema.telemetry``); :class:`Fault`
  and :class:`FaultSchedule` describe what goes wrong and when.
- Publishing: :func:`run_simulation` paces the generator to a target readings-per-second and publishes
  to JetStream ``tele.<tenant>.<equipment>`` with ``Nats-Msg-Id`` so resends dedup; ``simctl.<tenant>``
  accepts faults on demand while it runs. :func:`add_simulate_arguments` / :func:`simulate_command` are
  the ``wellpulse simulate`` CLI.

Ground truth: every fault the simulator injects (scheduled, given with ``--fault`` or sent on ``simctl``)
becomes one record (kind, equipment, sensor(s), start, end; see :meth:`FeedSimulator.drain_truth`), written
as a JSON line to ``--truth PATH`` and published on ``simctl.<tenant>.faults``, so alert quality can be
measured against what really happened (``python -m bench.alert_quality``). Operating changes, pump stops
and late data are normal behaviour, not faults: they are not in the truth.

>>> sim = FeedSimulator(demo_fleet(2), seed=1)
>>> [m["equipment_id"] for m in sim.next_snapshots(datetime(2026, 1, 1, tzinfo=UTC))]
['PJ-0001', 'CMP-0002']
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schema.equipment import ID_PREFIX_BY_TYPE, SENSORS_BY_TYPE, SETPOINT_SENSOR, EquipmentType, SensorSpec
from schema.ids import (
    EquipmentId,
    InvalidIdentifier,
    SensorName,
    check_equipment_id,
    check_sensor,
    check_tenant_id,
)
from schema.subjects import (
    TELEMETRY_STREAM,
    TELEMETRY_SUBJECTS,
    simctl_subject,
    simctl_truth_subject,
    tele_subject,
)
from schema.telemetry import MAX_READINGS_PER_MESSAGE
from store.nats_auth import FEED_USER_PREFIX, feed_inbox_prefix, redact_url, url_user

__all__ = [
    "DEFAULT_NATS_URL",
    "FLEET_MIX",
    "PRECURSOR_FAULTS",
    "EquipmentSpec",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "FeedSimulator",
    "MessageBatcher",
    "NormalBehaviour",
    "SimMessage",
    "SimulationStats",
    "add_simulate_arguments",
    "demo_fleet",
    "ensure_telemetry_stream",
    "fault_fits",
    "format_ts",
    "parse_fault_spec",
    "run_simulation",
    "simctl_subject",
    "simctl_truth_subject",
    "simulate_command",
    "snapshot_interval",
    "truth_record",
]

log = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

# Share of each type in a demo fleet (weights out of 20): a field is mostly pump jacks, with the
# compression, separation, storage and metering that serve them.
FLEET_MIX: tuple[tuple[EquipmentType, int], ...] = (
    (EquipmentType.PUMP_JACK, 8),
    (EquipmentType.COMPRESSOR, 4),
    (EquipmentType.SEPARATOR, 3),
    (EquipmentType.TANK_BATTERY, 3),
    (EquipmentType.METER, 2),
)

# A late batch larger than this is split: the contract caps a message at MAX_READINGS_PER_MESSAGE and
# NATS at 1 MiB per payload by default (a pump-jack snapshot is ~170 bytes, so 5,000 fit with room).
LATE_BATCH_MAX_READINGS = min(5_000, MAX_READINGS_PER_MESSAGE)
SPIKE_DEFAULT_READINGS = 3
NORMAL_EVENTS_KEPT = 1_000  # per equipment (`FeedSimulator.normal_events`)
# The DB key and the dedup id both carry millisecond timestamps; two snapshots of one equipment in the
# same millisecond would collapse into one, so the pacing never goes below this.
MIN_SNAPSHOT_INTERVAL_S = 0.001


# ---------------------------------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EquipmentSpec:
    """One simulated piece of equipment; its type decides which sensors it reports."""

    equipment_id: str
    equipment_type: EquipmentType

    def __post_init__(self) -> None:
        check_equipment_id(self.equipment_id)

    @property
    def sensors(self) -> tuple[SensorSpec, ...]:
        return SENSORS_BY_TYPE[self.equipment_type]


def demo_fleet(count: int) -> list[EquipmentSpec]:
    """A deterministic fleet of ``count`` with the :data:`FLEET_MIX` proportions.

    Types are interleaved by smooth weighted round robin rather than laid out in blocks, so that any
    prefix of the fleet (and therefore a small fleet) is already a mix; the id counter is global
    (``PJ-0001``, ``CMP-0002``, ...) so an id never repeats across types.

    >>> [e.equipment_id for e in demo_fleet(5)]
    ['PJ-0001', 'CMP-0002', 'SEP-0003', 'PJ-0004', 'TNK-0005']
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    total = sum(w for _, w in FLEET_MIX)
    current = [0] * len(FLEET_MIX)
    fleet: list[EquipmentSpec] = []
    for n in range(1, count + 1):
        for i, (_, weight) in enumerate(FLEET_MIX):
            current[i] += weight
        best = max(range(len(FLEET_MIX)), key=lambda i: current[i])
        current[best] -= total
        kind = FLEET_MIX[best][0]
        fleet.append(EquipmentSpec(f"{ID_PREFIX_BY_TYPE[kind]}-{n:04d}", kind))
    return fleet


def snapshot_interval(fleet: Sequence[EquipmentSpec], rate: float) -> float:
    """Seconds between two snapshots of one equipment so the fleet emits ``rate`` values per second.

    Every equipment reports on the same cadence (as a polled SCADA system does); the interval is the
    fleet's total sensor count over the rate, never below one millisecond (see MIN_SNAPSHOT_INTERVAL_S).
    """
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of readings per second")
    values_per_tick = sum(len(e.sensors) for e in fleet)
    if values_per_tick == 0:
        raise ValueError("the fleet has no sensors")
    return max(values_per_tick / rate, MIN_SNAPSHOT_INTERVAL_S)


def format_ts(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: the form the gateways send and the dedup id uses."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _truncate_ms(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(microsecond=ts.microsecond // 1000 * 1000)


def _decimals(spec: SensorSpec) -> int:
    """Resolution like a real transmitter's: about a thousandth of the span (tank psi 0.001, rod load 1)."""
    span = spec.high - spec.low
    return max(0, 3 - math.floor(math.log10(span))) if span > 0 else 3


# ---------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------


class FaultKind(StrEnum):
    SPIKE = "spike"  # a few readings far above the range
    DRIFT = "drift"  # linear drift out of the range over the duration
    STUCK = "stuck"  # the sensor repeats its last value exactly
    COMMS_LOSS = "comms_loss"  # the equipment sends nothing
    LATE_BATCH = "late_batch"  # outage, then everything held is sent at once (store-and-forward)
    # Failure precursors: the machine, not the sensor, goes wrong, slowly, and several sensors show it.
    BEARING_WEAR = "bearing_wear"  # compressor: vibration rises, accelerating, and the discharge runs hotter
    VALVE_LEAK = "valve_leak"  # compressor: a leaking valve recompresses gas: hotter discharge, less pressure


VALUE_FAULTS = frozenset({FaultKind.SPIKE, FaultKind.DRIFT, FaultKind.STUCK})

# What each precursor does at full development, per sensor, in standard deviations of that sensor's normal
# variation (signed), and the power of the progress it follows (2: slow at first, accelerating at the end,
# as wear does). ``Fault.magnitude`` scales the first sensor's figure; the others keep their proportion.
PRECURSOR_FAULTS: dict[FaultKind, tuple[tuple[str, float], ...]] = {
    FaultKind.BEARING_WEAR: (("vibration_mm_s", 6.0), ("discharge_temp_f", 3.0)),
    FaultKind.VALVE_LEAK: (("discharge_temp_f", 6.0), ("discharge_psi", -3.0)),
}
PRECURSOR_POWER: dict[FaultKind, float] = {FaultKind.BEARING_WEAR: 2.0, FaultKind.VALVE_LEAK: 1.5}

# Duration when a fault does not say; ``None`` for a spike means "the next SPIKE_DEFAULT_READINGS
# readings", because a spike is a count of bad samples, not a span of time.
DEFAULT_FAULT_DURATION: dict[FaultKind, timedelta | None] = {
    FaultKind.SPIKE: None,
    FaultKind.DRIFT: timedelta(minutes=10),
    FaultKind.STUCK: timedelta(minutes=2),
    # Longer than the default stale-data rule (60 s), so an outage is something to see.
    FaultKind.COMMS_LOSS: timedelta(seconds=90),
    FaultKind.LATE_BATCH: timedelta(seconds=90),
    FaultKind.BEARING_WEAR: timedelta(hours=6),
    FaultKind.VALVE_LEAK: timedelta(hours=4),
}


def fault_fits(kind: FaultKind, equipment: EquipmentSpec) -> bool:
    """Whether ``equipment`` can have a ``kind`` fault (precursors need the sensors they move)."""
    if kind in VALUE_FAULTS:
        return bool(equipment.sensors)
    if kind in PRECURSOR_FAULTS:
        names = {s.name for s in equipment.sensors}
        return all(name in names for name, _ in PRECURSOR_FAULTS[kind])
    return True


@dataclass(frozen=True, slots=True)
class Fault:
    """Something going wrong with one equipment (and, for value faults, one sensor).

    ``start``: ``None`` = at the next tick; a ``timedelta`` = that long after the simulator's first tick
    (what the CLI's ``@START_S`` means); a ``datetime`` = at that instant. ``duration``: ``None`` = the
    kind's default (see DEFAULT_FAULT_DURATION). ``sensor`` is ignored by comms faults and precursors
    (they move the sensors :data:`PRECURSOR_FAULTS` names); ``None`` on a value fault lets the simulator pick
    one of the equipment's sensors.

    ``magnitude``: for a drift, the total change in standard deviations of the sensor's normal variation
    (as the simulator has generated it so far, daily cycle and all); ``None`` = 1.25 spans of the normal
    range (far out of range: what the demo shows). For a precursor, the first sensor's change at full
    development, in the same unit (``None`` = :data:`PRECURSOR_FAULTS`'s). ``ramp``: how long a drift takes
    to reach its magnitude, after which it holds until the end (``None`` = the whole duration).
    """

    kind: FaultKind
    equipment_id: str
    sensor: str | None = None
    start: datetime | timedelta | None = None
    duration: timedelta | None = None
    magnitude: float | None = None
    ramp: timedelta | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        check_equipment_id(self.equipment_id)
        if self.sensor is not None:
            check_sensor(self.sensor)
        if isinstance(self.start, datetime) and self.start.utcoffset() is None:
            raise ValueError("fault start must be timezone-aware")
        if self.duration is not None and self.duration < timedelta(0):
            raise ValueError("fault duration must not be negative")
        if self.magnitude is not None and not math.isfinite(self.magnitude):
            raise ValueError("fault magnitude must be a finite number")
        if self.ramp is not None and self.ramp <= timedelta(0):
            raise ValueError("fault ramp must be positive")


@dataclass(slots=True)
class _ActiveFault:
    """A fault once the simulator has resolved its start, end, sensor and bookkeeping."""

    fault: Fault
    sensor: str | None
    start: datetime
    end: datetime | None  # None: a counted spike
    spikes_left: int = 0
    stuck_value: float | None = None
    held: list[dict[str, Any]] = field(default_factory=list)
    sigma: dict[str, float] = field(default_factory=dict)  # normal std of the sensors it moves, at its start
    normal: bool = False  # a normal late delivery, not a fault: never in the truth

    @property
    def kind(self) -> FaultKind:
        return self.fault.kind

    def active(self, ts: datetime) -> bool:
        if ts < self.start:
            return False
        if self.end is None:
            return self.spikes_left > 0
        return ts < self.end

    def finished(self, ts: datetime) -> bool:
        if self.end is None:
            return self.spikes_left <= 0
        return ts >= self.end


class FaultSchedule:
    """Injects a random fault on a random equipment every ``every_seconds`` of simulated time.

    Driven by the timestamps the simulator sees (not the wall clock), so a seeded run is reproducible
    and a fast-forwarded test sees the same faults as a real-time run.
    """

    def __init__(self, every_seconds: float, kinds: Iterable[FaultKind | str] | None = None, seed: int = 0):
        if every_seconds <= 0 or not math.isfinite(every_seconds):
            raise ValueError("every_seconds must be positive")
        self.every = timedelta(seconds=every_seconds)
        self.kinds: tuple[FaultKind, ...] = tuple(FaultKind(k) for k in (kinds or list(FaultKind)))
        if not self.kinds:
            raise ValueError("kinds must not be empty")
        self._rng = random.Random(f"schedule:{seed}")  # noqa: S311  simulated sensor noise, not security
        self._next: datetime | None = None

    def due(self, ts: datetime, fleet: Sequence[EquipmentSpec]) -> list[Fault]:
        """Faults whose slot is at or before ``ts``; the first slot is one period after the first call."""
        if self._next is None:
            self._next = ts + self.every
        out: list[Fault] = []
        while ts >= self._next and fleet:
            out.append(self._random_fault(self._next, fleet))
            self._next += self.every
        return out

    def _random_fault(self, start: datetime, fleet: Sequence[EquipmentSpec]) -> Fault:
        equipment = self._rng.choice(fleet)
        kinds = tuple(k for k in self.kinds if fault_fits(k, equipment))
        kind = self._rng.choice(kinds or (FaultKind.COMMS_LOSS,))
        sensor = self._rng.choice(equipment.sensors).name if kind in VALUE_FAULTS else None
        duration: timedelta | None
        if kind is FaultKind.SPIKE:
            duration = None
        elif kind is FaultKind.DRIFT:
            duration = timedelta(seconds=self._rng.uniform(300, 900))
        elif kind is FaultKind.STUCK:
            duration = timedelta(seconds=self._rng.uniform(60, 180))
        elif kind in PRECURSOR_FAULTS:
            duration = timedelta(hours=self._rng.uniform(2, 6))
        else:
            duration = timedelta(seconds=self._rng.uniform(10, 60))
        return Fault(kind, equipment.equipment_id, sensor, start, duration)


# ---------------------------------------------------------------------------------------------------
# Physical models
# ---------------------------------------------------------------------------------------------------

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class NormalBehaviour:
    """How often healthy equipment does the normal things that are not faults (rates per equipment).

    ``setpoint_changes_per_day``: an operator steps a setpoint (a pump jack's strokes per minute, a
    compressor's discharge pressure) by ``setpoint_step`` (normalised units, either way); the coupled sensors
    follow at once (motor current and rod load; discharge temperature), which is how such a change looks
    in the field. ``pump_on_hours`` / ``pump_off_minutes``: a pump jack's pump-off controller runs it, then
    stops it (strokes and motor current read 0, the rods hang at their static load) to let the well fill.
    ``late_per_day`` / ``late_seconds``: the gateway holds a few readings and sends them late in one batch
    (store-and-forward after a short link drop), under the stale-data limit. :meth:`none` turns all off.
    """

    setpoint_changes_per_day: float = 0.5
    setpoint_step: tuple[float, float] = (0.1, 0.2)
    pump_on_hours: tuple[float, float] = (4.0, 10.0)
    pump_off_minutes: tuple[float, float] = (15.0, 45.0)
    late_per_day: float = 2.0
    late_seconds: tuple[float, float] = (15.0, 40.0)

    @classmethod
    def none(cls) -> NormalBehaviour:
        """Only the daily cycle, the dump and tank cycles, the slow walk and the noise."""
        return cls(setpoint_changes_per_day=0.0, pump_on_hours=(math.inf, math.inf), late_per_day=0.0)




class _Unit:
    """State of one equipment. Values are computed in normalised units (0 = low, 1 = high of the range).

    Each sensor = base level + daily cycle + a bounded slow random walk + bounded noise. The bounds are
    chosen so the sum stays inside the normal range (base 0.35-0.65, cycle <= 0.08, walk <= 0.1, noise
    <= 0.045), so a fault-free feed never trips a threshold rule on its own; a clamp is the safety net.
    An operator's setpoint offset (kept so the base stays within 0.25-0.75) moves the setpoint sensor and,
    through the physics, the sensors coupled to it. A stopped pump jack reports 0 strokes and 0 A (the only
    values outside the normal range that a healthy feed sends).

    The unit also keeps the running mean and standard deviation of every sensor's fault-free values while
    running (`normal_std`): "σ of the sensor's normal variation" for faults given in σ.
    """

    def __init__(self, spec: EquipmentSpec, seed: int, normal: NormalBehaviour | None = None):
        self.spec = spec
        self.normal = NormalBehaviour() if normal is None else normal
        # crc32, not hash(): str hashes are salted per process and would break determinism.
        self.rng = random.Random(zlib.crc32(f"{seed}:{spec.equipment_id}".encode()))  # noqa: S311  simulated sensor noise, not security
        self.sensors = spec.sensors
        self.decimals = {s.name: _decimals(s) for s in self.sensors}
        self.base = {s.name: self.rng.uniform(0.35, 0.65) for s in self.sensors}
        self.amp = {s.name: self.rng.uniform(0.02, 0.08) for s in self.sensors}
        self.phase = {s.name: self.rng.uniform(0.0, _TWO_PI) for s in self.sensors}
        self.walk = dict.fromkeys(self.base, 0.0)
        self.last_ts: datetime | None = None
        # Separator: the dump valve makes the liquid level a sawtooth (fill slowly, dump quickly).
        self.sep_period = self.rng.uniform(120.0, 360.0)
        self.sep_phase = self.rng.random()
        # Tank battery: fills over hours (time-compressed for demos), hauled by truck in ~15-25 minutes.
        self.tank_u = self.rng.uniform(0.1, 0.85)
        self.tank_fill_rate = 0.8 / self.rng.uniform(2 * 3600.0, 4 * 3600.0)  # per second, normalised
        self.tank_haul_rate = 0.8 / self.rng.uniform(15 * 60.0, 25 * 60.0)
        self.tank_hauling = False
        self.tank_haul_at = self.rng.uniform(0.85, 0.95)
        self.tank_haul_to = self.rng.uniform(0.05, 0.12)
        # Normal behaviour's own stream: turning a behaviour off leaves the rest of the feed as it was.
        self.ops_rng = random.Random(zlib.crc32(f"ops:{seed}:{spec.equipment_id}".encode()))  # noqa: S311  simulated operations, not security
        self.setpoint = SETPOINT_SENSOR.get(spec.equipment_type)
        self.offset = 0.0
        self.next_setpoint: datetime | None = None
        self.running = True
        self.next_toggle: datetime | None = None
        self.next_late: datetime | None = None
        self._moments: dict[str, list[float]] = {s.name: [0.0, 0.0, 0.0] for s in self.sensors}
        # The normal events of late (not faults, not in the truth): what a false alert can be traced to.
        self.events: deque[tuple[datetime, str]] = deque(maxlen=NORMAL_EVENTS_KEPT)

    def normal_std(self, name: str) -> float | None:
        """Standard deviation of ``name``'s fault-free values so far (None before 30 values)."""
        n, _, m2 = self._moments[name]
        return math.sqrt(m2 / n) if n >= 30 else None

    def _learn_normal(self, values: dict[str, float]) -> None:
        for name, v in values.items():
            m = self._moments[name]
            m[0] += 1
            d = v - m[1]
            m[1] += d / m[0]
            m[2] += d * (v - m[1])

    def _after(self, ts: datetime, per_day: float) -> datetime | None:
        """When a Poisson event of ``per_day`` next happens after ``ts`` (None: never)."""
        if per_day <= 0:
            return None
        return ts + timedelta(days=self.ops_rng.expovariate(per_day))

    def _operate(self, ts: datetime) -> None:
        """Operator set-point changes and pump-off control, on their own schedules (simulated time)."""
        normal = self.normal
        if self.setpoint is not None:
            if self.next_setpoint is None:
                self.next_setpoint = self._after(ts, normal.setpoint_changes_per_day)
            while self.next_setpoint is not None and ts >= self.next_setpoint:
                step = self.ops_rng.uniform(*normal.setpoint_step) * self.ops_rng.choice((-1.0, 1.0))
                level = self.base[self.setpoint] + self.offset
                if not 0.25 <= level + step <= 0.75:
                    step = -step
                self.offset += step
                self.events.append((self.next_setpoint, "setpoint_change"))
                self.next_setpoint = self._after(self.next_setpoint, normal.setpoint_changes_per_day)
        if self.spec.equipment_type is EquipmentType.PUMP_JACK and math.isfinite(normal.pump_on_hours[1]):
            if self.next_toggle is None:
                self.next_toggle = ts + timedelta(hours=self.ops_rng.uniform(0.0, normal.pump_on_hours[1]))
            while ts >= self.next_toggle:
                self.running = not self.running
                self.events.append((self.next_toggle, "pump_start" if self.running else "pump_stop"))
                if self.running:
                    span = timedelta(hours=self.ops_rng.uniform(*normal.pump_on_hours))
                else:
                    span = timedelta(minutes=self.ops_rng.uniform(*normal.pump_off_minutes))
                self.next_toggle += span

    def late_due(self, ts: datetime) -> timedelta | None:
        """If a normal late delivery starts at ``ts``, how long the gateway holds the readings."""
        per_day = self.normal.late_per_day
        if per_day <= 0:
            return None
        if self.next_late is None:
            self.next_late = self._after(ts, per_day)
        if self.next_late is None or ts < self.next_late:
            return None
        self.next_late = self._after(ts, per_day)
        self.events.append((ts, "late_delivery"))
        return timedelta(seconds=self.ops_rng.uniform(*self.normal.late_seconds))

    def _noise(self, sd: float) -> float:
        return max(-3 * sd, min(3 * sd, self.rng.gauss(0.0, sd)))

    def _normal(self, name: str, day_frac: float) -> float:
        w = 0.97 * self.walk[name] + self.rng.gauss(0.0, 0.01)
        self.walk[name] = w = max(-0.1, min(0.1, w))
        cycle = self.amp[name] * math.sin(_TWO_PI * day_frac + self.phase[name])
        offset = self.offset if name == self.setpoint else 0.0
        return self.base[name] + offset + cycle + w + self._noise(0.015)

    def _step_tank(self, dt: float) -> float:
        # Piecewise: the tank may cross a fill/haul turning point inside one (possibly long) step.
        while dt > 0:
            if self.tank_hauling:
                need = (self.tank_u - self.tank_haul_to) / self.tank_haul_rate
                used = min(dt, need)
                self.tank_u -= used * self.tank_haul_rate
                if used >= need:
                    self.tank_hauling = False
                    self.tank_u = self.tank_haul_to
                    self.tank_haul_at = self.rng.uniform(0.85, 0.95)
            else:
                need = (self.tank_haul_at - self.tank_u) / self.tank_fill_rate
                used = min(dt, need)
                self.tank_u += used * self.tank_fill_rate
                if used >= need:
                    self.tank_hauling = True
                    self.tank_u = self.tank_haul_at
                    self.tank_haul_to = self.rng.uniform(0.05, 0.12)
            dt -= max(used, 1e-9)
        return self.tank_u + self._noise(0.003)

    def _separator_level(self, dt: float) -> float:
        self.sep_phase = (self.sep_phase + dt / self.sep_period) % 1.0
        rise = 0.85  # share of the cycle spent filling
        p = self.sep_phase
        level = 0.2 + 0.6 * (p / rise if p < rise else 1.0 - (p - rise) / (1.0 - rise))
        return level + self._noise(0.01)

    def step(self, ts: datetime) -> dict[str, float]:
        """Advance to ``ts`` and return the true values (rounded like a transmitter reports them)."""
        dt = 0.0 if self.last_ts is None else (ts - self.last_ts).total_seconds()
        self.last_ts = ts
        self._operate(ts)
        day_frac = (ts.hour * 3600 + ts.minute * 60 + ts.second + ts.microsecond / 1e6) / 86400.0
        u: dict[str, float] = {}
        kind = self.spec.equipment_type
        if kind is EquipmentType.PUMP_JACK and not self.running:
            # Stopped by the pump-off controller: no strokes, no current; the rods hang at their static
            # weight; the pressures carry on (their random walks keep moving).
            for name in ("strokes_per_minute", "polished_rod_load_lbf"):
                self._normal(name, day_frac)
            u["polished_rod_load_lbf"] = 0.3 + self._noise(0.01)
            u["tubing_psi"] = self._normal("tubing_psi", day_frac)
            u["casing_psi"] = self._normal("casing_psi", day_frac)
            out = self._scale(u)
            out["strokes_per_minute"] = 0.0
            out["motor_current_a"] = 0.0
            return {s.name: out[s.name] for s in self.sensors}
        if kind is EquipmentType.PUMP_JACK:
            spm = self._normal("strokes_per_minute", day_frac)
            u["strokes_per_minute"] = spm
            # Faster strokes: more motor current and higher peak rod load (inertia + fluid load).
            u["motor_current_a"] = 0.15 + 0.7 * spm + self._noise(0.02)
            self._normal("polished_rod_load_lbf", day_frac)  # only to move its walk (fluid level changes)
            rod_walk = 0.3 * self.walk["polished_rod_load_lbf"]
            u["polished_rod_load_lbf"] = 0.2 + 0.6 * spm + rod_walk + self._noise(0.02)
            u["tubing_psi"] = self._normal("tubing_psi", day_frac)
            u["casing_psi"] = self._normal("casing_psi", day_frac)
        elif kind is EquipmentType.COMPRESSOR:
            psi = self._normal("discharge_psi", day_frac)
            u["discharge_psi"] = psi
            # Higher compression ratio, hotter discharge; plus ambient temperature's daily swing.
            u["discharge_temp_f"] = 0.2 + 0.5 * psi + 0.08 * math.sin(_TWO_PI * day_frac) + self._noise(0.015)
            u["vibration_mm_s"] = self._normal("vibration_mm_s", day_frac)
        elif kind is EquipmentType.SEPARATOR:
            u["level_in"] = self._separator_level(dt)
            u["pressure_psi"] = self._normal("pressure_psi", day_frac)
        elif kind is EquipmentType.TANK_BATTERY:
            u["level_ft"] = self._step_tank(dt)
            u["pressure_psi"] = self._normal("pressure_psi", day_frac)
        else:
            for s in self.sensors:
                u[s.name] = self._normal(s.name, day_frac)
        out = self._scale(u)
        self._learn_normal(out)
        return out

    def _scale(self, u: dict[str, float]) -> dict[str, float]:
        """Normalised values to engineering units, clamped inside the range and rounded like a transmitter."""
        out: dict[str, float] = {}
        for s in self.sensors:
            if s.name in u:
                x = max(0.02, min(0.98, u[s.name]))
                out[s.name] = round(s.low + x * (s.high - s.low), self.decimals[s.name])
        return out


# ---------------------------------------------------------------------------------------------------
# Simulator
# ---------------------------------------------------------------------------------------------------


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


def truth_record(fault: Fault, equipment_type: str, sensors: Sequence[str], start: datetime,
                 end: datetime | None, magnitude_sigma: float | None = None) -> dict[str, Any]:
    """The ground-truth record of one injected fault (JSON-ready; one line of ``--truth``).

    ``sensor`` is the sensor a value fault hits (None for comms faults and precursors); ``sensors`` every
    sensor the fault moves (empty for comms faults); ``end`` is None for a spike counted in readings
    (``readings`` says how many), which ends with its last spiked reading.
    """
    record: dict[str, Any] = {
        "kind": fault.kind.value,
        "equipment_id": fault.equipment_id,
        "equipment_type": equipment_type,
        "sensor": sensors[0] if fault.kind in VALUE_FAULTS and sensors else None,
        "sensors": list(sensors),
        "start": format_ts(start),
        "end": None if end is None else format_ts(end),
    }
    if end is None:
        record["readings"] = SPIKE_DEFAULT_READINGS
    if magnitude_sigma is not None:
        record["magnitude_sigma"] = round(magnitude_sigma, 3)
    return record


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
        self._units = {e.equipment_id: _Unit(e, seed, normal) for e in self.fleet}
        self.truth: list[dict[str, Any]] = []
        self._truth_sent = 0
        self._rng = random.Random(f"faults:{seed}")  # noqa: S311  simulated sensor noise, not security
        self._faults: dict[str, list[_ActiveFault]] = {eid: [] for eid in ids}
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
        active = _ActiveFault(fault, sensor if fault.kind in VALUE_FAULTS else None, start, end)
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
        ts = _truncate_ms(ts)
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
                held = _ActiveFault(Fault(FaultKind.LATE_BATCH, eid), None, ts, ts + late, normal=True)
                self._faults[eid].append(held)
            faults = self._faults[eid]
            held_by: _ActiveFault | None = None
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

    def _apply_value_fault(self, af: _ActiveFault, ts: datetime, values: dict[str, float], eid: str) -> None:
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

    def _apply_precursor(self, af: _ActiveFault, ts: datetime, values: dict[str, float], eid: str) -> None:
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
# Publishing
# ---------------------------------------------------------------------------------------------------

# Async publishes in flight at most (JetStream acks outstanding). Bounded so a slow or absent server
# applies backpressure to the generator instead of growing memory; ~1 s of the default rate and well
# under the ~28k msg/s measured for publish_async here.
MAX_OUTSTANDING_PUBLISHES = 2_000
ACK_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
TELEMETRY_DUPLICATE_WINDOW_S = 120.0
TELEMETRY_MAX_AGE_S = 7 * 24 * 3600.0


@dataclass(slots=True)
class SimulationStats:
    """What a run did; ``readings`` counts sensor values (the unit of ``rate``), not snapshots."""

    messages: int = 0
    readings: int = 0
    faults_injected: int = 0
    elapsed_s: float = 0.0
    acked: int = 0
    duplicates: int = 0
    publish_errors: int = 0


class _ControlMessage(BaseModel):
    """Body of a ``simctl.<tenant>`` message: inject this fault now."""

    model_config = ConfigDict(extra="forbid")

    equipment_id: EquipmentId
    kind: FaultKind
    sensor: SensorName | None = None
    duration_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600, allow_inf_nan=False)


async def ensure_telemetry_stream(js: Any) -> None:
    """Create the TELEMETRY stream if missing, or add ``tele.>`` to it if it lacks that subject.

    An existing stream's limits are left alone: someone operating it may have tuned them; the simulator
    only needs its subjects to be captured. New streams get file storage, a 2-minute dedup window (the
    window ``Nats-Msg-Id`` resends rely on) and 7 days of retention.
    """
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import APIError, NotFoundError

    for attempt in range(2):
        try:
            info = await js.stream_info(TELEMETRY_STREAM)
        except NotFoundError:
            config = StreamConfig(
                name=TELEMETRY_STREAM,
                subjects=[TELEMETRY_SUBJECTS],
                storage=StorageType.FILE,
                duplicate_window=TELEMETRY_DUPLICATE_WINDOW_S,
                max_age=TELEMETRY_MAX_AGE_S,
            )
            try:
                await js.add_stream(config)
                log.info("created stream %s on %s", TELEMETRY_STREAM, TELEMETRY_SUBJECTS)
                return
            except APIError:
                if attempt:  # someone else created it between our two calls; look again once
                    raise
                continue
        subjects = list(info.config.subjects or [])
        if TELEMETRY_SUBJECTS not in subjects:
            await js.update_stream(info.config.evolve(subjects=[*subjects, TELEMETRY_SUBJECTS]))
            log.info("added %s to stream %s", TELEMETRY_SUBJECTS, TELEMETRY_STREAM)
        return


class _Publisher:
    """JetStream async publishing with a bounded number of unacknowledged messages.

    nats-py's ``publish_async`` futures never time out on their own: an ack lost in a reconnect would hold
    a slot of the pending semaphore forever. So every future is also kept here in publish order and
    cancelled once older than ``ack_timeout`` (cancelling releases its slot), and counted as an error.

    While the connection is down it does not publish at all: nats-py would buffer, then fail with
    ``OutboundBufferLimitError`` after registering the ack future, leaking a slot for good. Waiting
    instead makes the paced loop fall behind and catch up on reconnect with the original timestamps,
    which is what a store-and-forward gateway does anyway.
    """

    def __init__(
        self,
        nc: Any,
        js: Any,
        tenant: str,
        stats: SimulationStats,
        stop: asyncio.Event,
        ack_timeout: float = ACK_TIMEOUT_S,
    ):
        self.nc = nc
        self.stop = stop
        self.js = js
        self.tenant = tenant
        self.stats = stats
        self.ack_timeout = ack_timeout
        self._subjects: dict[str, str] = {}
        self._inflight: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._logged_errors = 0

    async def _connected(self) -> bool:
        """Wait out a reconnect; ``False`` if stopping (or closed) while still disconnected."""
        while not self.nc.is_connected:
            if self.stop.is_set() or self.nc.is_closed:
                return False
            await asyncio.sleep(0.1)
        return True

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats.publish_errors += 1
        if self._logged_errors < 10:  # one bad stream config would otherwise log every message
            self._logged_errors += 1
            log.warning("%s: %r", what, exc)

    async def publish(self, message: SimMessage) -> None:
        from nats.errors import OutboundBufferLimitError
        from nats.js.errors import TooManyStalledMsgsError

        if not self.nc.is_connected and not await self._connected():
            self._error("NATS disconnected, message dropped on stop", ConnectionError(message.msg_id))
            return
        subject = self._subjects.get(message.equipment_id)
        if subject is None:
            subject = self._subjects[message.equipment_id] = tele_subject(self.tenant, message.equipment_id)
        payload = orjson.dumps(message.body)
        while True:
            try:
                future = await self.js.publish_async(
                    subject, payload, wait_stall=self.ack_timeout, headers={"Nats-Msg-Id": message.msg_id}
                )
                break
            except TooManyStalledMsgsError:
                log.warning("no JetStream acks for %.0fs; dropping stale pending publishes", self.ack_timeout)
                self.sweep(force_age=self.ack_timeout / 2)
            except OutboundBufferLimitError as exc:  # disconnected between the check and the publish
                self._error("NATS disconnected, message dropped", exc)
                return
        future.add_done_callback(self._on_ack)
        self._inflight.append((time.monotonic(), future))
        self.stats.messages += 1
        self.stats.readings += message.values

    def _on_ack(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.stats.publish_errors += 1
            return
        exc = future.exception()
        if exc is not None:
            self._error("JetStream publish failed", exc)
            return
        self.stats.acked += 1
        if getattr(future.result(), "duplicate", False):
            self.stats.duplicates += 1

    def sweep(self, force_age: float | None = None) -> None:
        """Forget acked futures and cancel ones older than the ack timeout (publish order = age order)."""
        max_age = self.ack_timeout if force_age is None else force_age
        now = time.monotonic()
        while self._inflight:
            started, future = self._inflight[0]
            if not future.done():
                if now - started < max_age:
                    break
                future.cancel()
            self._inflight.popleft()

    async def drain(self) -> None:
        """Wait for the outstanding acks (bounded), so the stats count what the server really holds."""
        try:
            await asyncio.wait_for(self.js.publish_async_completed(), timeout=self.ack_timeout)
        except TimeoutError:
            pending = self.js.publish_async_pending()
            log.warning("%d publishes unacknowledged after %.0fs", pending, self.ack_timeout)
        self.sweep(force_age=0.0)


def _open_truth(path: str | os.PathLike[str]) -> TextIO:
    """The ground-truth file, opened for appending (a restarted feed adds to what it recorded)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.open("a", encoding="utf-8")


async def run_simulation(
    nats_url: str,
    tenant: str,
    *,
    equipment: int = 50,
    rate: float = 2000.0,
    duration: float | None = None,
    seed: int = 0,
    fault_every: float | None = 60.0,
    faults: list[Fault] | None = None,
    snapshots_per_message: int = 1,
    stop: asyncio.Event | None = None,
    ensure_stream: bool = True,
    truth_path: str | os.PathLike[str] | None = None,
    normal: NormalBehaviour | None = None,
) -> SimulationStats:
    """Publish a demo fleet's telemetry to JetStream at ``rate`` sensor values per second.

    Pacing: tick ``k`` is due at ``start + k * interval`` (monotonic clock), so sleeping late never
    accumulates drift and a stall is caught up by publishing the overdue ticks back to back. Each tick's
    timestamp is its scheduled instant, so the data stays evenly spaced whatever the scheduler did.
    Runs until ``duration`` seconds of ticks were generated or ``stop`` is set; the snapshots still held
    (partial batches, late batches mid-outage) are sent before returning. Each fault, as it starts, is
    appended to ``truth_path`` (JSON lines, flushed at once) and published on `simctl_truth_subject`.
    """
    import nats

    check_tenant_id(tenant)
    if equipment < 1:
        raise ValueError("equipment must be >= 1")
    if duration is not None and duration < 0:
        raise ValueError("duration must be >= 0")
    fleet = demo_fleet(equipment)
    interval = snapshot_interval(fleet, rate)
    schedule = FaultSchedule(fault_every, seed=seed) if fault_every else None
    sim = FeedSimulator(fleet, seed=seed, schedule=schedule, normal=normal)
    for fault in faults or []:
        sim.inject(fault)  # raises before connecting if a fault names unknown equipment
    truth_file = None if truth_path is None else _open_truth(truth_path)  # closed in the finally below
    batcher = MessageBatcher(snapshots_per_message)
    stop = stop or asyncio.Event()
    stats = SimulationStats()

    async def on_error(exc: Exception) -> None:
        log.warning("NATS: %r", exc)

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                nats_url,
                name=f"wellpulse-simulator:{tenant}",
                # A tenant's feed user may only receive PubAcks under its own inbox prefix.
                inbox_prefix=feed_inbox_prefix(tenant),
                max_reconnect_attempts=-1,  # a demo feed should ride out a NATS restart
                reconnect_time_wait=1,
                error_cb=on_error,
            ),
            timeout=CONNECT_TIMEOUT_S,
        )
    except TimeoutError as exc:
        raise ConnectionError(f"no NATS at {redact_url(nats_url)} within {CONNECT_TIMEOUT_S:.0f}s") from exc

    async def on_control(msg: Any) -> None:
        try:
            ctl = _ControlMessage.model_validate_json(msg.data)
            duration_td = None if ctl.duration_s is None else timedelta(seconds=ctl.duration_s)
            fault = Fault(ctl.kind, ctl.equipment_id, ctl.sensor, None, duration_td)
            sim.inject(fault)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError too
            log.warning("ignored bad control message on %s: %s", msg.subject, exc)
            reply: dict[str, Any] = {"ok": False, "error": str(exc)}
        else:
            log.info("injected %s on %s (%s)", fault.kind, fault.equipment_id, fault.sensor or "-")
            # {"ok": true} only (the contract of tests/test_nats_auth): the fault's ground truth is announced
            # on simctl_truth_subject, by the app's connection and by a feed user alike, and in the truth file.
            reply = {"ok": True}
        if msg.reply:
            with contextlib.suppress(Exception):
                await nc.publish(msg.reply, orjson.dumps(reply))

    truth_subject = simctl_truth_subject(tenant)

    async def record_truth() -> None:
        for record in sim.drain_truth():
            line = orjson.dumps(record)
            if truth_file is not None:
                truth_file.write(line.decode() + "\n")
                truth_file.flush()
            with contextlib.suppress(Exception):  # an announcement lost must not stop the feed
                await nc.publish(truth_subject, line)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        js = nc.jetstream(publish_async_max_pending=MAX_OUTSTANDING_PUBLISHES)
        # A feed user (``wellpulse nats feed-credentials``) may not call the JetStream API: the app made the stream.
        if ensure_stream and not (url_user(nats_url) or "").startswith(FEED_USER_PREFIX):
            await ensure_telemetry_stream(js)
        await nc.subscribe(simctl_subject(tenant), cb=on_control)
        publisher = _Publisher(nc, js, tenant, stats, stop)
        wall0 = _truncate_ms(datetime.now(UTC))
        t0 = loop.time()
        k = 0
        while not stop.is_set():
            offset = k * interval
            if duration is not None and offset >= duration:
                break
            delay = t0 + offset - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    break
            elif k % 32 == 0:
                await asyncio.sleep(0)  # catching up: still let acks and control messages in
            # Rounded to whole ms: interval >= 1 ms keeps consecutive stamps distinct.
            ts = wall0 + timedelta(milliseconds=round(offset * 1000))
            for message in sim.next_messages(ts):
                for out in batcher.add(message):
                    await publisher.publish(out)
            if len(sim.truth) > sim._truth_sent:
                await record_truth()
            if k % 64 == 0:
                publisher.sweep()
            k += 1
        for message in [*sim.flush(), *batcher.flush()]:
            await publisher.publish(message)
        await publisher.drain()
    finally:
        stats.elapsed_s = round(loop.time() - t0, 3)
        stats.faults_injected = sim.faults_injected
        with contextlib.suppress(Exception):
            await record_truth()
        if truth_file is not None:
            truth_file.close()
        try:
            await nc.drain()
        except Exception:  # e.g. still reconnecting: drain refuses, but the client must not leak
            with contextlib.suppress(Exception):
                await nc.close()
    return stats


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

FAULT_SPEC_HELP = "KIND:EQUIPMENT[:SENSOR][@START_S[+DURATION_S]]"


def parse_fault_spec(text: str) -> Fault:
    """Parse ``--fault`` syntax, e.g. ``spike:PJ-0001:tubing_psi@30`` or ``late_batch:CMP-0002@10+45``.

    START_S is seconds after the feed's first tick; without it the fault starts at once.
    """
    head, at, timing = text.partition("@")
    parts = head.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"bad fault {text!r}: expected {FAULT_SPEC_HELP}")
    try:
        kind = FaultKind(parts[0])
    except ValueError:
        raise ValueError(f"bad fault kind {parts[0]!r}: expected one of {', '.join(FaultKind)}") from None
    start: timedelta | None = None
    duration: timedelta | None = None
    if at:
        start_text, plus, duration_text = timing.partition("+")
        try:
            start_s = float(start_text)
            duration_s = float(duration_text) if plus else None
        except ValueError:
            raise ValueError(f"bad fault timing {timing!r}: expected START_S[+DURATION_S]") from None
        if not math.isfinite(start_s) or start_s < 0:
            raise ValueError(f"bad fault start {start_text!r}: must be >= 0 seconds")
        if duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0):
            raise ValueError(f"bad fault duration {duration_text!r}: must be > 0 seconds")
        start = timedelta(seconds=start_s)
        duration = None if duration_s is None else timedelta(seconds=duration_s)
    return Fault(kind, parts[1], parts[2] if len(parts) == 3 else None, start, duration)


def _arg_type(convert: Any, what: str) -> Any:
    """Wrap a validator so argparse reports its message (and exits 2) instead of a generic one."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = what
    return parse


def _positive(kind: type[int] | type[float]) -> Any:
    def convert(text: str) -> int | float:
        value = kind(text)
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"must be > 0, got {text!r}")
        return value

    return convert


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``wellpulse simulate`` (kept here so the CLI module only wires sub-commands)."""
    parser.add_argument(
        "--nats",
        default=None,
        metavar="URL",
        help=f"NATS URL (default: $WELLPULSE_NATS_URL or {DEFAULT_NATS_URL})",
    )
    parser.add_argument(
        "--tenant", required=True, type=_arg_type(check_tenant_id, "tenant"), help="tenant id"
    )
    parser.add_argument("--equipment", type=_arg_type(_positive(int), "count"), default=50, help="fleet size")
    parser.add_argument(
        "--rate",
        type=_arg_type(_positive(float), "rate"),
        default=2000.0,
        help="sensor values per second, total",
    )
    parser.add_argument(
        "--duration",
        type=_arg_type(_positive(float), "seconds"),
        default=None,
        help="seconds (default: forever)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same feed)")
    parser.add_argument(
        "--fault-every",
        type=_arg_type(_non_negative_float, "seconds"),
        default=60.0,
        help="inject a random fault every N seconds (0 disables)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        type=_arg_type(parse_fault_spec, "fault"),
        metavar=FAULT_SPEC_HELP,
        help=f"inject a fault (repeatable); kinds: {', '.join(FaultKind)}",
    )
    parser.add_argument(
        "--truth",
        default=None,
        metavar="PATH",
        help="append every injected fault (kind, equipment, sensor, start, end) to PATH as JSON lines",
    )
    parser.add_argument(
        "--no-normal-operations",
        dest="normal_operations",
        action="store_false",
        help="no set-point changes, pump-off cycles or late data (only cycles, walk and noise)",
    )
    parser.add_argument(
        "--snapshots-per-message",
        type=_arg_type(_positive(int), "count"),
        default=1,
        help="snapshots of one equipment per message",
    )


def _check_args(args: argparse.Namespace) -> list[Fault]:
    """Validate again what argparse may not have (a Namespace built in code skips the ``type=`` hooks)."""
    check_tenant_id(args.tenant)
    if args.equipment < 1:
        raise ValueError("--equipment must be >= 1")
    snapshot_interval(demo_fleet(1), args.rate)  # validates the rate
    MessageBatcher(args.snapshots_per_message)
    faults = [f if isinstance(f, Fault) else parse_fault_spec(f) for f in (args.faults or [])]
    probe = FeedSimulator(demo_fleet(args.equipment))
    for fault in faults:
        probe.inject(fault)  # unknown equipment or sensor: a usage error, reported before connecting
    return faults


def simulate_command(args: argparse.Namespace) -> int:
    """Run the simulator until ``--duration`` or SIGINT/SIGTERM; print a one-line JSON summary.

    Exit codes: 0 done, 1 NATS unreachable or failed, 2 bad arguments.
    """
    try:
        faults = _check_args(args)
    except (InvalidIdentifier, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    nats_url = args.nats or os.environ.get("WELLPULSE_NATS_URL") or DEFAULT_NATS_URL

    async def main() -> SimulationStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Both: SIGINT alone left processes running here when a supervisor sent SIGTERM.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        try:
            return await run_simulation(
                nats_url,
                args.tenant,
                equipment=args.equipment,
                rate=args.rate,
                duration=args.duration,
                seed=args.seed,
                fault_every=args.fault_every or None,
                faults=faults,
                snapshots_per_message=args.snapshots_per_message,
                stop=stop,
                truth_path=getattr(args, "truth", None),
                normal=None if getattr(args, "normal_operations", True) else NormalBehaviour.none(),
            )
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        stats = asyncio.run(main())
    except (OSError, ConnectionError, TimeoutError) as exc:
        print(f"error: NATS at {redact_url(nats_url)}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        import nats.errors

        if isinstance(exc, nats.errors.Error):
            print(f"error: NATS at {redact_url(nats_url)}: {exc!r}", file=sys.stderr)
            return 1
        raise
    print(json.dumps({"tenant": args.tenant, **asdict(stats)}), flush=True)
    return 0
