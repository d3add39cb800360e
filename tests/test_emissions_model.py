"""The emissions domain (models/emissions.py) on hand-computed examples: one per source type, the numbers in the
test and their derivation beside them, with the default factors (DEFAULT_FACTORS):

    CH4 mole fraction 0.788, CO2 mole fraction 0.02, VOC/CH4 0.278 kg/kg, HHV 1.026 MMBtu/Mcf,
    CH4 19.2 kg/Mcf, CO2 52.6 kg/Mcf, flare destruction efficiency 0.98,
    CO2 53.06 kg/MMBtu, N2O 1.0e-4 kg/MMBtu (flares and engines), engine CH4 0.567, VOC 0.0535 kg/MMBtu,
    tank flashing CH4 0.2304 and VOC 1.195 kg/bbl, pneumatic intermittent 13.5 and low-bleed 1.39 scf/h,
    valve 0.121 and connector 0.017 scf/h. GWP (AR5): CH4 28, N2O 265.
"""

from datetime import date

import pytest

from models.emissions import (
    DEFAULT_FACTORS,
    FACTOR_UNITS,
    DayActivity,
    EmissionFactor,
    FactorSet,
    WellEquipment,
    boe,
    calculate_day,
    co2e,
)

pytestmark = pytest.mark.fast
DAY = date(2026, 3, 2)
FACTORS = FactorSet(DEFAULT_FACTORS)


def by_gas(activity: DayActivity, equipment: WellEquipment | None = None, source: str | None = None,
           factors: FactorSet = FACTORS) -> dict[str, float]:
    out = calculate_day(activity, equipment or WellEquipment(), factors)
    return {e.gas: e.kg for e in out if source is None or e.source == source}


def day(**volumes: float) -> DayActivity:
    return DayActivity("W-1", DAY, oil_bbl=volumes.pop("oil_bbl", 0.0), gas_mcf=0.0, **volumes)  # type: ignore[arg-type]


def test_flaring() -> None:
    got = by_gas(day(flared_mcf=10.0), source="flaring")
    # burned: 10 Mcf x 0.98 x 1.026 MMBtu/Mcf = 10.0548 MMBtu
    # CO2: 10.0548 x 53.06 + 10 x 0.02 x 52.6 (the gas's own CO2) = 533.507688 + 10.52 = 544.027688 kg
    assert got["CO2"] == pytest.approx(544.027688)
    # CH4 slip: 10 x (1 - 0.98) x 0.788 x 19.2 = 3.02592 kg
    assert got["CH4"] == pytest.approx(3.02592)
    # N2O: 10.0548 x 1.0e-4 = 0.00100548 kg
    assert got["N2O"] == pytest.approx(0.00100548)
    # VOC slip: 3.02592 x 0.278 = 0.84120576 kg
    assert got["VOC"] == pytest.approx(0.84120576)
    # CO2e: 544.027688 + 28 x 3.02592 + 265 x 0.00100548 = 629.0199002
    total = sum(e.co2e_kg for e in calculate_day(day(flared_mcf=10.0), WellEquipment(), FACTORS))
    assert total == pytest.approx(629.0199002)


def test_venting() -> None:
    got = by_gas(day(vented_mcf=2.0), source="venting")
    # CH4: 2 x 0.788 x 19.2 = 30.2592; CO2: 2 x 0.02 x 52.6 = 2.104; VOC: 30.2592 x 0.278 = 8.4120576
    assert got == pytest.approx({"CH4": 30.2592, "CO2": 2.104, "VOC": 8.4120576})


