"""Emissions of a well's day from its production: emission factors as data, and the calculation per source.

Pure: no IO. The store reads production records, the day's emission activity (flared, vented and fuel gas) and
the well's emitting equipment, and hands them here with the tenant's factors; what comes back are
`Emission` values (kg of one gas from one source on one day) that carry the factor versions they used, and
the days that could not be computed (`Gap`: no production record; never taken as zero).

Sources and their methods (each factor's number and citation is in `DEFAULT_FACTORS`):

- flaring: flared gas (Mcf; reported, else from a flare meter's readings, `flare_from_telemetry`) burned at
  the flare's destruction efficiency: CO2 of combustion (40 CFR 98 Subpart C Table C-1 factor × heat
  content) plus the CO2 already in the gas, CH4 and VOC of the gas that slips through unburned, N2O of
  combustion (Table C-2), as 40 CFR 98.233(n) does;
- venting: vented gas (Mcf) × its composition (CH4 and CO2 mole fractions × density; VOC as a mass ratio to
  CH4);
- combustion: fuel gas of gas-fired engines and compressors (Mcf; or the engine's fuel rate × the day's
  runtime when the fuel is not metered) × heat content × per-MMBtu factors;
- tank flashing: oil throughput (bbl) × per-barrel factors;
- pneumatic devices and fugitive components: count × hours × whole-gas factor (scf per hour, 40 CFR 98
  Subpart W Table W-1A) × composition, as 40 CFR 98.233(a) and (r) do. A day with production counts 24 hours:
  the devices and components are under pressure whether or not the pump ran.

CO2e uses the 100-year GWPs of IPCC AR5 (CH4 28, N2O 265), the values of 40 CFR 98 Subpart A Table A-1 as
amended in 2024 (89 FR 31802) for reporting years from 2025; earlier GHGRP years used AR4 (25, 298). A report
of an earlier year that must match a submitted GHGRP report can be re-done with `co2e(..., gwp=GWP_AR4)`.
VOC has no GWP and is not part of CO2e.

Examples
--------
>>> factors = FactorSet(DEFAULT_FACTORS)
>>> day = DayActivity(well_id="W-1", day=date(2026, 1, 5), oil_bbl=10.0, gas_mcf=50.0, vented_mcf=1.0)
>>> [(e.source, e.gas, round(e.kg, 3)) for e in calculate_day(day, WellEquipment(), factors)
...  if e.source == "venting"]
[('venting', 'CH4', 15.13), ('venting', 'CO2', 1.052), ('venting', 'VOC', 4.206)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

__all__ = [
    "CH4_KG_PER_MCF", "CO2_KG_PER_MCF", "COMPONENT_TYPES", "DEFAULT_FACTORS", "FACTOR_GASES", "FACTOR_UNITS",
    "GASES", "GWP_AR4", "GWP_AR5", "GWP_NAME", "PNEUMATIC_TYPES", "SOURCES", "DayActivity", "Emission",
    "EmissionFactor", "FactorSet", "FactorUse", "Gap", "WellEquipment", "boe", "calculate_day", "co2e",
    "flare_from_telemetry", "missing_activity",
]

GASES = ("CO2", "CH4", "N2O", "VOC")
SOURCES = ("flaring", "venting", "combustion", "tank_flashing", "pneumatic_devices", "fugitive_components")

# 100-year global warming potentials. AR5 is what 40 CFR 98 Table A-1 says from reporting year 2025 on
# (89 FR 31802, 2024); AR4 is the table before that amendment.
GWP_AR5: Mapping[str, float] = {"CO2": 1.0, "CH4": 28.0, "N2O": 265.0}
GWP_AR4: Mapping[str, float] = {"CO2": 1.0, "CH4": 25.0, "N2O": 298.0}
GWP_NAME = "IPCC AR5 100-year (40 CFR 98 Table A-1 as amended 2024): CH4 28, N2O 265"

# Densities at standard conditions (60 °F, 14.7 psia), 40 CFR 98.233(v) / 98.233(u): 0.0192 kg CH4 and
# 0.0526 kg CO2 per standard cubic foot. Physical constants, not overridable factors.
CH4_KG_PER_MCF = 19.2
CO2_KG_PER_MCF = 52.6
HOURS_PER_DAY = 24.0

_ALWAYS = date(1990, 1, 1)  # the defaults are valid from the GHG inventories' base year on
_DEFAULT_VERSION = "default:2026.1"


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    """One number of the calculation, with its unit, its source and the days it is valid for.

    ``key`` names what it is (``combustion.CH4``, ``gas.ch4_mole_fraction``); ``gas`` is the gas it gives (None
    for a parameter such as a heat content); ``valid_to`` is inclusive (None: open-ended); ``version`` is what an
    emission record keeps (``default:2026.1``, or ``tenant:3`` for a tenant's third version of the key).

    >>> f = EmissionFactor("flaring.destruction_efficiency", "flaring", None, 0.98, "fraction", "40 CFR 98.233(n)")
    >>> f.valid_on(date(2026, 1, 1)), f.version
    (True, 'default:2026.1')
    """

    key: str
    source: str
    gas: str | None
    value: float
    unit: str
    citation: str
    valid_from: date = _ALWAYS
    valid_to: date | None = None
    version: str = _DEFAULT_VERSION

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


def _f(key: str, gas: str | None, value: float, unit: str, citation: str) -> EmissionFactor:
    return EmissionFactor(key=key, source=key.split(".")[0], gas=gas, value=value, unit=unit, citation=citation)


# The defaults, each with the source of its number. A tenant overrides any of them with its own measured
# values (a gas analysis, a flare test, an E&P TANK run) through /v1/emissions/factors.
DEFAULT_FACTORS: tuple[EmissionFactor, ...] = (
    # Produced gas: composition and heat content.
    _f("gas.ch4_mole_fraction", "CH4", 0.788, "mol/mol",
       "GRI/EPA (1996) Methane Emissions from the Natural Gas Industry, Vol. 6, production-segment gas: 78.8 mol%"
       " CH4; replace with the well's gas analysis"),
    _f("gas.co2_mole_fraction", "CO2", 0.02, "mol/mol",
       "assumed 2 mol% CO2 (typical produced gas, GRI/EPA 1996 Vol. 6 range); replace with the well's gas analysis"),
    _f("gas.voc_per_ch4", "VOC", 0.278, "kg/kg",
       "EPA (2011) NSPS OOOO TSD, Brown memo 'Composition of Natural Gas for use in the Oil and Natural Gas"
       " Sector Rulemaking': production segment VOC/CH4 mass ratio 0.278"),
    _f("gas.hhv", None, 1.026, "MMBtu/Mcf",
       "40 CFR 98 Subpart C Table C-1: natural gas default high heat value 1.026E-03 MMBtu/scf"),
    # Flaring.
    _f("flaring.destruction_efficiency", None, 0.98, "fraction",
       "40 CFR 98.233(n): default flare combustion efficiency 98 %"),
    _f("flaring.CO2", "CO2", 53.06, "kg/MMBtu", "40 CFR 98 Subpart C Table C-1: natural gas 53.06 kg CO2/MMBtu"),
    _f("flaring.N2O", "N2O", 1.0e-4, "kg/MMBtu", "40 CFR 98 Subpart C Table C-2: natural gas 1.0E-04 kg N2O/MMBtu"),
    # Combustion in gas-fired engines and compressor drivers.
    _f("combustion.CO2", "CO2", 53.06, "kg/MMBtu", "40 CFR 98 Subpart C Table C-1: natural gas 53.06 kg CO2/MMBtu"),
    _f("combustion.CH4", "CH4", 0.567, "kg/MMBtu",
       "EPA AP-42 Table 3.2-2 (4-stroke lean-burn engines): 1.25 lb CH4/MMBtu = 0.567 kg/MMBtu"),
    _f("combustion.N2O", "N2O", 1.0e-4, "kg/MMBtu",
       "40 CFR 98 Subpart C Table C-2: natural gas 1.0E-04 kg N2O/MMBtu"),
    _f("combustion.VOC", "VOC", 0.0535, "kg/MMBtu",
       "EPA AP-42 Table 3.2-2 (4-stroke lean-burn engines): 0.118 lb VOC/MMBtu = 0.0535 kg/MMBtu"),
    # Tank flashing (uncontrolled tanks).
    _f("tank_flashing.CH4", "CH4", 0.2304, "kg/bbl",
       "engineering default, not a regulatory factor: 40 scf flash gas/bbl at a 40 psig separator (EPA Natural"
       " Gas STAR Lessons Learned, Installing Vapor Recovery Units on Storage Tanks) x 30 mol% CH4 x 0.0192"
       " kg/scf; replace with an E&P TANK or ProMax result"),
    _f("tank_flashing.VOC", "VOC", 1.195, "kg/bbl",
       "engineering default, not a regulatory factor: 40 scf flash gas/bbl x 50 mol% C3+ of mean molar mass 50"
       " g/mol (0.0598 kg/scf); replace with an E&P TANK or ProMax result"),
    # Pneumatic devices: whole gas per device-hour.
    _f("pneumatic_devices.high_bleed", None, 37.3, "scf/h",
       "40 CFR 98 Subpart W Table W-1A: continuous high-bleed pneumatic device 37.3 scf/hour/device"),
    _f("pneumatic_devices.intermittent", None, 13.5, "scf/h",
       "40 CFR 98 Subpart W Table W-1A: intermittent-bleed pneumatic device 13.5 scf/hour/device"),
    _f("pneumatic_devices.low_bleed", None, 1.39, "scf/h",
       "40 CFR 98 Subpart W Table W-1A: continuous low-bleed pneumatic device 1.39 scf/hour/device"),
    # Fugitive components in gas service: whole gas per component-hour.
    _f("fugitive_components.valve", None, 0.121, "scf/h",
       "40 CFR 98 Subpart W Table W-1A, onshore production, gas service, Western U.S.: valve 0.121 scf/hour"),
    _f("fugitive_components.connector", None, 0.017, "scf/h",
       "40 CFR 98 Subpart W Table W-1A, onshore production, gas service, Western U.S.: connector 0.017 scf/hour"),
    _f("fugitive_components.open_ended_line", None, 0.031, "scf/h",
       "40 CFR 98 Subpart W Table W-1A, onshore production, gas service, Western U.S.: open-ended line 0.031"
       " scf/hour"),
    _f("fugitive_components.pressure_relief_valve", None, 0.193, "scf/h",
       "40 CFR 98 Subpart W Table W-1A, onshore production, gas service, Western U.S.: pressure relief valve"
       " 0.193 scf/hour"),
)
# The unit each key is computed in: a tenant's factor in another unit is refused, not converted.
FACTOR_UNITS: Mapping[str, str] = {f.key: f.unit for f in DEFAULT_FACTORS}
FACTOR_GASES: Mapping[str, str | None] = {f.key: f.gas for f in DEFAULT_FACTORS}
PNEUMATIC_TYPES = ("high_bleed", "intermittent", "low_bleed")
COMPONENT_TYPES = ("valve", "connector", "open_ended_line", "pressure_relief_valve")


class FactorSet:
    """The factors a tenant calculates with: its own versions over the defaults.

    On a day, a key's factor is the tenant's highest version valid that day, else the default.

    >>> mine = EmissionFactor("gas.ch4_mole_fraction", "gas", "CH4", 0.9, "mol/mol", "lab analysis 2026-02",
    ...                       valid_from=date(2026, 2, 1), version="tenant:1")
    >>> fs = FactorSet(DEFAULT_FACTORS, [mine])
    >>> fs.at("gas.ch4_mole_fraction", date(2026, 1, 31)).value, fs.at("gas.ch4_mole_fraction", date(2026, 2, 1)).value
    (0.788, 0.9)
    """

    def __init__(self, defaults: Iterable[EmissionFactor], overrides: Iterable[EmissionFactor] = ()) -> None:
        self.defaults = {f.key: f for f in defaults}
        self.overrides: dict[str, list[EmissionFactor]] = {}
        for f in overrides:
            self.overrides.setdefault(f.key, []).append(f)
        for versions in self.overrides.values():
            versions.sort(key=lambda f: _version_number(f.version), reverse=True)

    def at(self, key: str, day: date) -> EmissionFactor:
        for f in self.overrides.get(key, ()):
            if f.valid_on(day):
                return f
        default = self.defaults[key]
        if not default.valid_on(day):
            raise KeyError(f"no factor {key} valid on {day}")
        return default


def _version_number(version: str) -> int:
    tail = version.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass(frozen=True, slots=True)
class FactorUse:
    """What an emission was computed with: a factor's key, version and value."""

    key: str
    version: str
    value: float

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "version": self.version, "value": self.value}


