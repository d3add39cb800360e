"""Concept drift per sensor: the Page-Hinkley test (as River's ``drift.PageHinkley``) on the sensor's clipped z-score.

A drift is a lasting change of a sensor's normal (a new set point, a recalibrated gauge, a slow wear
trend), not a spike: the test sees each z-score clipped to ``± clip``, so a single outlier moves its
cumulative sum by at most ``clip - delta``. When a drift is detected the caller re-baselines the sensor's
anomaly models, so the new normal is learned instead of alerted on for ever.

"""

from __future__ import annotations

import math

__all__ = ["LevelDriftDetector", "SensorDriftDetector"]


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


class LevelDriftDetector:
    """Drift of one sensor's level against its normal variation, daily and process cycles included.

    Why not a z-score against the anomaly baseline: that baseline forgets within a few hundred values, so
    its standard deviation is the short-term noise, and a separator whose level fills and dumps every few
    minutes, a tank that fills for hours, or a daily swing all look like "drifts" of many σ (the demo
    reported ``level_in drifted up: 23.41 (z=+0.6)`` on separators that were only cycling). Here:

    - The **reference** is the sensor's mean and standard deviation over ``reference_seconds`` of reading
      time (an exponentially weighted mean and variance whose weights follow the time between readings, so
      the answer does not depend on the polling rate). Over hours, σ contains the whole normal cycle:
      a sawtooth spans ±1.73 σ, a sine ±1.41 σ.
    - Each value's distance from the reference, ``d = (x - mean) / σ`` clipped to ``± clip`` (a spike counts
      as a short excursion, not as a drift), feeds a two-sided CUSUM in **σ-seconds**:
      ``S+ = max(0, S+ + (d - allowance) dt)`` and likewise downwards. A lasting level beyond ``allowance``
      σ accumulates; the normal cycle never leaves ``± allowance`` (> 1.73) for long, and a change smaller
      than 1 σ only adds noise excursions that a drift of ``allowance - 1`` σ per second drains. A drift is
      signalled when a sum passes ``threshold`` σ-seconds (default 400: a lasting 3 σ level takes about 7
      minutes; a ramp to 3 σ over an hour is signalled about 50 minutes after it starts).
    - Nothing is signalled before ``warmup_seconds`` of reading time and ``min_instances`` values; until
      then the reference is the plain running mean and variance. After that it learns each value
      winsorised at ``± allowance`` σ, so a drift in progress does not become its own reference.
    - A level the sensor has been at before is not a drift: a drift is signalled only when the slow level
      (``level_seconds``) is also beyond every slow level of the reference period, leaving out the last
      ``recent_seconds`` (where the drift itself starts). The top of a daily or a fill cycle was visited
      yesterday; a sensor that lost its calibration goes where it has never been.

    After a drift the reference moves to the new level (σ is kept: a level change is not a change of
    variability) and the sums restart. The detector also keeps the level of the last few minutes
    (`step`): how much of a change happened within ``step_seconds``, in σ. The equipment uses it to tell an
    operator's set-point change (abrupt, and seen on other sensors at the same time) from a drift.

    Parameters
    ----------
    reference_seconds
        Memory of the reference (reading time).
    allowance
        Distance from the reference, in σ, that a lasting level must exceed to accumulate evidence.
    threshold
        Evidence (σ-seconds beyond the allowance) that signals a drift.
    clip
        Distances are clipped to ``± clip`` σ.
    warmup_seconds
        Reading time before a drift can be signalled.
    min_instances
        Values before a drift can be signalled.
    max_gap_seconds
        A longer gap between readings counts as this long.
    step_seconds
        Span within which a change counts as a step (see `step`).
    level_seconds
        Memory of the slow level the novelty gate compares (and the width of its buckets).
    recent_seconds
        The latest stretch of level history that the novelty gate leaves out (where a drift starts).
    novelty_margin
        How far (σ) beyond the levels seen before a level must be to be new (the low point of a tank's
        haul is never quite where it was the last time).

    Examples
    --------
    A separator's level dumping every five minutes (a sawtooth of ± 30 % of its range), read every 10 s
    for a day: no drift. Then a calibration shift of 3 σ: signalled 8 minutes and 30 s later.

    >>> det = LevelDriftDetector()
    >>> saw = [24.0 + 7.2 * (2.0 * ((t % 300) / 300) - 1.0) for t in range(0, 86_400, 10)]
    >>> any(det.update(x, float(t * 10)) for t, x in enumerate(saw))
    False
    >>> round(det.std, 2), det.direction
    (4.15, None)
    >>> next(t for t in range(0, 3_600, 10) if det.update(saw[t // 10] + 3 * 4.15, 86_400.0 + t))
    510
    >>> det.drifts, det.direction
    (1, 'up')

    References
    ----------
    [^1]: Page, E. S., 1954. Continuous inspection schemes. Biometrika 41, 100-115.
    [^2]: Montgomery, D. C., 2009. Introduction to Statistical Quality Control, 6th ed., ch. 9 (CUSUM).

    """

    def __init__(
        self,
        reference_seconds: float = 86_400.0,
        allowance: float = 2.0,
        threshold: float = 400.0,
        clip: float = 4.0,
        warmup_seconds: float = 1_200.0,
        min_instances: int = 100,
        max_gap_seconds: float = 60.0,
        step_seconds: float = 600.0,
        level_seconds: float = 900.0,
        recent_seconds: float = 7_200.0,
        novelty_margin: float = 0.5,
    ) -> None:
        if reference_seconds <= 0 or threshold <= 0 or clip <= 0 or allowance < 0 or step_seconds <= 0:
            raise ValueError("reference_seconds, threshold, clip and step_seconds must be > 0, allowance >= 0")
        self.reference_seconds = reference_seconds
        self.allowance = allowance
        self.threshold = threshold
        self.clip = clip
        self.warmup_seconds = warmup_seconds
        self.min_instances = min_instances
        self.max_gap_seconds = max_gap_seconds
        self.step_seconds = step_seconds
        self.level_seconds = level_seconds
        self.recent_seconds = recent_seconds
        self.novelty_margin = novelty_margin
        self.drifts = 0
        self.direction: str | None = None
        self.n = 0
        self.mean = 0.0
        self.var = 0.0
        self.last_d = 0.0
        self.drift_step = 0.0  # `step` when the last drift was signalled (before re-baselining)
        self.drift_ts: float | None = None  # when it was signalled
        self._first: float | None = None
        self._seen = 0  # values since the (re)start
        self._last: float | None = None
        self._up = 0.0
        self._down = 0.0
        self._fast: float | None = None
        self._history: list[tuple[float, float]] = []
        self._slow: float | None = None
        self._ranges: list[list[float]] = []  # [bucket start, lowest, highest] of the slow level

    @property
    def std(self) -> float:
        """σ of the sensor's normal variation (never below a millionth of the mean's size, nor 1e-9)."""
        return max(math.sqrt(self.var), 1e-6 * abs(self.mean), 1e-9)

    @property
    def evidence(self) -> float:
        """The larger CUSUM sum, as a share of the threshold (1.0: a drift is signalled)."""
        return max(self._up, self._down) / self.threshold

    def ready(self) -> bool:
        """Whether a drift can be signalled (warm-up over)."""
        return (
            self._first is not None
            and self._seen >= self.min_instances
            and self._last is not None
            and self._last - self._first >= self.warmup_seconds
        )

    def update(self, x: float, ts: float, tolerance: float = 1.0) -> bool:
        """Learn value `x` read at epoch seconds `ts`; True when a drift is signalled (`direction` says which).

        ``tolerance`` widens σ for the test (an operator said earlier alerts were false alarms). A value not
        newer than the last one (a late reading) or not finite is ignored.
        """
        if not math.isfinite(x) or not math.isfinite(ts) or (self._last is not None and ts <= self._last):
            return False
        if self._first is None:
            self._first = ts
        dt = 0.0 if self._last is None else min(ts - self._last, self.max_gap_seconds)
        self._last = ts
        self._seen += 1
        self._track_step(x, ts, dt)
        drifted = False
        ready = self.ready()
        if ready:
            d = (x - self.mean) / (self.std * tolerance)
            d = self.clip if d > self.clip else -self.clip if d < -self.clip else d
            self.last_d = d
            self._up = max(0.0, self._up + (d - self.allowance) * dt)
            self._down = max(0.0, self._down + (-d - self.allowance) * dt)
            up, down = self._up > self.threshold, self._down > self.threshold
            if (up and self._novel(True)) or (down and self._novel(False)):
                drifted = True
                self.drifts += 1
                self.direction = "up" if self._up > self._down else "down"
        if ready:  # winsorised at the allowance: a drift in progress barely moves its own reference
            limit = self.allowance * self.std
            x = self.mean + limit if x > self.mean + limit else self.mean - limit if x < self.mean - limit else x
        self._learn(x, dt)
        if drifted:
            self.drift_step = self.step()
            self.drift_ts = ts
            self.rebaseline(self._fast if self._fast is not None else x)
        return drifted

    def _learn(self, x: float, dt: float) -> None:
        """Running mean and variance while young (weight 1/n), exponentially weighted in time after that."""
        self.n += 1
        if self.n == 1:
            self.mean = x
            return
        a = max(1.0 / self.n, -math.expm1(-dt / self.reference_seconds))
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    def _novel(self, up: bool) -> bool:
        """Whether the slow level is beyond every slow level of the reference period before the recent
        stretch (True while there is no such history): a level the sensor has been at before, at the peak
        of a daily or a fill cycle, is not a drift."""
        slow, last = self._slow, self._last
        if slow is None or last is None:
            return True
        older = [r for r in self._ranges if r[0] + self.level_seconds <= last - self.recent_seconds]
        if not older:
            return True
        margin = self.novelty_margin * self.std
        if up:
            return slow > max(r[2] for r in older) + margin
        return slow < min(r[1] for r in older) - margin

    def _track_step(self, x: float, ts: float, dt: float) -> None:
        """Level of the last minute, remembered once a minute for ``2 * step_seconds``; the slow level's
        range per ``level_seconds`` bucket over the reference period."""
        slow = self._slow
        self._slow = slow = x if slow is None else slow + (1.0 - math.exp(-dt / self.level_seconds)) * (x - slow)
        ranges = self._ranges
        if ranges and ts - ranges[-1][0] < self.level_seconds:
            r = ranges[-1]
            if slow < r[1]:
                r[1] = slow
            elif slow > r[2]:
                r[2] = slow
        else:
            ranges.append([ts, slow, slow])
            horizon = ts - self.reference_seconds - self.recent_seconds
            while ranges and ranges[0][0] < horizon:
                ranges.pop(0)
        fast = self._fast
        self._fast = x if fast is None else fast + (1.0 - math.exp(-dt / 60.0)) * (x - fast)
        h = self._history
        if not h or ts - h[-1][0] >= 60.0:
            h.append((ts, self._fast))
            while h and ts - h[0][0] > 2.0 * self.step_seconds:
                h.pop(0)

    def step(self) -> float:
        """The largest change of the one-minute level within ``step_seconds`` over the last
        ``2 * step_seconds``, in σ, signed (0.0 before the reference is ready)."""
        if not self.ready() or self._fast is None:
            return 0.0
        points = [*self._history, (self._last or 0.0, self._fast)]
        best = 0.0
        for i, (ti, li) in enumerate(points):
            for tj, lj in points[i + 1 :]:
                if tj - ti <= self.step_seconds and abs(lj - li) > abs(best):
                    best = lj - li
        return best / self.std

    def recent_step(self) -> float:
        """`step`, or, within ``step_seconds`` of a drift signalled (and re-baselined) here, the step then."""
        if self.drift_ts is not None and self._last is not None and self._last - self.drift_ts <= self.step_seconds:
            return self.drift_step
        return self.step()

    def reset(self) -> None:
        """Re-baseline at the last minute's level (an operating change the caller was told about)."""
        self.rebaseline()

    def rebaseline(self, level: float | None = None) -> None:
        """Take `level` (default: the last minute's) as the new normal and restart the evidence.

        The reference's mean moves to the new level and keeps learning at its usual pace; σ keeps its
        memory (a level change is not a change of variability). Nothing is signalled for another
        `warmup_seconds`. Should the "drift" have been a cycle longer than the reference has seen, the mean
        drifts back to the cycle's centre and σ, measured around a mean that was off, grows: the detector
        learns that the normal swing is wider than it thought.
        """
        if level is None:
            level = self._fast
        if level is not None:
            self.mean = level
        self._seen = 0
        self._first = self._last
        self._up = self._down = 0.0
        self._history = [(self._last, self._fast)] if self._last is not None and self._fast is not None else []
