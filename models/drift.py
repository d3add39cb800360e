"""Concept drift per sensor: the Page-Hinkley test (as River's ``drift.PageHinkley``) on the sensor's clipped z-score.

A drift is a lasting change of a sensor's normal (a new set point, a recalibrated gauge, a slow wear
trend), not a spike: the test sees each z-score clipped to ``± clip``, so a single outlier moves its
cumulative sum by at most ``clip - delta``. When a drift is detected the caller re-baselines the sensor's
anomaly models, so the new normal is learned instead of alerted on for ever.

"""

from __future__ import annotations

import math

__all__ = ["SensorDriftDetector"]


class SensorDriftDetector:
    """Page-Hinkley change detection on one sensor's z-score (both directions).

    The input is the sensor's z-score against its own running baseline (computed before the value is
    learned), clipped to ``± clip``. Under normal operation it has mean 0 and variance about 1, so the
    settings are in standard deviations and do not depend on the sensor's units: ``delta`` is the
    smallest lasting shift (in σ) that accumulates evidence, ``threshold`` the evidence needed. With the
    defaults a lasting shift of 3σ or more is detected after about ``threshold / (clip - delta)`` = 40
    values, one of 1σ after about 200 values; a cycle whose period is close to the baseline's memory
    (the worst case for a z-score) gave no drift on the simulated feeds of the tests.

    Parameters
    ----------
    threshold
        Page-Hinkley's λ: cumulative deviation (in σ) that signals a drift.
    delta
        Page-Hinkley's δ: tolerated magnitude of change (in σ).
    clip
        z-scores are clipped to ``± clip`` before the test sees them.
    min_instances
        Values after a (re)start before a drift can be signalled.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> det = SensorDriftDetector()
    >>> any(det.update(rng.gauss(0.0, 1.0)) for _ in range(5_000))  # noise: no drift
    False
    >>> next(i for i in range(1_000) if det.update(rng.gauss(2.0, 1.0)))  # a lasting +2σ shift
    70
    >>> det.drifts, det.direction
    (1, 'up')

    References
    ----------
    [^1]: Page, E. S., 1954. Continuous inspection schemes. Biometrika 41, 100-115.

    """

    def __init__(
        self, threshold: float = 100.0, delta: float = 0.5, clip: float = 3.0, min_instances: int = 30
    ) -> None:
        if threshold <= 0 or delta < 0 or clip <= 0:
            raise ValueError("threshold and clip must be > 0 and delta >= 0")
        self.threshold = threshold
        self.delta = delta
        self.clip = clip
        self.min_instances = min_instances
        self.drifts = 0
        self.direction: str | None = None
        self.reset()

    def update(self, z: float) -> bool:
        """Feed one z-score; return True when a drift is detected (the test then restarts)."""
        if not math.isfinite(z):
            return False
        c = self.clip
        z = c if z > c else -c if z < -c else z
        # Page-Hinkley, as river.drift.PageHinkley(alpha=1, mode="both") computes it, inline: this runs
        # once per sensor value on the ingest path (tests/test_models_detectors.py checks they agree).
        n = self._n = self._n + 1
        mean = self._mean = self._mean + (z - self._mean) / n
        dev = z - mean
        inc = self._sum_increase = self._sum_increase + dev - self.delta
        dec = self._sum_decrease = self._sum_decrease + dev + self.delta
        if inc < self._min_increase:
            self._min_increase = inc
        if dec > self._max_decrease:
            self._max_decrease = dec
        if n < self.min_instances:
            return False
        up = inc - self._min_increase > self.threshold
        if up or self._max_decrease - dec > self.threshold:
            self.drifts += 1
            self.direction = "up" if up else "down"
            self.reset()
            return True
        return False

    def reset(self) -> None:
        """Forget the accumulated evidence (after a drift, or after the caller re-baselined the sensor)."""
        self._n = 0
        self._mean = 0.0
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = math.inf
        self._max_decrease = -1.0  # as River starts it
