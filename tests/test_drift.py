"""Drift bars of issue 11, on the simulator's own sensors (pure: no servers).

"σ" is the sensor's normal variation as the simulator generated it (daily cycle, slow walk, noise, dump and
fill cycles included), measured on the fault-free feed of the same seed. Bars: a lasting step of 0.8 σ opens
no drift alert; a ramp to 3 σ (over an hour) opens one within 2 hours of its start; a separator's level that
only cycles opens none; an operator's set-point change (the coupled sensors move with it) re-baselines
without an alert.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from models import EquipmentState, Snapshot, default_rules
from models.drift import LevelDriftDetector
from schema.equipment import EquipmentType
from sim import EquipmentSpec, FeedSimulator, NormalBehaviour

T0 = datetime(2026, 3, 2, tzinfo=UTC)
POLL = timedelta(seconds=10)
# 50 hours of 10-second polls before the change: from its third day a sensor's drift is measured against its
# time-of-day profile (models.drift.LevelDriftDetector); before that the detector is conservative.
WARM = 50 * 360


def feed(spec: EquipmentSpec, ticks: int, seed: int) -> list[Snapshot]:
    sim = FeedSimulator([spec], seed=seed, normal=NormalBehaviour.none())
    return [Snapshot(T0 + k * POLL, sim.next_snapshots(T0 + k * POLL)[0]["values"]) for k in range(ticks)]


def drift_openings(spec: EquipmentSpec, snaps: list[Snapshot]) -> list:
    eq = EquipmentState(spec.equipment_id, spec.equipment_type.value, default_rules(spec.equipment_type.value))
    return [c for c in eq.learn_many(snaps) if c.kind == "opened" and c.rule_id.startswith("drift_")]


CASES = [
    (EquipmentSpec("CMP-0001", EquipmentType.COMPRESSOR), "discharge_temp_f", seed) for seed in (1, 2)
] + [
    (EquipmentSpec("MTR-0001", EquipmentType.METER), "flow_mcfd", seed) for seed in (3, 4)
] + [(EquipmentSpec("SEP-0001", EquipmentType.SEPARATOR), "pressure_psi", 5)]



@pytest.mark.parametrize(("spec", "sensor", "seed"), CASES)
def test_a_step_under_one_sigma_opens_no_drift_alert(spec: EquipmentSpec, sensor: str, seed: int) -> None:
    snaps = feed(spec, WARM + 8 * 360, seed)
    sigma = statistics.pstdev(s.values[sensor] for s in snaps[:WARM])
    stepped = snaps[:WARM] + [Snapshot(s.ts, {**s.values, sensor: s.values[sensor] + 0.8 * sigma})
                              for s in snaps[WARM:]]
    after = [c for c in drift_openings(spec, stepped) if c.ts >= snaps[WARM].ts]
    assert after == []


@pytest.mark.parametrize(("spec", "sensor", "seed"), CASES)
def test_a_ramp_to_three_sigma_opens_a_drift_alert_within_two_hours(spec: EquipmentSpec, sensor: str,
                                                                     seed: int) -> None:
    snaps = feed(spec, WARM + 4 * 360, seed)
    sigma = statistics.pstdev(s.values[sensor] for s in snaps[:WARM])
    ramp = 360  # an hour
    drifted = snaps[:WARM] + [
        Snapshot(s.ts, {**s.values, sensor: s.values[sensor] + 3.0 * sigma * min(1.0, k / ramp)})
        for k, s in enumerate(snaps[WARM:])
    ]
    start = snaps[WARM].ts
    found = [c for c in drift_openings(spec, drifted) if c.ts >= start and c.rule_id == f"drift_{sensor}"]
    assert found, "the drift was not detected"
    assert found[0].ts - start <= timedelta(hours=2)
    assert found[0].details["direction"] == "up"


def test_a_cycling_separator_level_opens_no_drift_alert_over_three_days() -> None:
    spec = EquipmentSpec("SEP-0003", EquipmentType.SEPARATOR)
    snaps = feed(spec, 3 * 8_640, seed=7)
    assert [c for c in drift_openings(spec, snaps) if c.rule_id == "drift_level_in"] == []


def test_an_operator_set_point_change_rebaselines_without_an_alert() -> None:
    spec = EquipmentSpec("PJ-0001", EquipmentType.PUMP_JACK)
    sim = FeedSimulator([spec], seed=3, normal=NormalBehaviour.none())
    eq = EquipmentState(spec.equipment_id, spec.equipment_type.value)
    unit = sim._units[spec.equipment_id]
    changes = []
    for k in range(WARM + 3 * 360):
        if k == WARM:
            unit.offset = 0.2 if unit.base["strokes_per_minute"] < 0.55 else -0.2  # the operator's step
        ts = T0 + k * POLL
        changes += eq.learn_many([Snapshot(ts, sim.next_snapshots(ts)[0]["values"])])
    after = [c for c in changes if c.kind == "opened" and c.ts >= T0 + WARM * POLL]
    assert [c for c in after if c.rule_id.startswith("drift_")] == []
    assert eq.operating_changes >= 1


def test_level_drift_detector_ignores_late_and_bad_values_and_pickles() -> None:
    import math
    import pickle

    det = LevelDriftDetector(warmup_seconds=0.0, min_instances=2)
    assert det.update(1.0, 10.0) is False
    assert det.update(2.0, 5.0) is False  # older than the last one: ignored
    assert det.update(math.nan, 20.0) is False
    assert det.n == 1
    clone = pickle.loads(pickle.dumps(det))
    assert clone.mean == det.mean and clone.n == 1
    with pytest.raises(ValueError):
        LevelDriftDetector(threshold=0.0)


def test_a_re_baseline_before_the_profile_answers_moves_the_profile_too() -> None:
    """A level re-baselined on day 2 (an operator's change, before the time-of-day profile answers) is the
    normal the profile measures against from day 3: the slots learned on day 1 at the old level move with it."""
    det = LevelDriftDetector()
    minute = 60.0
    signalled = []
    for i in range(4 * 1_440):
        t = i * minute
        level = 100.0 if i < 36 * 60 else 120.0  # the operator's change at 36 h
        if i == 36 * 60 + 10:
            det.rebaseline(120.0)
        drifted = det.update(level + 5.0 * math.sin(2 * math.pi * t / 86_400.0) + 0.5 * math.sin(i * 1.7), t)
        if drifted and i > 36 * 60 + 10:  # after the re-baseline (the step itself is a drift to a bare detector)
            signalled.append(i // 60)
    assert det.profile_ready()
    assert signalled == []


def _excursion(spec: EquipmentSpec, sensor: str, seed: int, sigmas: float, hours: float) -> list[Snapshot]:
    """Normal, then the sensor `sigmas` σ up for `hours` (a worn part), then normal again for six hours."""
    snaps = feed(spec, WARM + int((hours + 6) * 360), seed)
    sigma = statistics.pstdev(s.values[sensor] for s in snaps[:WARM])
    end = WARM + int(hours * 360)
    return [Snapshot(s.ts, {**s.values, sensor: s.values[sensor] + sigmas * sigma}) if WARM <= k < end else s
            for k, s in enumerate(snaps)]


@pytest.mark.parametrize(("spec", "sensor", "seed"), CASES[:3])
def test_a_drift_back_to_the_normal_it_left_opens_no_second_alert(spec: EquipmentSpec, sensor: str,
                                                                  seed: int) -> None:
    snaps = _excursion(spec, sensor, seed, 4.0, 3.0)
    eq = EquipmentState(spec.equipment_id, spec.equipment_type.value, default_rules(spec.equipment_type.value))
    opened = [c for c in eq.learn_many(snaps)
              if c.kind == "opened" and c.rule_id == f"drift_{sensor}" and c.ts >= snaps[WARM].ts]
    assert [c.details["direction"] for c in opened] == ["up"]  # the fault, and not its repair
    assert eq.returns_to_normal == 1
    assert eq.drift_detectors[sensor].returned


def test_a_drift_away_from_a_set_point_the_operator_chose_is_not_a_return() -> None:
    det = LevelDriftDetector()

    def run(t0: float, hours: float, level: float) -> list[str]:
        out = []
        for t in range(int(t0), int(t0 + hours * 3_600), 60):
            v = 50.0 + 10.0 * math.sin(2 * math.pi * t / 86_400) + level + 1.5 * math.sin(t / 7.0)
            if det.update(v, float(t)):
                out.append(f"{det.direction}{'-return' if det.returned else ''}")
        return out

    assert run(0, 72, 0.0) == []
    assert run(72 * 3_600, 3, 25.0) == ["up"]
    det.rebaseline()
    det.accept_level()  # the equipment took the new level as an operating change
    assert run(75 * 3_600, 3, 25.0) == []
    assert run(78 * 3_600, 3, 0.0) == ["down"]  # back to the old level: a drift from the chosen normal