@dataclass(frozen=True, slots=True)
class DayActivity:
    """A well's day: the production record's volumes, and the day's emission activity when reported.

    ``flared_mcf``, ``vented_mcf`` and ``fuel_gas_mcf`` are None when not reported (that source is then not
    computed for the day, and the day is listed as missing it), 0 when reported as none.
    """

    well_id: str
    day: date
    oil_bbl: float
    gas_mcf: float
    runtime_hours: float | None = None
    flared_mcf: float | None = None
    vented_mcf: float | None = None
    fuel_gas_mcf: float | None = None
    flare_telemetry_hours: float | None = None  # set when flared_mcf came from a flare meter's readings


@dataclass(frozen=True, slots=True)
class WellEquipment:
    """A well's emitting equipment: pneumatic devices and fugitive components by type, and its engine's fuel rate
    (Mcf per running hour) for days whose fuel gas is not metered."""

    pneumatic_devices: Mapping[str, int] = field(default_factory=dict)
    components: Mapping[str, int] = field(default_factory=dict)
    engine_fuel_mcf_per_hour: float | None = None


@dataclass(frozen=True, slots=True)
class Emission:
    """kg of one gas from one source of one well on one day, its CO2e (0 for VOC) and what it was computed from."""

    well_id: str
    day: date
    source: str
    gas: str
    kg: float
    co2e_kg: float
    factors: tuple[FactorUse, ...]
    inputs: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Gap:
    """A well's day (or one source of it) that could not be computed, and why."""

    well_id: str
    day: date
    reason: str
    source: str | None = None