def test_combustion_metered_and_from_runtime() -> None:
    # 10 Mcf x 1.026 = 10.26 MMBtu; CO2 x 53.06 = 544.3956; CH4 x 0.567 = 5.81742; N2O x 1e-4 = 0.001026;
    # VOC x 0.0535 = 0.54891
    expected = {"CO2": 544.3956, "CH4": 5.81742, "N2O": 0.001026, "VOC": 0.54891}
    assert by_gas(day(fuel_gas_mcf=10.0), source="combustion") == pytest.approx(expected)
    # Not metered: the engine's 0.5 Mcf/h x the production record's 20 running hours = the same 10 Mcf.
    runtime = DayActivity("W-1", DAY, oil_bbl=0.0, gas_mcf=0.0, runtime_hours=20.0)
    assert by_gas(runtime, WellEquipment(engine_fuel_mcf_per_hour=0.5), "combustion") == pytest.approx(expected)
    # Neither metered nor a fuel rate: nothing is computed (not zero-filled).
    assert by_gas(runtime, source="combustion") == {}


def test_tank_flashing() -> None:
    # 100 bbl x 0.2304 = 23.04 kg CH4; 100 x 1.195 = 119.5 kg VOC
    assert by_gas(day(oil_bbl=100.0), source="tank_flashing") == pytest.approx({"CH4": 23.04, "VOC": 119.5})


def test_pneumatic_devices() -> None:
    equipment = WellEquipment(pneumatic_devices={"intermittent": 2, "low_bleed": 1})
    # (2 x 13.5 + 1 x 1.39) scf/h x 24 h = 681.36 scf = 0.68136 Mcf
    # CH4: 0.68136 x 0.788 x 19.2 = 10.308704256; CO2: 0.68136 x 0.02 x 52.6 = 0.71679072; VOC: x 0.278 of CH4
    got = by_gas(day(), equipment, "pneumatic_devices")
    assert got == pytest.approx({"CH4": 10.308704256, "CO2": 0.71679072, "VOC": 2.865819783})


def test_fugitive_components() -> None:
    equipment = WellEquipment(components={"valve": 10, "connector": 50})
    # (10 x 0.121 + 50 x 0.017) scf/h x 24 h = 49.44 scf = 0.04944 Mcf
    # CH4: 0.04944 x 0.788 x 19.2 = 0.748007424; CO2: 0.04944 x 0.02 x 52.6 = 0.05201088; VOC: x 0.278 of CH4
    got = by_gas(day(), equipment, "fugitive_components")
    assert got == pytest.approx({"CH4": 0.748007424, "CO2": 0.05201088, "VOC": 0.207946064})


def test_a_tenant_version_applies_in_its_valid_period_and_is_recorded() -> None:
    mine = EmissionFactor("gas.ch4_mole_fraction", "gas", "CH4", 0.9, "mol/mol", "lab", valid_from=date(2026, 3, 1),
                          valid_to=date(2026, 3, 31), version="tenant:2")
    older = EmissionFactor("gas.ch4_mole_fraction", "gas", "CH4", 0.5, "mol/mol", "lab", valid_from=date(2026, 1, 1),
                           version="tenant:1")
    factors = FactorSet(DEFAULT_FACTORS, [older, mine])
    [ch4] = [e for e in calculate_day(day(vented_mcf=1.0), WellEquipment(), factors) if e.gas == "CH4"]
    assert ch4.kg == pytest.approx(1.0 * 0.9 * 19.2)  # tenant:2 wins in March
    assert ("gas.ch4_mole_fraction", "tenant:2", 0.9) in [(f.key, f.version, f.value) for f in ch4.factors]
    april = DayActivity("W-1", date(2026, 4, 1), 0.0, 0.0, vented_mcf=1.0)
    [ch4] = [e for e in calculate_day(april, WellEquipment(), factors) if e.gas == "CH4"]
    assert ch4.kg == pytest.approx(0.5 * 19.2)  # tenant:2 ended; tenant:1 is still valid


def test_co2e_boe_and_units() -> None:
    assert co2e("CH4", 1.0) == 28.0 and co2e("N2O", 1.0) == 265.0 and co2e("VOC", 1.0) == 0.0
    assert boe(10.0, 60.0) == 20.0
    assert FACTOR_UNITS["combustion.CO2"] == "kg/MMBtu" and FACTOR_UNITS["pneumatic_devices.high_bleed"] == "scf/h"
    assert all(f.citation and f.value > 0 for f in DEFAULT_FACTORS)
