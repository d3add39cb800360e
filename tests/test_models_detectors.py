"""Tests of the streaming anomaly detectors (pure, no IO)."""

import math
import pickle
import random

from models import SensorAnomalyDetector, SnapshotAnomalyDetector


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