def co2e(gas: str, kg: float, gwp: Mapping[str, float] = GWP_AR5) -> float:
    """kg CO2e of ``kg`` of ``gas`` (0 for a gas without a GWP, such as VOC).

    >>> co2e("CH4", 2.0), co2e("N2O", 1.0), co2e("VOC", 5.0), co2e("CH4", 2.0, GWP_AR4)
    (56.0, 265.0, 0.0, 50.0)
    """
    return kg * gwp.get(gas, 0.0)


def boe(oil_bbl: float, gas_mcf: float) -> float:
    """Barrels of oil equivalent: 6 Mcf of gas count as one barrel (the energy-equivalence convention).

    >>> boe(10.0, 60.0)
    20.0
    """
    return oil_bbl + gas_mcf / 6.0


class _Day:
    """The factors of one day, remembering which were used for each emission."""

    def __init__(self, factors: FactorSet, activity: DayActivity) -> None:
        self.factors = factors
        self.activity = activity
        self.out: list[Emission] = []

    def use(self, key: str, used: list[FactorUse]) -> float:
        f = self.factors.at(key, self.activity.day)
        used.append(FactorUse(f.key, f.version, f.value))
        return f.value

    def emit(self, source: str, gas: str, kg: float, used: Sequence[FactorUse], inputs: Mapping[str, float]) -> None:
        a = self.activity
        self.out.append(Emission(a.well_id, a.day, source, gas, kg, co2e(gas, kg), tuple(used), dict(inputs)))

    def whole_gas(self, source: str, mcf: float, base: Sequence[FactorUse], inputs: Mapping[str, float]) -> None:
        """CH4, CO2 and VOC of ``mcf`` of produced gas released unburned."""
        ch4_used = [*base]
        ch4 = mcf * self.use("gas.ch4_mole_fraction", ch4_used) * CH4_KG_PER_MCF
        co2_used = [*base]
        co2 = mcf * self.use("gas.co2_mole_fraction", co2_used) * CO2_KG_PER_MCF
        voc_used = [*ch4_used]
        voc = ch4 * self.use("gas.voc_per_ch4", voc_used)
        self.emit(source, "CH4", ch4, ch4_used, inputs)
        self.emit(source, "CO2", co2, co2_used, inputs)
        self.emit(source, "VOC", voc, voc_used, inputs)


