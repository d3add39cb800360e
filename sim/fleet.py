"""The simulated fleet: which equipment there is, how often it reports, and the timestamps it sends."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schema.equipment import ID_PREFIX_BY_TYPE, SENSORS_BY_TYPE, EquipmentType, SensorSpec
from schema.ids import check_equipment_id

__all__ = [
    "FLEET_MIX",
    "MIN_SNAPSHOT_INTERVAL_S",
    "EquipmentSpec",
    "demo_fleet",
    "format_ts",
    "snapshot_interval",
    "truncate_ms",
]

# Share of each type in a demo fleet (weights out of 20): a field is mostly pump jacks, with the
# compression, separation, storage and metering that serve them.
FLEET_MIX: tuple[tuple[EquipmentType, int], ...] = (
    (EquipmentType.PUMP_JACK, 8),
    (EquipmentType.COMPRESSOR, 4),
    (EquipmentType.SEPARATOR, 3),
    (EquipmentType.TANK_BATTERY, 3),
    (EquipmentType.METER, 2),
)
# The DB key and the dedup id both carry millisecond timestamps; two snapshots of one equipment in the
# same millisecond would collapse into one, so the pacing never goes below this.
MIN_SNAPSHOT_INTERVAL_S = 0.001


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


def truncate_ms(ts: datetime) -> datetime:
    """``ts`` in UTC, cut to whole milliseconds (the resolution of the DB key and the dedup id)."""
    return ts.astimezone(UTC).replace(microsecond=ts.microsecond // 1000 * 1000)

