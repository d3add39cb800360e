"""An operator's set-point change is an operating change, not a fault; a spike or a ramp of the same sensor is."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from models import EquipmentState, Snapshot

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def pump_jack(i: int, spm: float, rng: random.Random) -> Snapshot:
    """A pump jack whose current and rod load follow its speed (strokes per minute)."""
    cycle = math.sin(2 * math.pi * i / 360)
    return Snapshot(T0 + timedelta(seconds=10 * i), {
        "strokes_per_minute": spm + rng.gauss(0, 0.01),
        "motor_current_a": 4.5 * spm + cycle + rng.gauss(0, 0.3),
        "polished_rod_load_lbf": 1_500 * spm + 50 * cycle + rng.gauss(0, 40),
        "tubing_psi": 800 + 5 * cycle + rng.gauss(0, 2),
        "casing_psi": 250 + 2 * cycle + rng.gauss(0, 1),
    })


def run(speeds: list[float]) -> tuple[EquipmentState, list[str]]:
    rng = random.Random(3)
    eq = EquipmentState("PJ-1", "pump_jack")
    opened = []
    for i, spm in enumerate(speeds):
        opened += [c.rule_id for c in eq.learn_many([pump_jack(i, spm, rng)]) if c.kind == "opened"]
    return eq, opened


def test_a_set_point_step_inside_the_range_rebaselines_without_an_alert() -> None:
    eq, opened = run([8.0] * 2_000 + [9.0] * 1_000)  # the operator speeds the unit up by 1 spm
    assert eq.setpoint_changes == 1
    assert "anomaly" not in opened and not any(r.startswith("drift_") for r in opened)


def test_a_step_within_the_set_points_wander_is_still_a_set_point_change() -> None:
    """The speed wanders (a slow random walk of about ± 0.25 spm and 0.1 spm of noise) and the operator steps
    it by 0.7 spm, a tenth of its range.

    Against the level's spread (the wander included) the step is small; against how far the speed moves
    over a few readings, it is a step."""
    rng, walk, speeds = random.Random(5), 0.0, []
    for i in range(3_000):
        walk = 0.97 * walk + rng.gauss(0, 0.06)
        speeds.append(8.0 + walk + rng.gauss(0, 0.1) + (0.7 if i >= 2_500 else 0.0))
    eq, opened = run(speeds)
    assert eq.setpoint_changes == 1
    assert "anomaly" not in opened and not any(r.startswith("drift_") for r in opened)


def test_a_spike_of_the_same_sensor_is_still_an_anomaly() -> None:
    eq, opened = run([8.0] * 2_000 + [30.0] * 3 + [8.0] * 300)  # far outside its 6-12 spm range
    assert "anomaly" in opened
    assert eq.__dict__.get("setpoint_changes", 0) == 0


def test_a_drifting_speed_sensor_is_not_a_set_point_change() -> None:
    """The strokes sensor reads 2 spm high after an hour's ramp while the unit runs on (the others stay)."""
    rng = random.Random(4)
    eq = EquipmentState("PJ-1", "pump_jack")
    for i in range(3_500):
        snap = pump_jack(i, 8.0, rng)
        error = 0.0 if i < 2_000 else min(2.0, 2.0 * (i - 2_000) / 360)
        snap.values["strokes_per_minute"] += error
        eq.learn_many([snap])
    assert eq.__dict__.get("setpoint_changes", 0) == 0  # (what the drift models make of it: tests/test_drift.py)
