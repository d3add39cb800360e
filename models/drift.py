"""Concept drift per sensor: `LevelDriftDetector` (a CUSUM of the residual from the sensor's time-of-day profile, what
the equipment runs) and `SensorDriftDetector` (the Page-Hinkley test on a clipped z-score).

A drift is a lasting change of a sensor's normal (a new set point, a recalibrated gauge, a slow wear
trend), not a spike: the test sees each z-score clipped to ``± clip``, so a single outlier moves its
cumulative sum by at most ``clip - delta``. When a drift is detected the caller re-baselines the sensor's
anomaly models, so the new normal is learned instead of alerted on for ever.

"""

from __future__ import annotations

import math

from models.detectors import interpolate_profile

__all__ = ["LevelDriftDetector", "SensorDriftDetector"]


class SensorDriftDetector:
    """Page-Hinkley change detection on one sensor's z-score (both directions).

    No longer run by `EquipmentState` (`LevelDriftDetector` replaced it in model schema 4); it stays so that
    checkpoints written before unpickle, and their drift detectors are then dropped and re-learned.

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

    # The test's running sums, set by `reset` (declared here for the type checker; no class attributes).
    _n: int
    _mean: float
    _sum_increase: float
    _sum_decrease: float
    _min_increase: float
    _max_decrease: float

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
    """Drift of one sensor's level against its normal *for the time of day*, in σ of its normal variation.

    A drift is a lasting change of a sensor's level (a recalibrated gauge, a slow wear trend), not a daily
    cycle, a separator's dump cycle or a spike. Two regimes:

    **Time of day (once ``profile_ready_periods`` days of history are there, two by default).** A profile of the
    sensor's expected value by time of day (``buckets`` slots a period, each an exponentially weighted mean
    with a memory of ``profile_periods`` periods, read by linear interpolation between slot centres) gives
    the residual ``r = x - expected(t)``; its level ``L``, an exponentially weighted mean over
    ``smoothing_seconds`` of reading time, averages the noise and the fast cycles out. ``u = L / σ`` (σ: the
    sensor's normal variation, daily cycle included; see below) feeds a two-sided CUSUM in **σ-seconds**:
    ``S+ = max(0, S+ + (u - a) dt)`` and likewise downwards, and a drift is signalled when a sum passes
    ``threshold``. The allowance ``a`` is the larger of

    - ``allowance`` (in σ of the sensor): a change smaller than that is not a drift, however significant
      (the bar: nothing on a change under 1 σ), and
    - ``significance`` times σ_L, the normal variation of the residual level itself (learned from the day
      the profile first answers): a sensor whose residual wanders (a tank that fills over hours on no daily
      schedule) needs a larger level to tell a drift from its normal.

    With the defaults a lasting 3 σ level is signalled about 25 minutes after it is reached, a ramp to 3 σ
    over an hour about 70 minutes after it starts. The profile learns each value winsorised at the
    allowance, only while the residual level is within ``quiet`` σ (ten times slower, ``unquiet_rate``,
    while it is beyond without evidence: a new normal under the allowance is learned, slowly), and not at
    all while a sum holds evidence, so a drift in progress does not become its own normal.

    **Before that (conservative).** The reference is the sensor's mean over ``reference_seconds``; each
    value's distance ``d = (x - mean) / σ`` (clipped to ``± clip``) feeds the same CUSUM with the larger
    ``early_allowance`` (and ``early_threshold``), and a drift is signalled only when the slow level
    (``level_seconds``) is also beyond every slow level of the reference period before the last
    ``recent_seconds`` (``novelty_margin`` σ beyond): the top of a daily or a fill cycle was visited
    yesterday, a sensor that lost its calibration goes where it has never been. Only large, new levels are
    drifts then. Nothing is signalled before ``warmup_seconds`` of reading time and ``min_instances`` values.

    σ, the sensor's normal variation (`std`), is an exponentially weighted standard deviation over
    ``reference_seconds`` (weights follow the time between readings, so the answer does not depend on the
    polling rate), cycles included: a sine spans ± 1.41 σ, a sawtooth ± 1.73 σ. It learns each value
    winsorised at ``winsor`` σ.

    After a drift, or when the caller re-baselines (an operating change), the sensor settles for
    ``settle_seconds``: nothing is signalled, the residuals are averaged, and the profile then moves by that
    average (the daily shape is kept, the level is new); σ keeps its memory (a level change is not a change of
    variability). The detector also keeps the level of the last few minutes (`step`): how much of a change
    happened within ``step_seconds``, in σ. The equipment uses it to tell an operator's set-point change
    (abrupt, and seen on other sensors at the same time) from a drift.

    Parameters
    ----------
    reference_seconds
        Memory of σ and of the early reference (reading time).
    allowance
        Smallest residual level (σ of the sensor) that accumulates evidence once the profile is ready.
    threshold
        Evidence (σ-seconds beyond the allowance) that signals a drift.
    clip
        Distances are clipped to ``± clip`` σ.
    warmup_seconds
        Reading time before a drift can be signalled (and after a re-baseline, before the profile is ready).
    min_instances
        Values before a drift can be signalled (idem).
    max_gap_seconds
        A longer gap between readings counts as this long.
    step_seconds
        Span within which a change counts as a step (see `step`).
    level_seconds
        Memory of the slow level the early novelty gate compares (and the width of its buckets).
    recent_seconds
        The latest stretch of level history that the early novelty gate leaves out (where a drift starts).
    novelty_margin
        How far (σ) beyond the levels seen before a level must be to be new, before the profile is ready.
    early_allowance
        The allowance (σ) before the profile is ready.
    early_threshold
        The threshold (σ-seconds) before the profile is ready.
    period_seconds
        Length of the cycle the profile follows (a day).
    buckets
        Slots of the profile per period.
    profile_periods
        Memory of each slot, in periods.
    profile_ready_periods
        Periods of history before drift is measured against the profile.
    smoothing_seconds
        Time constant of the residual level ``L``.
    significance
        The allowance is at least this many σ_L (the residual level's normal variation).
    settle_seconds
        After a re-baseline, time over which the new level is measured (nothing signalled meanwhile).
    winsor
        σ and the mean learn each value winsorised at this many σ (after ``min_instances`` values).
    quiet
        Once the profile is ready, the profile and σ learn only while the residual level is within this many
        σ and no evidence accumulates (σ_L while no evidence accumulates).
    unquiet_rate
        The profile's learning rate, relative, while the residual level is beyond ``quiet`` σ without evidence.

    Examples
    --------
    A sensor with a daily cycle (± 10) and noise, read every minute for three days: no drift (before the
    profile is ready the early test sees the cycle's top as a level visited before). Then a calibration
    shift of 3 σ (σ about 7.1): signalled 27 minutes later, upwards. A shift of 0.8 σ is not signalled.

    >>> import copy, math, random
    >>> rng = random.Random(1)
    >>> def value(t: float) -> float:
    ...     return 50.0 + 10.0 * math.sin(2 * math.pi * t / 86_400) + rng.gauss(0.0, 1.5)
    >>> det = LevelDriftDetector()
    >>> any(det.update(value(t), t) for t in range(0, 3 * 86_400, 60))
    False
    >>> round(det.std, 1), det.profile_ready()
    (7.1, True)
    >>> quiet = copy.deepcopy(det)
    >>> next(t for t in range(0, 7_200, 60) if det.update(value(259_200 + t) + 3 * 7.1, 259_200.0 + t))
    1620
    >>> det.drifts, det.direction
    (1, 'up')
    >>> any(quiet.update(value(259_200 + t) + 0.8 * 7.1, 259_200.0 + t) for t in range(0, 86_400, 60))
    False

    References
    ----------
    [^1]: Page, E. S., 1954. Continuous inspection schemes. Biometrika 41, 100-115.
    [^2]: Montgomery, D. C., 2009. Introduction to Statistical Quality Control, 6th ed., ch. 9 (CUSUM).
    [^3]: Cleveland, R. B. et al., 1990. STL: a seasonal-trend decomposition procedure based on loess. Journal of
        Official Statistics 6, 3-73 (the residual of a seasonal profile as the series to monitor).

    """

    # Class defaults, so a checkpoint written before these existed loads (no drift left a normal behind then).
    returned = False
    _offset = 0.0
    _offset_since: float | None = None
    _accepting = False

    def __init__(
        self,
        reference_seconds: float = 86_400.0,
        allowance: float = 1.75,
        threshold: float = 500.0,
        clip: float = 5.0,
        warmup_seconds: float = 1_200.0,
        min_instances: int = 100,
        max_gap_seconds: float = 60.0,
        step_seconds: float = 600.0,
        level_seconds: float = 900.0,
        recent_seconds: float = 7_200.0,
        novelty_margin: float = 0.5,
        early_allowance: float = 2.25,
        early_threshold: float = 400.0,
        period_seconds: float = 86_400.0,
        buckets: int = 24,
        profile_periods: float = 3.0,
        profile_ready_periods: float = 2.0,
        smoothing_seconds: float = 750.0,
        significance: float = 3.5,
        settle_seconds: float = 1_800.0,
        winsor: float = 2.5,
        quiet: float = 1.0,
        unquiet_rate: float = 0.1,
    ) -> None:
        if reference_seconds <= 0 or threshold <= 0 or clip <= 0 or allowance < 0 or step_seconds <= 0:
            raise ValueError("reference_seconds, threshold, clip and step_seconds must be > 0, allowance >= 0")
        if period_seconds <= 0 or buckets < 2 or profile_periods <= 0 or smoothing_seconds <= 0:
            raise ValueError("period_seconds, profile_periods and smoothing_seconds must be > 0, buckets >= 2")
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
        self.early_allowance = early_allowance
        self.early_threshold = early_threshold
        self.period_seconds = period_seconds
        self.buckets = buckets
        self.profile_periods = profile_periods
        self.profile_ready_periods = profile_ready_periods
        self.smoothing_seconds = smoothing_seconds
        self.significance = significance
        self.settle_seconds = settle_seconds
        self.winsor = winsor
        self.quiet = quiet
        self.unquiet_rate = unquiet_rate
        self._init_working_state()

    def _init_working_state(self) -> None:
        """What the detector learns (a new detector has learned nothing)."""
        self.drifts = 0
        self.direction: str | None = None
        self.n = 0
        self.mean = 0.0
        self.var = 0.0
        self.last_d = 0.0
        self.drift_step = 0.0  # `step` when the last drift was signalled (before re-baselining)
        self.drift_ts: float | None = None  # when it was signalled
        self.residual_level: float | None = None  # L: None until every slot of the profile has a value
        self.residual_var = 0.0  # σ_L², the residual level's normal variation
        self._first: float | None = None
        self._origin: float | None = None  # first reading ever (the profile's age)
        self._seen = 0  # values since the (re)start
        self._last: float | None = None
        self._up = 0.0
        self._down = 0.0
        self._fast: float | None = None
        self._history: list[tuple[float, float]] = []
        self._slow: float | None = None
        self._ranges: list[list[float]] = []  # [bucket start, lowest, highest] of the slow level
        self._slots: list[float] = []  # the profile: EW mean per slot ...
        self._counts: list[int] = []  # ... and values it has seen
        self._residual_n = 0
        self._settle_until: float | None = None  # re-levelling after a re-baseline until then ...
        self._settle_sum = 0.0  # ... from the residuals seen meanwhile
        self._settle_n = 0
        self._quiet = True  # whether the last value was normal for its time of day (profile ready)
        self.returned = False  # whether the last drift signalled went back to the normal an earlier one left
        self._offset = 0.0  # how far drifts have moved the profile from the normal they left (sensor units) ...
        self._offset_since: float | None = None  # ... since this reading time
        self._accepting = False  # the next re-levelling takes its level as the normal (no offset kept)

    @property
    def std(self) -> float:
        """σ of the sensor's normal variation (never below a millionth of the mean's size, nor 1e-9)."""
        return max(math.sqrt(self.var), 1e-6 * abs(self.mean), 1e-9)

    @property
    def evidence(self) -> float:
        """The larger CUSUM sum, as a share of the threshold (1.0: a drift is signalled)."""
        return max(self._up, self._down) / self.threshold

    def ready(self) -> bool:
        """Whether the early test can signal a drift (its warm-up, or a re-baseline's, is over)."""
        return (
            self._first is not None
            and self._seen >= self.min_instances
            and self._last is not None
            and self._last - self._first >= self.warmup_seconds
        )

    def profile_ready(self) -> bool:
        """Whether drift is measured against the time-of-day profile (enough history, every slot seen)."""
        return (
            self.residual_level is not None
            and self._origin is not None
            and self._last is not None
            and self._last - self._origin >= self.profile_ready_periods * self.period_seconds
        )

    def expected(self, ts: float) -> float | None:
        """The profile's value at epoch seconds `ts` (None until every slot has a value)."""
        if self.residual_level is None and not (self._counts and all(self._counts)):
            return None
        return interpolate_profile(self._slots.__getitem__, self.buckets, ts, self.period_seconds)

    def update(self, x: float, ts: float, tolerance: float = 1.0) -> bool:
        """Learn value `x` read at epoch seconds `ts`; True when a drift is signalled (`direction` says which).

        ``tolerance`` widens σ for the test (an operator said earlier alerts were false alarms). A value not
        newer than the last one (a late reading) or not finite is ignored.
        """
        if not math.isfinite(x) or not math.isfinite(ts) or (self._last is not None and ts <= self._last):
            return False
        if self._first is None:
            self._first = ts
        if self._origin is None:
            self._origin = ts
        dt = 0.0 if self._last is None else min(ts - self._last, self.max_gap_seconds)
        self._last = ts
        self._seen += 1
        self._track_step(x, ts, dt)
        if self.profile_ready():
            drifted = self._test_profile(x, ts, dt, tolerance)
        else:
            drifted = self._test_level(x, dt, tolerance)
            self._learn_profile(x, ts, dt)
        if self.n >= self.min_instances:  # winsorised: a drift or a spike barely moves σ
            limit = self.winsor * self.std
            x = self.mean + limit if x > self.mean + limit else self.mean - limit if x < self.mean - limit else x
        if self._quiet or not self.profile_ready():
            self._learn(x, dt)
        if drifted:
            self.drifts += 1
            self.drift_step = self.step()
            self.drift_ts = ts
            self.returned = self._returns(ts, tolerance)
            self.rebaseline(self._fast if self._fast is not None else x)
            self._accepting = self.returned
        return drifted

    def _test_level(self, x: float, dt: float, tolerance: float) -> bool:
        """The early test (before the profile is ready): distance from the mean, gated by novelty."""
        if not self.ready():
            return False
        d = (x - self.mean) / (self.std * tolerance)
        d = self.clip if d > self.clip else -self.clip if d < -self.clip else d
        self.last_d = d
        a, h = self.early_allowance, self.early_threshold
        self._up = max(0.0, self._up + (d - a) * dt)
        self._down = max(0.0, self._down + (-d - a) * dt)
        up, down = self._up > h, self._down > h
        if (up and self._novel(True)) or (down and self._novel(False)):
            self.direction = "up" if self._up > self._down else "down"
            return True
        return False

    def _test_profile(self, x: float, ts: float, dt: float, tolerance: float) -> bool:
        """The time-of-day test: the residual level's CUSUM; the profile and σ_L learn when it is quiet."""
        expected = self.expected(ts)
        assert expected is not None  # noqa: S101  profile_ready() says every slot has a value
        r = x - expected
        if self._settle_until is not None:  # re-levelling after a re-baseline: measure, do not test
            self._settle_sum += r
            self._settle_n += 1
            if ts >= self._settle_until:
                self._relevel()
            return False
        level = self._smooth(r, dt)
        std = self.std
        u = level / (std * tolerance)
        u = self.clip if u > self.clip else -self.clip if u < -self.clip else u
        self.last_d = u
        a = self._allowance()
        self._up = max(0.0, self._up + (u - a) * dt)
        self._down = max(0.0, self._down + (-u - a) * dt)
        # A level beyond ``quiet`` σ, or evidence accumulating, may be a drift starting: the profile, σ_L and σ
        # do not learn it (else a drift in progress would become its own normal and detection would lag).
        # A level that stays out of that band without becoming a drift is a new normal, learned ten times slower.
        evidence = self._up > 0.0 or self._down > 0.0
        self._quiet = abs(u) < self.quiet and not evidence
        if not evidence:
            self._learn_residual(level, dt)
            self._learn_profile(x, ts, dt, expected=expected, rate=1.0 if self._quiet else self.unquiet_rate)
        if self._up > self.threshold or self._down > self.threshold:
            self.direction = "up" if self._up > self._down else "down"
            return True
        return False

    def _allowance(self) -> float:
        """The allowance in σ: `allowance`, or more for a sensor whose residual level wanders (σ_L)."""
        return max(self.allowance, self.significance * math.sqrt(self.residual_var) / self.std)

    def _returns(self, ts: float, tolerance: float) -> bool:
        """Whether the drift signalled at `ts` takes the sensor back to the normal that earlier drifts left.

        Each drift moves the profile to the level it settles at; the moves since the last accepted normal
        add up to `_offset`. A move the other way, to a one-minute level within the allowance of that normal,
        is a recovery (a worn part replaced, a fault gone), not a new abnormal condition. After a day the
        drifted level is the normal, and a move back is a drift again.
        """
        since = self._offset_since
        if not self._offset or since is None or ts - since > self.reference_seconds or not self.profile_ready():
            return False
        expected, fast = self.expected(ts), self._fast
        if expected is None or fast is None:
            return False
        r = fast - expected
        if r * self._offset >= 0.0:
            return False
        return abs(r + self._offset) <= self._allowance() * self.std * tolerance

    def accept_level(self) -> None:
        """The level the sensor settles at after the current re-baseline is its normal (an operating change):
        a later drift back from it is a drift, not a return."""
        self._accepting = True

    def _smooth(self, r: float, dt: float) -> float:
        level = self.residual_level
        level = r if level is None else level + (-math.expm1(-dt / self.smoothing_seconds)) * (r - level)
        self.residual_level = level
        return level

    def _learn_residual(self, level: float, dt: float) -> None:
        """σ_L²: mean square of the residual level (around 0, the profile's own level), winsorised at the
        allowance, a plain mean while young, then exponentially weighted over ``reference_seconds``."""
        cap = self.allowance * self.std
        sq = min(level * level, cap * cap)
        self._residual_n += 1
        a = max(1.0 / self._residual_n, -math.expm1(-dt / (self.profile_periods * self.period_seconds)))
        self.residual_var += a * (sq - self.residual_var)

    def _learn_profile(self, x: float, ts: float, dt: float, *, expected: float | None = None,
                       rate: float = 1.0) -> None:
        """Learn `x` into its slot (winsorised at the allowance around the profile once it answers, with its
        weight times `rate`); start the residual level once every slot has a value."""
        b = self.buckets
        if not self._counts:
            self._slots = [0.0] * b
            self._counts = [0] * b
        if expected is None and all(self._counts):
            expected = self.expected(ts)
        if expected is not None:
            limit = self.allowance * self.std
            r = x - expected
            if self.residual_level is None:
                self._smooth(r, dt)
            elif not self.profile_ready():
                self._learn_residual(self._smooth(r, dt), dt)
            x = expected + (limit if r > limit else -limit if r < -limit else r)
        width = self.period_seconds / b
        i = int(ts // width) % b
        n = self._counts[i] = self._counts[i] + 1
        a = max(1.0 / n, rate * dt / (width * self.profile_periods))
        m = self._slots[i]
        self._slots[i] = x if n == 1 else m + min(a, 1.0) * (x - m)

    def _relevel(self) -> None:
        """End of a settling: the profile moves by the mean residual seen meanwhile, the evidence restarts."""
        shift = self._settle_sum / self._settle_n if self._settle_n else 0.0
        self._slots = [m + shift for m in self._slots]
        if self._accepting:
            self._offset, self._offset_since, self._accepting = 0.0, None, False
        else:
            if not self._offset:
                self._offset_since = self._last
            self._offset += shift
        self._settle_until = None
        self._settle_sum, self._settle_n = 0.0, 0
        self.residual_level = 0.0
        self._up = self._down = 0.0

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

    def rebaseline(self, level: float | None = None) -> None:
        """Take a new normal level and restart the evidence.

        Once the profile is ready, the sensor settles for ``settle_seconds``: nothing is signalled, and the
        profile then moves by the mean residual of that time (a level measured over minutes, not one reading).
        Before, the early reference's mean (and the profile being learned, by as much) moves to `level`
        (default: the last minute's) and nothing is signalled for another ``warmup_seconds``. σ keeps its
        memory (a level change is not a change of variability): should the "drift" have been a cycle longer
        than the reference has seen, σ, measured around a mean that was off, grows, and the detector learns
        that the normal swing is wider.
        """
        if level is None:
            level = self._fast
        if level is not None:
            if self._counts and self._last is not None and not self.profile_ready():
                # The profile being learned moves with the level: else the slots learned before the change
                # would hold the old level when it first answers, and read the new normal as a drift. By how
                # much: against what the profile holds for this time of day (the mean would count where the
                # daily cycle stands now as part of the change).
                i = int(self._last // (self.period_seconds / self.buckets)) % self.buckets
                shift = level - (self._slots[i] if self._counts[i] else self.mean)
                self._slots = [m + shift for m in self._slots]
            self.mean = level
        self._seen = 0
        self._first = self._last
        self._up = self._down = 0.0
        self._history = [(self._last, self._fast)] if self._last is not None and self._fast is not None else []
        if self.profile_ready() and self._last is not None:
            self._settle_until = self._last + self.settle_seconds
            self._settle_sum, self._settle_n = 0.0, 0
