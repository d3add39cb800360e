"""Streaming anomaly scoring: one cheap univariate detector per sensor, one multivariate per equipment.

Both detectors follow River's contract: `score_one` reads the model and returns a number in [0, 1]
(call it before `learn_one`), `learn_one` changes the model. Settings are stored under the names of the
constructor arguments; working state is built on first use, so the objects copy and pickle cleanly.
NaN and infinite values are skipped silently.

"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Mapping

from river import anomaly

__all__ = [
    "DEFAULT_Z_SCALE",
    "EWStats",
    "EquipmentAnomalyScorer",
    "LevelNovelty",
    "SeasonalProfile",
    "SensorAnomalyDetector",
    "SnapshotAnomalyDetector",
]

_SQRT2 = math.sqrt(2.0)
_ABS_MIN_STD = 1e-9
DEFAULT_Z_SCALE = 2.0  # `SensorAnomalyDetector`'s: a per-sensor score is erf(|z| / (DEFAULT_Z_SCALE * sqrt(2)))


class EWStats:
    """Exponentially weighted mean and variance, with a warm-up and a clipped (winsorised) update.

    The weight of a new value is ``max(fading_factor, 1 / n)``: the first ``1 / fading_factor``
    values give the plain running mean and (population) variance, so the estimates are not biased
    towards the first value; after that the statistics forget at the rate ``fading_factor``.
    Once ``clip_after`` values have been seen, a value is clipped to ``mean ± clip * std`` before it
    is learned: a spike moves the baseline by at most ``clip`` standard deviations' worth, while a lasting
    level change still widens the variance step by step and is adapted to (a Huber-like update).

    Parameters
    ----------
    fading_factor
        Weight of a new value once warmed up, in (0, 1]. 0.01 remembers about the last 100 values.
    clip
        Values further than ``clip`` standard deviations from the mean are clipped before learning.
    clip_after
        Number of values learned before clipping starts.
    rel_min_std
        Floor of the standard deviation relative to ``|mean|``, so a constant signal does not give
        infinite z-scores.

    Examples
    --------
    >>> s = EWStats(fading_factor=0.1, clip=3.0, clip_after=3)
    >>> for x in [1.0, 3.0, 5.0]:
    ...     s.update(x)
    >>> s.mean, round(s.std, 4)
    (3.0, 1.633)
    >>> s.update(1000.0)  # clipped to 3.0 + 3 * 1.633 before it is learned
    >>> round(s.mean, 4)
    4.2247
    >>> round(s.z(3.0), 4)
    -0.4804

    References
    ----------
    [^1]: Finch, T., 2009. Incremental calculation of weighted mean and variance.
    [^2]: Huber, P. J., 1964. Robust estimation of a location parameter.

    """

    def __init__(
        self,
        fading_factor: float = 0.01,
        clip: float = 3.0,
        clip_after: int = 30,
        rel_min_std: float = 1e-3,
    ) -> None:
        if not 0.0 < fading_factor <= 1.0:
            raise ValueError(f"fading_factor must be in (0, 1], got {fading_factor}")
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.fading_factor = fading_factor
        self.clip = clip
        self.clip_after = clip_after
        self.rel_min_std = rel_min_std
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    @property
    def std(self) -> float:
        """Standard deviation, never below ``rel_min_std * |mean|`` (nor 1e-9)."""
        floor = self.rel_min_std * abs(self.mean) + _ABS_MIN_STD
        sd = math.sqrt(self.var)
        return sd if sd > floor else floor

    def z(self, x: float) -> float:
        """Signed distance of `x` from the mean in standard deviations (0.0 before any value)."""
        if self.n == 0:
            return 0.0
        return (x - self.mean) / self.std

    def update(self, x: float) -> None:
        """Learn one finite value (NaN and inf are ignored)."""
        if not math.isfinite(x):
            return
        n = self.n + 1
        self.n = n
        if n == 1:
            self.mean = float(x)
            return
        mean = self.mean
        if n > self.clip_after:
            floor = self.rel_min_std * abs(mean) + _ABS_MIN_STD
            sd = math.sqrt(self.var)
            limit = self.clip * (sd if sd > floor else floor)
            if x > mean + limit:
                x = mean + limit
            elif x < mean - limit:
                x = mean - limit
        a = 1.0 / n
        if a < self.fading_factor:
            a = self.fading_factor
        d = x - mean
        self.mean = mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)


class SensorAnomalyDetector:
    """Univariate streaming anomaly detector for one sensor: a robust EW z-score mapped to [0, 1].

    The score is ``erf(|z| / (z_scale * sqrt(2)))``, the probability that a normal variable of standard
    deviation ``z_scale`` is closer to 0 than ``z``. With the default ``z_scale=2`` a score of 0.99 means
    ``|z| ≈ 5.15`` and 0.999 means ``|z| ≈ 6.58``: conservative on purpose, because an equipment has
    several sensors and the anomaly rule takes the maximum. The score is 0.0 until ``warmup`` values
    have been learned.

    Parameters
    ----------
    warmup
        Number of values to learn before scoring (and before the update is clipped).
    fading_factor
        See `EWStats`; 0.01 follows slow level changes over a few hundred samples.
    clip
        See `EWStats`: spikes are learned as at most ``clip`` standard deviations.
    z_scale
        Spread of the z to score mapping (larger is more conservative).
    rel_min_std
        See `EWStats`.

    Examples
    --------
    >>> import math
    >>> det = SensorAnomalyDetector(warmup=10)
    >>> for i in range(200):
    ...     det.learn_one(100.0 + math.sin(i))
    >>> round(det.score_one(100.5), 3)
    0.275
    >>> round(det.score_one(110.0), 3)
    1.0
    >>> det.score_one(float("nan"))
    0.0
    >>> det.learn_one(1e9)  # clipped: the baseline barely moves
    >>> round(det.mean, 2)
    100.02

    """

    def __init__(
        self,
        warmup: int = 30,
        fading_factor: float = 0.01,
        clip: float = 3.0,
        z_scale: float = DEFAULT_Z_SCALE,
        rel_min_std: float = 1e-3,
    ) -> None:
        if z_scale <= 0:
            raise ValueError(f"z_scale must be > 0, got {z_scale}")
        self.warmup = warmup
        self.fading_factor = fading_factor
        self.clip = clip
        self.z_scale = z_scale
        self.rel_min_std = rel_min_std
        self._stats: EWStats | None = None
        self._k = 1.0 / (z_scale * _SQRT2)

    def _get_stats(self) -> EWStats:
        if self._stats is None:
            self._stats = EWStats(self.fading_factor, self.clip, self.warmup, self.rel_min_std)
        return self._stats

    @property
    def n(self) -> int:
        """Number of values learned."""
        return 0 if self._stats is None else self._stats.n

    @property
    def mean(self) -> float:
        """Expected value (the robust EW mean)."""
        return 0.0 if self._stats is None else self._stats.mean

    @property
    def std(self) -> float:
        """Expected spread (the robust EW standard deviation)."""
        return 0.0 if self._stats is None else self._stats.std

    def z(self, x: float) -> float:
        """Signed z-score of `x` against the current baseline (0.0 when not scorable)."""
        s = self._stats
        if s is None or s.n == 0 or not math.isfinite(x):
            return 0.0
        return s.z(x)

    def learn_one(self, x: float) -> None:
        """Update the baseline with `x` (NaN/inf are skipped)."""
        if math.isfinite(x):
            self._get_stats().update(x)

    def score_one(self, x: float) -> float:
        """Anomaly score of `x` in [0, 1], before learning it; 0.0 during warm-up or for NaN/inf."""
        s = self._stats
        if s is None or s.n < self.warmup or not math.isfinite(x):
            return 0.0
        return math.erf(abs(x - s.mean) / s.std * self._k)

    def score_and_z(self, x: float) -> tuple[float, float]:
        """`score_one` and `z` of a finite `x` in one pass (both 0.0 during warm-up)."""
        s = self._stats
        if s is None or s.n < self.warmup:
            return 0.0, 0.0
        z = (x - s.mean) / s.std
        return math.erf(abs(z) * self._k), z

    def step(self, x: float) -> tuple[float, float | None, float, float]:
        """Score a finite `x`, then learn it, in one call (the equipment's hot path).

        Returns ``(score, z, mean, std)`` of `x` against the baseline before learning it; ``z`` is None
        during warm-up (and the score 0.0).
        """
        s = self._stats
        if s is None:
            s = self._stats = EWStats(self.fading_factor, self.clip, self.warmup, self.rel_min_std)
        mean = s.mean
        floor = s.rel_min_std * abs(mean) + _ABS_MIN_STD
        sd = math.sqrt(s.var)
        std = sd if sd > floor else floor if s.n else 0.0
        if s.n < self.warmup:
            s.update(x)
            return 0.0, None, mean, std
        z = (x - mean) / std
        s.update(x)
        return math.erf(abs(z) * self._k), z, mean, std

    def rebaseline(self) -> None:
        """Forget the baseline (after a drift): the next `warmup` values build a new one, scored 0.0."""
        self._stats = None


class SnapshotAnomalyDetector:
    """Multivariate anomaly detector for an equipment's snapshots: River's Half-Space Trees.

    Each sensor is standardised by its own robust running baseline (`EWStats`) and squashed into
    [0, 1] as ``0.5 + z / (2 * z_range)`` (clipped), which is the domain the trees expect. The trees
    are built on the sensors known when they start learning; a sensor that first appears while the
    trees are still in their first window rebuilds them, one appearing later is left to the
    univariate detectors. Missing sensors are handled by the trees (the walk follows the heavier
    child). The score is 0.0 until the trees have a full reference window.

    Parameters
    ----------
    n_trees
        Number of half-space trees.
    height
        Height of each tree.
    window_size
        Reference window of the trees (in learned snapshots).
    learn_every
        Learn the trees from one snapshot in `learn_every` (the scalers learn every snapshot).
    warmup
        Snapshots learned by the scalers before the trees start learning.
    z_range
        z-scores beyond ± `z_range` hit the edge of [0, 1].
    fading_factor
        Fading factor of the per-sensor scalers.
    seed
        Random seed of the trees: same seed and same inputs give the same scores.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> det = SnapshotAnomalyDetector(window_size=50, seed=42)
    >>> for _ in range(300):
    ...     a = rng.gauss(0.0, 1.0)
    ...     x = {"load": 10.0 + a, "current": 40.0 + 2.0 * a + rng.gauss(0.0, 0.1)}
    ...     s = det.score_one(x)
    ...     det.learn_one(x)
    >>> round(det.score_one({"load": 10.0, "current": 40.0}), 3)
    0.507
    >>> round(det.score_one({"load": 20.0, "current": 60.0}), 3)
    0.986
    >>> det.score_one({"load": float("nan")})
    0.0

    References
    ----------
    [^1]: Tan, S.C., Ting, K.M. and Liu, T.F., 2011. Fast anomaly detection for streaming data. IJCAI.

    """

    def __init__(
        self,
        n_trees: int = 5,
        height: int = 6,
        window_size: int = 250,
        learn_every: int = 1,
        warmup: int = 30,
        z_range: float = 4.0,
        fading_factor: float = 0.01,
        seed: int = 0,
    ) -> None:
        if learn_every < 1:
            raise ValueError(f"learn_every must be >= 1, got {learn_every}")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.learn_every = learn_every
        self.warmup = warmup
        self.z_range = z_range
        self.fading_factor = fading_factor
        self.seed = seed
        self._scalers: dict[str, EWStats] = {}
        self._hst: anomaly.HalfSpaceTrees | None = None
        self._features: frozenset[str] = frozenset()
        self._n = 0

    def _scale(self, x: Mapping[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        half = 0.5 / self.z_range
        scalers = self._scalers
        for k, v in x.items():
            s = scalers.get(k)
            if s is None or s.n < 2 or not math.isfinite(v):
                continue
            u = 0.5 + (v - s.mean) / s.std * half
            out[k] = 0.0 if u < 0.0 else 1.0 if u > 1.0 else u
        return out

    def score_one(self, x: Mapping[str, float], ts: float | None = None) -> float:
        """Anomaly score of snapshot `x` in [0, 1], before learning it (0.0 while warming up)."""
        hst = self._hst
        if hst is None or hst._first_window:
            return 0.0
        u = self._scale(x)
        if not u:
            return 0.0
        score = float(hst.score_one(u))
        return 0.0 if score < 0.0 else 1.0 if score > 1.0 else score

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn snapshot `x`: update the scalers, and the trees every `learn_every`-th snapshot."""
        self._n += 1
        if self._n >= self.warmup and self._n % self.learn_every == 0:
            u = self._scale(x)
            if u:
                self._learn_trees(u)
        scalers = self._scalers
        for k, v in x.items():
            s = scalers.get(k)
            if s is None:
                s = scalers[k] = EWStats(self.fading_factor, 3.0, self.warmup)
            s.update(v)

    def score_learn_one(self, x: Mapping[str, float], baselines: Mapping[str, tuple[float, float]]) -> float:
        """`score_one` then `learn_one` in one pass, scaled by the caller's per-sensor ``(mean, std)``.

        For a caller that already keeps a robust baseline per sensor (`EquipmentState` passes its
        `SensorAnomalyDetector` baselines, taken before learning): the snapshot is scaled once and no
        baseline is kept twice. Sensors missing from `baselines` are left out.
        """
        self._n += 1
        hst = self._hst
        half = 0.5 / self.z_range
        u: dict[str, float] = {}
        for k, v in x.items():
            b = baselines.get(k)
            if b is None or not b[1] > 0.0:
                continue
            w = 0.5 + (v - b[0]) / b[1] * half
            u[k] = 0.0 if w < 0.0 else 1.0 if w > 1.0 else w
        score = 0.0
        if u and hst is not None and not hst._first_window:
            score = float(hst.score_one(u))
            score = 0.0 if score < 0.0 else 1.0 if score > 1.0 else score
        if u and self._n >= self.warmup and self._n % self.learn_every == 0:
            self._learn_trees(u)
        return score

    def rebaseline(self, sensor: str) -> None:
        """Forget one sensor's scaler (after a drift of that sensor); it re-learns from the next values."""
        self._scalers.pop(sensor, None)

    def _learn_trees(self, u: dict[str, float]) -> None:
        hst = self._hst
        if hst is None or (hst._first_window and not self._features.issuperset(u)):
            # (Re)build the trees on every sensor known so far; they are built on their first learn_one.
            self._features = self._features.union(u)
            hst = self._hst = anomaly.HalfSpaceTrees(
                n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
            )
            u = {k: u.get(k, 0.5) for k in sorted(self._features)}
        hst.learn_one(u)


EXPLAINED_SHARE = 0.5  # see `SeasonalProfile.explains`


def interpolate_profile(at: Callable[[int], float], buckets: int, ts: float, period_seconds: float) -> float | None:
    """Value at epoch seconds `ts` of a profile of `buckets` slots over the period (slot ``j``'s value is
    ``at(j)``), interpolated between the centres of the two nearest slots; the nearest alone when the other
    is unknown (NaN); None when both are.

    >>> interpolate_profile([0.0, 10.0].__getitem__, 2, 50.0, 100.0)  # halfway between the slot centres
    5.0
    """
    pos = ts / (period_seconds / buckets) - 0.5
    lo = math.floor(pos)
    a, c = at(lo % buckets), at((lo + 1) % buckets)
    if a == a and c == c:  # neither is NaN
        return a + (pos - lo) * (c - a)
    own = at(int(pos + 0.5) % buckets)
    return own if own == own else None


class SeasonalProfile:
    """Expected value of one sensor by time of day, learned online: the sensor's normal daily cycle.

    The period is cut into ``buckets`` slots; each slot keeps an exponentially weighted mean of the values
    seen in it, with a memory of about ``memory_periods`` periods whatever the sampling rate (the weight of
    a value is its share of a slot-period, estimated from the typical gap between readings). The
    residual ``x - expected`` is standardised by robust running statistics (`EWStats`). `z` is None until
    the profile has seen ``min_periods`` periods of data and the slot has been visited, and while the
    profile does not explain the sensor (`explains`): a sensor without a daily cycle (a tank that fills
    over hours whenever it is hauled) has slot means that only remember where it happened to be, and its
    residual against them is noise, not evidence.

    Parameters
    ----------
    period_seconds
        Length of the cycle (a day by default).
    buckets
        Slots per period.
    memory_periods
        Periods a slot remembers.
    min_periods
        Periods of data before `z` answers.
    fading_factor
        Fading factor of the residual statistics.

    Examples
    --------
    >>> import math
    >>> prof = SeasonalProfile(period_seconds=100.0, buckets=10, min_periods=2)
    >>> for t in range(1_000):
    ...     prof.learn_one(50.0 + 10.0 * math.sin(2 * math.pi * t / 100), float(t))
    >>> round(prof.expected(1_025.0), 1), round(prof.z(60.0, 1_025.0), 1)  # the peak is normal at t = 25
    (59.8, 0.3)
    >>> round(prof.z(60.0, 1_075.0), 1)  # but not at t = 75, the trough
    36.8
    >>> saw = SeasonalProfile(period_seconds=100.0, buckets=10, min_periods=2)
    >>> for t in range(1_000):  # a fill cycle of 37 s: no cycle of the period to learn
    ...     saw.learn_one((t % 37) / 37, float(t))
    >>> saw.explains(), saw.z(0.5, 1_005.0)
    (False, None)

    """

    def __init__(
        self,
        period_seconds: float = 86_400.0,
        buckets: int = 48,
        memory_periods: float = 3.0,
        min_periods: float = 2.0,
        fading_factor: float = 0.002,
    ) -> None:
        self.period_seconds = period_seconds
        self.buckets = buckets
        self.memory_periods = memory_periods
        self.min_periods = min_periods
        self.fading_factor = fading_factor
        self._means: list[float] = []
        self._counts: list[int] = []
        self._residuals: EWStats | None = None
        self._first: float | None = None
        self._last: float | None = None
        self._gap = 0.0
        # Out of sample: each slot's mean as it was when the current pass through it began (NaN: unknown
        # then). A slot mean predicts the values it is learning far too well (30 minutes of a slow sensor
        # are one level): judged in sample, a profile of a tank's random fill levels "explained" the tank.
        self._prior: list[float] = []
        self._slot = -1
        self._prior_flat = math.nan
        self._sq_profile = 0.0  # mean square residual against the prior profile, over about a period ...
        self._sq_flat = 0.0  # ... and against the prior profile's flat level

    def explains(self) -> bool:
        """Whether the profile predicted the sensor clearly better than its flat level did (at least half of
        the mean square error gone), over about the last period, each from slot means learned before the
        values they predicted. A day holds few cycles of a slow sensor: by chance alone its profile can
        beat the flat level for a while."""
        return self._sq_profile < EXPLAINED_SHARE * self._sq_flat

    def expected(self, ts: float) -> float | None:
        """Expected value at epoch seconds `ts` (None while the slot is unknown).

        Interpolated between the centres of the two nearest slots when both are known: a profile that
        steps at slot edges makes every edge a jump of the residual, and a sensor without a daily cycle (a
        tank filling for hours) has slot means far apart, so each edge looked like an anomaly.
        """
        if not self._counts:
            return None
        return interpolate_profile(self._means.__getitem__, self.buckets, ts, self.period_seconds)

    def ready(self, ts: float) -> bool:
        """Whether `z` answers at `ts`."""
        return self._first is not None and ts - self._first >= self.min_periods * self.period_seconds

    def z(self, x: float, ts: float) -> float | None:
        """z-score of the residual of `x` at `ts` (None until ready)."""
        first = self._first
        if first is None or ts - first < self.min_periods * self.period_seconds:
            return None  # the common answer for the first days: one comparison
        r = self._residuals
        if r is None or r.n < 2 or not self.explains():
            return None
        predicted = self._predicted(ts)
        return None if predicted is None else r.z(x - predicted)

    def _predicted(self, ts: float) -> float | None:
        """The profile at `ts` from slot means learned before the current pass through them (out of sample):
        the slot being passed and the one just left as they were when the pass entered them, the others as
        they are."""
        prior = self._prior
        if not prior:
            return None
        b = self.buckets
        current = int(ts // (self.period_seconds / b)) % b
        passed = (current, (current - 1) % b) if current == self._slot else ((current - 1) % b,)
        means = self._means
        return interpolate_profile(lambda j: prior[j] if j in passed else means[j], b, ts, self.period_seconds)

    def learn_one(self, x: float, ts: float) -> None:
        """Learn value `x` read at epoch seconds `ts` (NaN/inf are ignored)."""
        if not math.isfinite(x) or not math.isfinite(ts):
            return
        counts = self._counts
        if not counts:
            self._means = [math.nan] * self.buckets  # NaN: a slot not visited yet
            counts = self._counts = [0] * self.buckets
            self._residuals = EWStats(self.fading_factor, 3.0, 30)
            self._first = ts
        last = self._last
        if last is None or ts > last:
            if last is not None:
                gap = ts - last
                g = self._gap
                self._gap = gap if g == 0.0 else g + 0.01 * (gap - g)
            self._last = ts
        slot_seconds = self.period_seconds / self.buckets
        i = int(ts // slot_seconds) % self.buckets
        prior = self._prior
        if not prior:
            prior = self._prior = [math.nan] * self.buckets
        if i != self._slot:
            self._slot = i
            prior[i] = self._means[i]
            known = [m for m in self._means if m == m]
            self._prior_flat = sum(known) / len(known) if known else math.nan
        predicted = self._predicted(ts)
        if predicted is not None:
            w = min(1.0, (self._gap or slot_seconds) / self.period_seconds)
            self._sq_profile += w * ((x - predicted) ** 2 - self._sq_profile)
            self._sq_flat += w * ((x - self._prior_flat) ** 2 - self._sq_flat)
        n = counts[i] = counts[i] + 1
        m = self._means[i]
        if n == 1:
            self._means[i] = x
            return
        a = (self._gap or slot_seconds) / (slot_seconds * self.memory_periods)
        if a < 1.0 / n:
            a = 1.0 / n
        d = x - m
        # z measures the out-of-sample residual: its spread is learned on the same.
        self._residuals.update(x - (m if predicted is None else predicted))  # type: ignore[union-attr]  # made above on the first value
        self._means[i] = m + (d if a >= 1.0 else a * d)


class LevelNovelty:
    """Whether a value sits at a level this sensor has never visited before.

    A value is new when it is farther than ``(max - min) / levels`` (the seen range cut into ``levels``
    slices) from every value learned so far: a level outside the known range, or inside it but never
    visited (a pump reading between its two usual operating points). It needs no distribution, so it
    carries over between series of any shape and scale, and it forgets nothing: a level seen once, even
    weeks ago, is known. `score_one` is 1.0 for a new level (after ``warmup`` values), else 0.0.

    The visited levels are kept as a sorted list of points at least ``1 / resolution`` of a slice apart;
    when more than ``max_points`` are kept every second one is dropped, so the memory stays bounded.

    Parameters
    ----------
    levels
        Slices of the seen range: a value is new when no learned value is within one slice of it.
    warmup
        Values learned before any score.
    resolution
        Points kept per slice.
    max_points
        Bound on the points kept.

    Examples
    --------
    >>> nov = LevelNovelty(warmup=5)
    >>> for x in [10.0, 12.0, 10.5, 30.0, 31.0, 11.0, 29.5, 30.5]:
    ...     nov.learn_one(x)
    >>> nov.score_one(11.2), nov.score_one(30.2)  # both usual levels
    (0.0, 0.0)
    >>> nov.score_one(20.0), nov.score_one(40.0)  # between them, and beyond the range
    (1.0, 1.0)
    >>> nov.score_one(31.5)  # just above the highest value seen: a known level
    0.0

    """

    def __init__(self, levels: int = 16, warmup: int = 300, resolution: int = 4, max_points: int = 1_024) -> None:
        if levels < 1 or resolution < 1 or max_points < 2:
            raise ValueError("levels and resolution must be >= 1, max_points >= 2")
        self.levels = levels
        self.warmup = warmup
        self.resolution = resolution
        self.max_points = max_points
        self.n = 0
        self.low = math.inf
        self.high = -math.inf
        self._points: list[float] = []

    def _distance(self, x: float) -> float:
        pts = self._points
        i = bisect.bisect_left(pts, x)
        d = math.inf
        if i < len(pts):
            d = pts[i] - x
        if i > 0 and x - pts[i - 1] < d:
            d = x - pts[i - 1]
        return d

    def score_one(self, x: float) -> float:
        """1.0 when `x` is at a level never visited (after warm-up), else 0.0 (also for NaN/inf)."""
        if self.n < self.warmup or not math.isfinite(x) or not self.high > self.low:
            return 0.0
        return 1.0 if self._distance(x) > (self.high - self.low) / self.levels else 0.0

    def learn_one(self, x: float) -> None:
        """Learn that `x` is a visited level (NaN/inf are skipped)."""
        if not math.isfinite(x):
            return
        self.n += 1
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x
        step = (self.high - self.low) / (self.levels * self.resolution)
        if self._distance(x) > step:
            bisect.insort(self._points, x)
            if len(self._points) > self.max_points:
                self._points = self._points[::2]


class TailCalibration:
    """Tail probability of a positive statistic against its own recent past: a fading histogram on a log scale.

    `cdf` is the weighted fraction of the values learned so far that lie below ``x`` (linear inside a bin),
    so ``cdf(x) >= 0.99`` means "``x`` is higher than 99 % of what this series usually does", with no
    assumption on the shape of the distribution (heavy tails, autocorrelation, few degrees of freedom).
    A new value weighs ``max(fading_factor, 1 / n)`` of the total, as in `EWStats`.

    An incident that lasts must not teach the calibration that it is normal within minutes. So, once
    ``warmup`` values are in, values are capped at the bin just above the bin of the ``winsor`` quantile, and
    the cap is re-computed every ``cap_every`` values: a lasting change of the tail is followed one bin
    (a factor ``10 ** (1 / bins_per_decade)``) per ``cap_every`` values, while under normal operation
    almost nothing is capped and every quantile below ``winsor`` stays exact.

    Parameters
    ----------
    fading_factor
        Weight of a new value once ``1 / fading_factor`` values are in.
    low, high
        Range of the histogram (values outside count in the first or last bin).
    bins_per_decade
        Resolution of the histogram.
    winsor
        Quantile whose bin (plus one) caps the values learned.
    warmup
        Values learned before the cap applies.
    cap_every
        Values between two re-computations of the cap.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> cal = TailCalibration()
    >>> for _ in range(5_000):
    ...     _ = cal.update(rng.expovariate(1.0))
    >>> round(cal.cdf(math.log(2)), 2), round(cal.cdf(math.log(100)), 3)  # the median, the 99th percentile
    (0.49, 0.993)
    >>> for _ in range(300):  # a lasting incident far in the tail...
    ...     _ = cal.update(1_000.0)
    >>> cal.cdf(1_000.0) > 0.999_999, round(cal.cdf(math.log(100)), 3)  # ...is not learned as normal
    (True, 0.99)

    """

    def __init__(
        self,
        fading_factor: float = 0.002,
        low: float = 1e-2,
        high: float = 1e6,
        bins_per_decade: int = 8,
        winsor: float = 0.999,
        warmup: int = 100,
        cap_every: int = 100,
        tail_from: float = 0.99,
    ) -> None:
        if not 0.0 < fading_factor < 1.0:
            raise ValueError(f"fading_factor must be in (0, 1), got {fading_factor}")
        if not 0.0 < low < high:
            raise ValueError("low and high must satisfy 0 < low < high")
        self.fading_factor = fading_factor
        self.low = low
        self.high = high
        self.bins_per_decade = bins_per_decade
        self.winsor = winsor
        self.warmup = warmup
        self.cap_every = cap_every
        self.tail_from = tail_from
        self.n = 0
        self._hist: list[float] = []
        self._mass = 0.0
        self._top = 0
        self._cap: int | None = None
        self._tail: tuple[float, float] | None = None  # (position of the winsor quantile, decades per bin)

    def _pos(self, x: float) -> float:
        top = len(self._hist) - 1e-9
        if x <= self.low:
            return 0.0
        p = (math.log10(x) - math.log10(self.low)) * self.bins_per_decade
        return p if p < top else top

    def cdf(self, x: float) -> float:
        """Weighted fraction of the learned values below `x` (0.0 before any value).

        Beyond the ``winsor`` quantile (once warmed up) the tail is extrapolated as a power law through the
        0.99 and ``winsor`` quantiles, so the far tail stays ordered instead of all being 1.0.
        """
        if self._mass <= 0.0 or not x > 0.0:
            return 0.0
        p = self._pos(x)
        tail = self._tail
        if tail is not None and p > tail[0]:
            pw, slope = tail
            decay: float = 10.0 ** (-slope * (p - pw))  # a real power of ten (typeshed allows complex)
            return 1.0 - (1.0 - self.tail_from) * decay
        b = int(p)
        if b > self._top:
            return 1.0
        h = self._hist
        c = (sum(h[:b]) + (p - b) * h[b]) / self._mass
        return 1.0 if c > 1.0 else c

    def _quantile_pos(self, q: float) -> float:
        h = self._hist
        target = q * self._mass
        acc = 0.0
        for i, v in enumerate(h):
            if acc + v >= target and v > 0.0:
                return i + (target - acc) / v
            acc += v
        return float(self._top + 1)

    def _winsor_bin(self) -> int:
        h = self._hist
        budget = (1.0 - self.winsor) * self._mass
        k = self._top
        acc = h[k]
        while acc < budget and k > 0:
            k -= 1
            acc += h[k]
        return k

    def update(self, x: float) -> bool:
        """Learn one value; False when it was not learned (beyond the cap, NaN, inf or negative)."""
        if not (math.isfinite(x) and x >= 0.0):
            return False
        h = self._hist
        if not h:
            h = self._hist = [0.0] * math.ceil(math.log10(self.high / self.low) * self.bins_per_decade)
        b = int(self._pos(x))
        n = self.n
        if n >= self.warmup:
            if self._cap is None or (n - self.warmup) % self.cap_every == 0:
                self._cap = self._winsor_bin() + 1
                # The survival falls tenfold from the q(1 - 10 s) to the q(1 - s) quantile, s = 1 - tail_from;
                # beyond q(1 - s) it is extrapolated at that rate (a power law in x).
                s_tail = 1.0 - self.tail_from
                pa, pb = self._quantile_pos(1.0 - 10.0 * s_tail), self._quantile_pos(self.tail_from)
                self._tail = (pb, 1.0 / max(pb - pa, 0.5))
            if b > self._cap:
                return False
        n = self.n = n + 1
        a = 1.0 / n
        if a < self.fading_factor:
            a = self.fading_factor
        w = 1.0 if self._mass <= 0.0 else self._mass * a / (1.0 - a)
        h[b] += w
        self._mass += w
        if b > self._top:
            self._top = b
        if self._mass > 1e100:  # keep the growing weights finite
            scale = 1.0 / self._mass
            self._hist = [v * scale for v in h]
            self._mass = 1.0
        return True


class EquipmentAnomalyScorer:
    """Streaming anomaly score of an equipment's snapshots, calibrated across sensors and series.

    Three steps, each a few float operations per sensor value:

    1. Each sensor's value becomes a z-score against its own slow robust baseline (`EWStats`).
    2. Each z is smoothed by an exponentially weighted mean (weight ``smoothing``): noise averages
       out while a level change accumulates. The smoothed z's are combined into
       ``T = mean_k(zbar_k**2) / v`` with ``v = smoothing / (2 - smoothing)`` the variance of a smoothed
       unit noise: about 1 for white noise whatever the sensors' units or count (a chi-square over its
       degrees of freedom). `statistic_one` returns it.
    3. ``T`` is calibrated against its own past (`TailCalibration`): the score is the fraction of this
       equipment's recent statistics below the current one, with no assumption on their distribution
       (real sensors are autocorrelated and heavy-tailed, so ``T`` is rarely a chi-square). The score is
       ``1 - sqrt(p)`` with ``p`` that tail probability, so a level of the score is a rarity of this
       equipment's normal: 0.9 is exceeded by 1 % of normal snapshots, 0.99 by one in 10,000, 0.999 by one
       in a million (beyond the 99th percentile the tail is extrapolated): as conservative as the per-sensor
       scores, because the anomaly rule takes the maximum of several scores (the idea of Numenta's anomaly
       likelihood, without its normal approximation).
       The first ``calibration_delay`` statistics are not learned: they come from baselines that have
       not settled yet (a std estimated from 30 values is off by ±25 %).

    Incidents do not teach the models that they are normal. A statistic beyond the calibration's cap
    (an incident in progress) is not learned by the calibration, and the baselines then learn only one
    snapshot in ``incident_learn_every``: a lasting change is still adapted to, but that many times more
    slowly, so a collective anomaly (a valve closed for minutes) keeps its score while it lasts. One sensor
    alone far off is an incident too: each smoothed z**2 also goes into a calibration pooled over the
    equipment's sensors, and one beyond that pool's cap slows the learning the same way. ``T`` averages over
    the sensors, so a flow that drops 8 sigma on an equipment whose temperature wanders (its z's large for
    hours) raises ``T`` no higher than the wandering did, and without this the flow's baseline would learn
    the drop within a minute (SKAB: the default alert's F1 0.70 to 0.71 at the same false-alarm rate). Changes of
    a sensor's normal are the drift detectors' business (`SensorDriftDetector`).

    `score_one` returns that calibrated score. `novelty_one` returns it only when ``T`` exceeds every
    ``T`` of the previous ``refractory`` snapshots (else 0.0): an incident is reported when it starts
    or gets worse, not on every snapshot while it lasts (what NAB rewards). It is 1.0 when a sensor's
    value is at a level that sensor has never visited (`LevelNovelty`, ``levels`` slices of its range):
    a z-score against a fading baseline forgets what the series did weeks ago, the visited levels do not,
    and the two together carry over between series far better than either alone (NAB, categories held
    out in turn: see ``bench/anomaly_eval.py``). `learn_one` leaves both
    scores of the snapshot it learned, computed before learning it, in `last_score` and `last_novelty`,
    so a caller that learns every snapshot does not have to score it separately.

    Like River's detectors, `score_one`, `novelty_one` and `statistic_one` only read the model;
    `learn_one` changes it. NaN and infinite values are skipped.

    Parameters
    ----------
    fading_factor
        Fading factor of the per-sensor baselines (0.002 remembers about 500 snapshots).
    smoothing
        Weight of a new z in its smoothed value (1.0: no smoothing).
    warmup
        Values a sensor's baseline learns before the sensor counts.
    calibration_fading
        Fading factor of the calibration of ``T`` (0.0005 remembers about 2,000 statistics, 5.5 hours of
        10-second polls: longer than an equipment's normal cycles short of the day, such as a tank's fill
        and haul, so the top of the last cycle is still remembered when the next one comes).
    calibration_warmup
        Values of ``T`` the calibration learns before any score is given.
    calibration_delay
        Statistics skipped by the calibration at the start (baselines settling).
    incident_learn_every
        During an incident the baselines learn one snapshot in this many (1: as usual).
    refractory
        Snapshots a novelty score must beat (0: `novelty_one` equals `score_one`).
    levels
        Slices of a sensor's range for `LevelNovelty` in `novelty_one` (0: no level novelty).
    levels_warmup
        Values a sensor's `LevelNovelty` learns before it answers.
    tolerance
        Per sensor, a factor its z-scores are divided by (an operator said its alerts were false alarms:
        `EquipmentState.apply_verdict`); missing sensors count 1.
    pooled_incidents
        Count one sensor beyond the pooled calibration of the smoothed z's as an incident (see above).
    seasonal
        Also score each sensor against its time-of-day profile (`SeasonalProfile`, needs the ``ts`` of
        `learn_one`): once it has two days of data, the smoothed z of the residual joins ``T`` as one more
        component, so a broken daily cycle counts while a normal one does not.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> det = EquipmentAnomalyScorer(refractory=10)
    >>> for _ in range(1_000):
    ...     x = {"a": rng.gauss(10.0, 1.0), "b": rng.gauss(100.0, 5.0)}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> round(det.statistic_one({"a": 10.0, "b": 100.0}), 2), round(det.statistic_one({"a": 20.0, "b": 100.0}), 2)
    (0.73, 7.71)
    >>> round(det.score_one({"a": 10.0, "b": 100.0}), 3)  # typical: about half of the past is above (1 - sqrt(0.5))
    0.301
    >>> round(det.score_one({"a": 16.0, "b": 100.0}), 3)  # one 6 sigma value, smoothed over about 10 snapshots
    0.745
    >>> det.learn_one({"a": 16.0, "b": 100.0})
    >>> round(det.last_score, 3), round(det.last_novelty, 3)  # and 16.0 is a level "a" never visited
    (0.745, 1.0)
    >>> det.novelty_one({"a": 10.0, "b": 100.0})  # not worse than the snapshot before: the same incident
    0.0
    >>> det.score_one({"a": float("nan")})
    0.0

    """

    def __init__(
        self,
        fading_factor: float = 0.002,
        smoothing: float = 0.1,
        warmup: int = 30,
        calibration_fading: float = 0.0005,
        calibration_warmup: int = 300,
        calibration_delay: int = 200,
        incident_learn_every: int = 5,
        refractory: int = 100,
        seasonal: bool = True,
        levels: int = 16,
        levels_warmup: int = 300,
        tolerance: Mapping[str, float] | None = None,
        pooled_incidents: bool = True,
    ) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        if refractory < 0:
            raise ValueError(f"refractory must be >= 0, got {refractory}")
        if incident_learn_every < 1:
            raise ValueError(f"incident_learn_every must be >= 1, got {incident_learn_every}")
        self.fading_factor = fading_factor
        self.smoothing = smoothing
        self.warmup = warmup
        self.calibration_fading = calibration_fading
        self.calibration_warmup = calibration_warmup
        self.calibration_delay = calibration_delay
        self.incident_learn_every = incident_learn_every
        self.refractory = refractory
        self.seasonal = seasonal
        self.levels = levels
        self.levels_warmup = levels_warmup
        self.tolerance = tolerance
        self.pooled_incidents = pooled_incidents
        self._pooled: TailCalibration | None = None
        self._visited: dict[str, LevelNovelty] = {}
        self._statistics_seen = 0
        self._incident_snapshots = 0
        self._profiles: dict[str, SeasonalProfile] = {}
        self._daily_from = math.inf  # no profile answers before (its first value + min_periods)
        self._baselines: dict[str, EWStats] = {}
        self._smoothed: dict[str, float] = {}
        self._calibration: TailCalibration | None = None
        self._recent: deque[float] | None = None
        self._last_t = 0.0
        self.last_score = 0.0
        self.last_novelty = 0.0

    @property
    def last_statistic(self) -> float:
        """``T`` of the last learned snapshot (what `statistic_one` returned for it before learning)."""
        return self._last_t

    def _next_smoothed(self, x: Mapping[str, float], ts: float | None = None) -> dict[str, float]:
        """The smoothed z's after `x`, without changing anything."""
        a = self.smoothing
        out = dict(self._smoothed)
        warmup = self.warmup
        baselines = self._baselines
        profiles = self._profiles if ts is not None and ts >= self._daily_from else None
        tolerance = self.tolerance or {}
        sqrt = math.sqrt
        for k, v in x.items():
            s = baselines.get(k)
            if s is None or s.n < warmup or not math.isfinite(v):
                continue
            widen = tolerance.get(k, 1.0)
            if profiles:
                p = profiles.get(k)
                if p is not None:
                    zd = p.z(v, ts)  # type: ignore[arg-type]  # ts is set: profiles is None without it
                    kd = k + "@daily"
                    if zd is not None:
                        # A new component starts from 0 and is smoothed in: entering T at full weight, the
                        # first residual of a profile made every equipment's score jump on its third day.
                        zd /= widen
                        prev = out.get(kd, 0.0)
                        out[kd] = prev + a * (zd - prev)
                    else:  # the profile stopped explaining the sensor: its last residual is no evidence now
                        out.pop(kd, None)
            m = s.mean  # s.z(v), inline: this runs once per sensor value
            sd, floor = sqrt(s.var), s.rel_min_std * abs(m) + _ABS_MIN_STD
            z = (v - m) / (sd if sd > floor else floor) / widen
            last = out.get(k)
            out[k] = z if last is None else last + a * (z - last)
        return out

    def _statistic(self, smoothed: Mapping[str, float]) -> float:
        if not smoothed:
            return 0.0
        v = self.smoothing / (2.0 - self.smoothing)
        return sum(z * z for z in smoothed.values()) / (v * len(smoothed))

    def _score(self, t: float) -> float:
        c = self._calibration
        if c is None or c.n < self.calibration_warmup:
            return 0.0
        tail = 1.0 - c.cdf(t)
        return 1.0 - math.sqrt(tail) if tail > 0.0 else 1.0

    def _learn_pooled(self, smoothed: Mapping[str, float]) -> bool:
        """Learn every smoothed z**2 into the pooled calibration; False when one was beyond its cap."""
        if not self.pooled_incidents or not smoothed:
            return True
        pooled = self._pooled
        if pooled is None:
            # K values a snapshot: the same memory and warm-up in snapshots as the calibration of T.
            k = len(smoothed)
            pooled = self._pooled = TailCalibration(self.calibration_fading / k, warmup=self.calibration_warmup * k)
        learned = True
        for z in smoothed.values():
            if not pooled.update(z * z):
                learned = False
        return learned

    def _novel(self, t: float) -> bool:
        return not (self.refractory and self._recent and t <= max(self._recent))

    def _new_level(self, x: Mapping[str, float]) -> bool:
        visited = self._visited
        if not visited:
            return False
        for k, v in x.items():
            nov = visited.get(k)
            if nov is not None and nov.score_one(v) > 0.0:
                return True
        return False

    def _learn_levels(self, x: Mapping[str, float]) -> None:
        levels = self.levels
        if not levels:
            return
        visited = self._visited
        for k, v in x.items():
            nov = visited.get(k)
            if nov is None:
                nov = visited[k] = LevelNovelty(levels, self.levels_warmup)
            nov.learn_one(v)

    def _known(self, x: Mapping[str, float]) -> bool:
        return any(k in self._baselines and math.isfinite(v) for k, v in x.items())

    def statistic_one(self, x: Mapping[str, float], ts: float | None = None) -> float:
        """The chi-square-like statistic ``T`` (about 1 when normal) after `x`, before learning it."""
        if not self._known(x):
            return 0.0
        return self._statistic(self._next_smoothed(x, ts))

    def score_one(self, x: Mapping[str, float], ts: float | None = None) -> float:
        """Calibrated anomaly score of `x` in [0, 1], before learning it (0.0 while warming up)."""
        if not self._known(x):
            return 0.0
        return self._score(self._statistic(self._next_smoothed(x, ts)))

    def novelty_one(self, x: Mapping[str, float], ts: float | None = None) -> float:
        """`score_one` when it beats the previous ``refractory`` snapshots, else 0.0; 1.0 at a new level."""
        if self._new_level(x):
            return 1.0
        if not self._known(x):
            return 0.0
        t = self._statistic(self._next_smoothed(x, ts))
        return self._score(t) if self._novel(t) else 0.0

    def learn_one(self, x: Mapping[str, float], ts: float | None = None) -> None:
        """Learn snapshot `x` (read at epoch seconds `ts`, for the daily profiles).

        Updates the smoothed z's, the calibration of ``T``, then the per-sensor baselines and profiles
        (during an incident, one snapshot in ``incident_learn_every``).
        """
        score = novelty = 0.0
        incident = False
        new_level = self._new_level(x)
        self._learn_levels(x)
        if self._known(x):
            self._smoothed = self._next_smoothed(x, ts)
            t = self._last_t = self._statistic(self._smoothed)
            score = self._score(t)
            novelty = score if self._novel(t) else 0.0
            if self.refractory:
                if self._recent is None:
                    self._recent = deque(maxlen=self.refractory)
                self._recent.append(t)
            if self._calibration is None:
                self._calibration = TailCalibration(self.calibration_fading, warmup=self.calibration_warmup)
            self._statistics_seen += 1
            if self._statistics_seen > self.calibration_delay:
                # Both learn, whichever says "beyond": neither calibration may skip a snapshot.
                beyond_t = not self._calibration.update(t)
                beyond_pool = not self._learn_pooled(self._smoothed)
                incident = beyond_t or beyond_pool
        self.last_score = score
        self.last_novelty = 1.0 if new_level else novelty
        if incident:
            self._incident_snapshots += 1
            if self._incident_snapshots % self.incident_learn_every:
                return
        baselines = self._baselines
        for k, v in x.items():
            if not math.isfinite(v):
                continue
            s = baselines.get(k)
            if s is None:
                s = baselines[k] = EWStats(self.fading_factor, 3.0, self.warmup)
            s.update(v)
            if ts is not None and self.seasonal:
                p = self._profiles.get(k)
                if p is None:
                    p = self._profiles[k] = SeasonalProfile()
                    ready = ts + p.min_periods * p.period_seconds
                    if ready < self._daily_from:
                        self._daily_from = ready
                p.learn_one(v, ts)

    @property
    def daily_from(self) -> float:
        """Epoch seconds before which no time-of-day profile answers (`seasonal_z` is None)."""
        return self._daily_from

    def seasonal_z(self, sensor: str, x: float, ts: float) -> float | None:
        """z-score of `x` against `sensor`'s time-of-day profile at epoch seconds `ts` (None until ready)."""
        if ts < self._daily_from:
            return None
        p = self._profiles.get(sensor)
        return None if p is None else p.z(x, ts)

    def rebaseline(self, sensor: str) -> None:
        """Forget one sensor's baseline and smoothed z (after a drift); it re-learns from the next values."""
        self._baselines.pop(sensor, None)
        self._profiles.pop(sensor, None)
        self._smoothed.pop(sensor, None)
