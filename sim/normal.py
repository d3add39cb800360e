"""Healthy equipment: the physics of each type's sensors and the normal things that are not faults.

`NormalBehaviour` says how often an operator changes a set point, a pump-off controller stops a pump jack, or
a gateway sends late; `SimulatedUnit` is one equipment's state, turning a timestamp into its true values.
Pure and deterministic for a seed.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from schema.equipment import SETPOINT_SENSOR, EquipmentType, SensorSpec
from sim.fleet import EquipmentSpec

__all__ = ["NORMAL_EVENTS_KEPT", "NormalBehaviour", "SimulatedUnit"]

NORMAL_EVENTS_KEPT = 1_000  # per equipment (`FeedSimulator.normal_events`)
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


def _decimals(spec: SensorSpec) -> int:
    """Resolution like a real transmitter's: about a thousandth of the span (tank psi 0.001, rod load 1)."""
    span = spec.high - spec.low
    return max(0, 3 - math.floor(math.log10(span))) if span > 0 else 3


class SimulatedUnit:
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