def calculate_day(activity: DayActivity, equipment: WellEquipment, factors: FactorSet) -> list[Emission]:
    """Every source's emissions of one well's day with a production record, gas by gas.

    A source without its activity (no flared volume reported, no equipment counted, no oil) gives nothing;
    `missing_activity` says which reported volumes were absent.

    >>> a = DayActivity("W-1", date(2026, 3, 1), oil_bbl=0.0, gas_mcf=0.0, fuel_gas_mcf=10.0)
    >>> {e.gas: round(e.kg, 4) for e in calculate_day(a, WellEquipment(), FactorSet(DEFAULT_FACTORS))}
    {'CO2': 544.3956, 'CH4': 5.8174, 'N2O': 0.001, 'VOC': 0.5489}
    """
    d = _Day(factors, activity)
    a = activity
    if a.flared_mcf:
        _flaring(d, a.flared_mcf, a.flare_telemetry_hours)
    if a.vented_mcf:
        d.whole_gas("venting", a.vented_mcf, (), {"vented_mcf": a.vented_mcf})
    fuel, fuel_inputs = _fuel(a, equipment)
    if fuel:
        base: list[FactorUse] = []
        mmbtu = fuel * d.use("gas.hhv", base)
        for gas in ("CO2", "CH4", "N2O", "VOC"):
            used = [*base]
            d.emit("combustion", gas, mmbtu * d.use(f"combustion.{gas}", used), used, fuel_inputs)
    if a.oil_bbl > 0:
        for gas in ("CH4", "VOC"):
            used = []
            d.emit("tank_flashing", gas, a.oil_bbl * d.use(f"tank_flashing.{gas}", used), used,
                   {"oil_bbl": a.oil_bbl})
    _counted(d, "pneumatic_devices", PNEUMATIC_TYPES, equipment.pneumatic_devices)
    _counted(d, "fugitive_components", COMPONENT_TYPES, equipment.components)
    return d.out


