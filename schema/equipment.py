"""Equipment types and the sensors each type reports (names, units, normal ranges).

The ranges are what the demo feed and the default threshold rules use; a tenant's own
registry overrides them.
"""

from dataclasses import dataclass
from enum import StrEnum


class EquipmentType(StrEnum):
    PUMP_JACK = "pump_jack"
    COMPRESSOR = "compressor"
    SEPARATOR = "separator"
    TANK_BATTERY = "tank_battery"
    METER = "meter"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    name: str
    unit: str
    low: float  # bottom of the normal operating range
    high: float  # top of the normal operating range


SENSORS_BY_TYPE: dict[EquipmentType, tuple[SensorSpec, ...]] = {
    EquipmentType.PUMP_JACK: (
        SensorSpec("motor_current_a", "A", 30.0, 55.0),
        SensorSpec("polished_rod_load_lbf", "lbf", 8_000.0, 22_000.0),
        SensorSpec("strokes_per_minute", "spm", 6.0, 12.0),
        SensorSpec("tubing_psi", "psi", 600.0, 1_000.0),
        SensorSpec("casing_psi", "psi", 150.0, 400.0),
    ),
    EquipmentType.COMPRESSOR: (
        SensorSpec("vibration_mm_s", "mm/s", 1.0, 7.0),
        SensorSpec("discharge_temp_f", "degF", 180.0, 260.0),
        SensorSpec("discharge_psi", "psi", 800.0, 1_200.0),
    ),
    EquipmentType.SEPARATOR: (
        SensorSpec("level_in", "in", 12.0, 36.0),
        SensorSpec("pressure_psi", "psi", 80.0, 160.0),
    ),
    EquipmentType.TANK_BATTERY: (
        SensorSpec("level_ft", "ft", 2.0, 18.0),
        SensorSpec("pressure_psi", "psi", 0.2, 1.2),
    ),
    EquipmentType.METER: (SensorSpec("flow_mcfd", "Mcf/d", 200.0, 900.0),),
    EquipmentType.OTHER: (),
}

# The sensor an operator (or the unit's controller) sets on each type: a pump jack's speed, a compressor's
# discharge pressure. The others follow it through the machine's physics, so a step of it inside its operating
# range is an operating change, not a fault (models.EquipmentState re-baselines on it).
SETPOINT_SENSOR: dict[EquipmentType, str] = {
    EquipmentType.PUMP_JACK: "strokes_per_minute",
    EquipmentType.COMPRESSOR: "discharge_psi",
}

ID_PREFIX_BY_TYPE: dict[EquipmentType, str] = {
    EquipmentType.PUMP_JACK: "PJ",
    EquipmentType.COMPRESSOR: "CMP",
    EquipmentType.SEPARATOR: "SEP",
    EquipmentType.TANK_BATTERY: "TNK",
    EquipmentType.METER: "MTR",
    EquipmentType.OTHER: "EQ",
}
