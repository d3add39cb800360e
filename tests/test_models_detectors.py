"""Tests of the streaming anomaly detectors (pure, no IO)."""

import math
import pickle
import random

import pytest

from models import SensorAnomalyDetector, SensorDriftDetector, SnapshotAnomalyDetector
from models.detectors import EquipmentAnomalyScorer, TailCalibration

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`


def _noisy_sine(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [100.0 + 5.0 * math.sin(2 * math.pi * i / 50) + rng.gauss(0.0, 1.0) for i in range(n)]


def test_sensor_detector_warmup_range_and_spike() -> None:
    det = SensorAnomalyDetector(warmup=30)
    xs = _noisy_sine(2_000)
    for i, x in enumerate(xs):
        s = det.score_one(x)
        assert 0.0 <= s <= 1.0
        if i < 30:
            assert s == 0.0
        det.learn_one(x)
    assert det.score_one(200.0) > 0.999


def test_sensor_detector_spike_does_not_poison_baseline() -> None:
    det = SensorAnomalyDetector()
    for x in _noisy_sine(1_000):
        det.learn_one(x)
    mean, std = det.mean, det.std
    det.learn_one(1e9)
    assert abs(det.mean - mean) < 0.1 * std * 10
    assert det.std < 1.5 * std


def test_sensor_detector_adapts_to_level_change() -> None:
    det = SensorAnomalyDetector()
    rng = random.Random(3)
    for _ in range(500):
        det.learn_one(50.0 + rng.gauss(0.0, 1.0))
    for _ in range(1_000):
        det.learn_one(80.0 + rng.gauss(0.0, 1.0))
    assert abs(det.mean - 80.0) < 1.0
    assert det.score_one(80.0) < 0.5


def test_detectors_skip_nan_inf_and_pickle() -> None:
    det = SensorAnomalyDetector(warmup=5)
    snap = SnapshotAnomalyDetector(window_size=20, warmup=5, seed=1)
    rng = random.Random(0)
    for _ in range(100):
        for bad in (math.nan, math.inf, -math.inf):
            assert det.score_one(bad) == 0.0
            det.learn_one(bad)
            snap.learn_one({"a": bad})
        det.learn_one(rng.gauss(0.0, 1.0))
        snap.learn_one({"a": rng.gauss(0.0, 1.0), "b": rng.gauss(0.0, 1.0)})
    assert det.n == 100 and math.isfinite(det.mean)
    copy = pickle.loads(pickle.dumps(snap))
    x = {"a": 0.3, "b": -2.0}
    assert copy.score_one(x) == snap.score_one(x)
    assert 0.0 <= snap.score_one({"a": math.nan, "c": 1.0}) <= 1.0


def test_snapshot_detector_is_deterministic_and_tolerant() -> None:
    def run(seed: int) -> list[float]:
        rng = random.Random(11)
        det = SnapshotAnomalyDetector(window_size=50, seed=seed)
        out = []
        for i in range(400):
            x = {"a": rng.gauss(0.0, 1.0), "b": rng.gauss(5.0, 2.0)}
            if i % 7 == 0:
                del x["b"]  # missing sensor
            if i > 200:
                x["new"] = 1.0 + rng.random()  # sensor appearing later
            out.append(det.score_one(x))
            det.learn_one(x)
        return out

    first = run(42)
    assert first == run(42)
    assert all(0.0 <= s <= 1.0 for s in first)
    assert max(first[150:]) > 0.0


# -- calibration, drift test and the fused hot path ---------------------------------------------------------


def test_tail_calibration_levels_are_tail_probabilities() -> None:
    """On i.i.d. data from heavy-tailed and light-tailed laws alike, a level is exceeded as often as it says."""
    for draw in (lambda r: r.expovariate(1.0), lambda r: r.lognormvariate(0.0, 1.5), lambda r: r.gauss(5, 1) ** 2):
        rng = random.Random(3)
        cal = TailCalibration(fading_factor=0.001)
        for _ in range(20_000):
            cal.update(draw(rng))
        test = [draw(rng) for _ in range(20_000)]
        for level in (0.5, 0.9, 0.99):
            above = sum(cal.cdf(x) >= level for x in test) / len(test)
            assert abs(above - (1.0 - level)) < 0.25 * (1.0 - level) + 0.003, (level, above)


def test_tail_calibration_does_not_learn_a_lasting_incident_as_normal() -> None:
    rng = random.Random(4)
    cal = TailCalibration()
    for _ in range(2_000):
        cal.update(rng.expovariate(1.0))
    q99 = next(x / 100 for x in range(1, 5_000) if cal.cdf(x / 100) >= 0.99)
    learned = [cal.update(50.0) for _ in range(400)]  # far beyond the tail, for 400 values
    assert not any(learned)
    assert cal.cdf(50.0) > 0.9999 and abs(cal.cdf(q99) - 0.99) < 0.005
    assert not cal.update(math.nan) and not cal.update(-1.0)
    clone = pickle.loads(pickle.dumps(cal))
    assert clone.cdf(3.0) == cal.cdf(3.0)


def test_inline_page_hinkley_agrees_with_river() -> None:
    from river import drift

    rng = random.Random(5)
    zs = [rng.gauss(0.0, 1.0) for _ in range(3_000)] + [rng.gauss(2.0, 1.0) for _ in range(500)]
    zs += [rng.gauss(-3.0, 1.0) for _ in range(500)] + [math.nan, 50.0, -50.0] * 10
    ours = SensorDriftDetector()
    ph = drift.PageHinkley(min_instances=30, delta=0.5, threshold=100.0, alpha=1.0)
    got, want = [], []
    for i, z in enumerate(zs):
        if ours.update(z):
            got.append(i)
        if not math.isfinite(z):
            continue
        ph.update(max(-3.0, min(3.0, z)))
        if ph.drift_detected:
            want.append(i)
    assert got == want and len(got) >= 2
    assert ours.drifts == len(got) and ours.direction == "down"


def test_fused_step_equals_score_then_learn() -> None:
    a, b = SensorAnomalyDetector(warmup=10), SensorAnomalyDetector(warmup=10)
    for x in _noisy_sine(500):
        score, z, mean, std = a.step(x)
        assert score == b.score_one(x) and mean == b.mean and (z is None) == (b.n < 10)
        assert std == (b.std if b.n else 0.0)
        if z is not None:
            assert z == b.z(x)
        b.learn_one(x)


def _drop_held(pooled_incidents: bool, seed: int) -> int:
    """Snapshots of a 4 sigma drop of one sensor among eight (one of them wandering) scored >= 0.9."""
    rng = random.Random(seed)
    det = EquipmentAnomalyScorer(pooled_incidents=pooled_incidents, seasonal=False)
    wander, held = 0.0, 0
    for i in range(3_400):
        wander += rng.gauss(0.0, 1.0)
        x = {"temperature": wander, "flow": rng.gauss(100.0, 1.0) - (4.0 if i >= 3_000 else 0.0),
             **{f"other{k}": rng.gauss(0.0, 1.0) for k in range(6)}}
        score = det.score_one(x)
        det.learn_one(x)
        held += i >= 3_000 and score >= 0.9
    return held


def test_one_sensor_far_off_is_an_incident_its_baseline_does_not_learn_quickly() -> None:
    # T averages the eight sensors, so the drop alone rarely passes T's cap: without the pooled calibration the
    # flow's baseline learns the drop at full speed and the score falls back within the incident.
    pooled = [_drop_held(True, seed) for seed in range(4)]
    plain = [_drop_held(False, seed) for seed in range(4)]
    assert all(p >= q for p, q in zip(pooled, plain, strict=True))
    assert sum(pooled) > 1.15 * sum(plain)