def flare_from_telemetry(mean_mcf_per_day: float, hours_with_readings: int) -> float:
    """Mcf flared on a day from a flare meter's readings: the mean rate over the hours it reported, for those
    hours only (an hour without readings is not assumed to have flared).

    >>> flare_from_telemetry(48.0, 12)
    24.0
    """
    return mean_mcf_per_day * min(hours_with_readings, 24) / HOURS_PER_DAY


def missing_activity(activity: DayActivity) -> list[str]:
    """The day's emission volumes that were not reported (their sources are not computed).

    >>> missing_activity(DayActivity("W-1", date(2026, 3, 1), 1.0, 1.0, flared_mcf=0.0))
    ['vented_mcf', 'fuel_gas_mcf']
    """
    return [name for name in ("flared_mcf", "vented_mcf", "fuel_gas_mcf") if getattr(activity, name) is None]


def _flaring(d: _Day, flared: float, telemetry_hours: float | None) -> None:
    inputs = {"flared_mcf": flared} if telemetry_hours is None else {
        "flared_mcf": flared, "flare_telemetry_hours": telemetry_hours}
    base: list[FactorUse] = []
    de = d.use("flaring.destruction_efficiency", base)
    burned_mmbtu_used = [*base]
    burned_mmbtu = flared * de * d.use("gas.hhv", burned_mmbtu_used)
    # CO2: of the hydrocarbons burned, plus the CO2 the gas carried through the flame.
    co2_used = [*burned_mmbtu_used]
    co2 = burned_mmbtu * d.use("flaring.CO2", co2_used) + flared * d.use("gas.co2_mole_fraction", co2_used) \
        * CO2_KG_PER_MCF
    # CH4 and VOC: the gas the flame did not destroy.
    ch4_used = [*base]
    ch4 = flared * (1.0 - de) * d.use("gas.ch4_mole_fraction", ch4_used) * CH4_KG_PER_MCF
    voc_used = [*ch4_used]
    voc = ch4 * d.use("gas.voc_per_ch4", voc_used)
    n2o_used = [*burned_mmbtu_used]
    n2o = burned_mmbtu * d.use("flaring.N2O", n2o_used)
    for gas, kg, used in (("CO2", co2, co2_used), ("CH4", ch4, ch4_used), ("N2O", n2o, n2o_used),
                          ("VOC", voc, voc_used)):
        d.emit("flaring", gas, kg, used, inputs)


def _fuel(a: DayActivity, equipment: WellEquipment) -> tuple[float, dict[str, float]]:
    """Metered fuel gas, else the engine's fuel rate × the day's runtime (Mcf), and what it came from."""
    if a.fuel_gas_mcf is not None:
        return a.fuel_gas_mcf, {"fuel_gas_mcf": a.fuel_gas_mcf}
    if equipment.engine_fuel_mcf_per_hour is not None and a.runtime_hours is not None:
        return equipment.engine_fuel_mcf_per_hour * a.runtime_hours, {
            "engine_fuel_mcf_per_hour": equipment.engine_fuel_mcf_per_hour, "runtime_hours": a.runtime_hours}
    return 0.0, {}


def _counted(d: _Day, source: str, types: Sequence[str], counts: Mapping[str, int]) -> None:
    """Devices or components × 24 hours × whole-gas factor (scf/h) × composition."""
    used: list[FactorUse] = []
    scf = 0.0
    inputs: dict[str, float] = {"hours": HOURS_PER_DAY}
    for kind in types:
        n = counts.get(kind, 0)
        if n > 0:
            scf += n * HOURS_PER_DAY * d.use(f"{source}.{kind}", used)
            inputs[kind] = float(n)
    if scf > 0:
        d.whole_gas(source, scf / 1000.0, used, inputs)
