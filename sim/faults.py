"""What goes wrong in the simulated field, and when: fault kinds, a fault, the random schedule, the ground truth.

Pure (no IO): a `Fault` is what someone asks for (``--fault``, ``simctl``, a `FaultSchedule`); `ActiveFault` is
what `sim.feed.FeedSimulator` makes of it once it knows the start, end and sensor; `truth_record` is what it
records of it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from schema.ids import check_equipment_id, check_sensor
from sim.fleet import EquipmentSpec, format_ts

__all__ = [
    "DEFAULT_FAULT_DURATION",
    "FAULT_SPEC_HELP",
    "PRECURSOR_FAULTS",
    "PRECURSOR_POWER",
    "SPIKE_DEFAULT_READINGS",
    "VALUE_FAULTS",
    "ActiveFault",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "fault_fits",
    "parse_fault_spec",
    "truth_record",
]

SPIKE_DEFAULT_READINGS = 3


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
class ActiveFault:
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
