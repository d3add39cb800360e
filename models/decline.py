"""Arps decline curves: fit a well's daily rates, forecast them with a band, flag underperformance.

Arps (1945), "Analysis of Decline Curves", Trans. AIME 160: the rate of a well in boundary-dominated flow
follows ``q(t) = qi / (1 + b Di t) ** (1 / b)``, with the two limits

- exponential, ``b = 0``: ``q(t) = qi exp(-Di t)``;
- hyperbolic, ``0 < b < 1``, here bounded to ``[0.01, 0.99]`` (`B_BOUNDS`) so that it is distinct from the
  two limits and its reserves are finite (``b >= 1`` gives a cumulative production that never stops
  growing; values above 1 describe transient flow in tight rock, which this fit does not claim to model);
- harmonic, ``b = 1``: ``q(t) = qi / (1 + Di t)``.

``t`` is in days from the first producing day and ``Di`` is the nominal initial decline per day.

How a fit is made and chosen
----------------------------
Only producing days count: a day with a zero rate (below `MIN_RATE`), or with a runtime of 0 hours, is a down day
and is left out (not read as a rate of 0, which the log could not take and which says nothing about the
reservoir). Each model is fitted by least squares on the natural log of the rates (noise on rates is
multiplicative; a log fit does not let the first high days dominate), and the model with the lowest AIC
wins: ``AIC = n ln(SSE / n) + 2 k`` with ``k = 2`` parameters for exponential and harmonic, 3 for hyperbolic,
so the hyperbolic model must earn its extra parameter. Fewer than `MIN_POINTS` producing days, or a span of
less than `MIN_SPAN_DAYS`, is an `InsufficientData` answer with its reason, never a guess.

The band
--------
The band is a prediction interval of the daily rate from the residual standard deviation in log space:
``exp(ln q(t) +/- z s)`` with ``s = sqrt(SSE / (n - k))`` and ``z = 1.96`` (95 % nominal). It leaves out the
uncertainty of the parameters themselves, so far in the future it is narrower than it should be.

Underperformance
----------------
A well underperforms when, in the last `WINDOW_DAYS` days of its data, at least `MIN_DAYS_BELOW` producing
days are below the band's lower edge of a curve fitted on the days *before* that window (a curve that saw the
window would bend towards it). Down days are not counted either way: downtime is reported on its own.

>>> import numpy as np
>>> days = np.arange(0, 365)
>>> rates = 300.0 / (1 + 0.5 * 0.01 * days) ** 2    # hyperbolic, qi 300 bbl/d, Di 0.01/d, b 0.5
>>> fit = fit_decline(days, rates)
>>> fit.model, round(fit.qi, 1), round(fit.di, 4), round(fit.b, 2)
('hyperbolic', 300.0, 0.01, 0.5)
>>> round(float(fit.rate(400)), 1)
33.3
>>> fit_decline([0, 1, 2], [10.0, 9.0, 8.0]).reason
'3 producing days; at least 30 are needed'
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, minimize_scalar

__all__ = [
    "B_BOUNDS",
    "MIN_DAYS_BELOW",
    "MIN_POINTS",
    "MIN_RATE",
    "MIN_SPAN_DAYS",
    "WINDOW_DAYS",
    "Z_95",
    "DeclineFit",
    "InsufficientData",
    "MonthForecast",
    "Performance",
    "arps_rate",
    "assess",
    "fit_decline",
    "forecast_months",
    "producing",
]

Model = Literal["exponential", "hyperbolic", "harmonic"]
Floats = NDArray[np.float64]

B_BOUNDS = (0.01, 0.99)
DI_BOUNDS = (1e-6, 1.0)  # nominal decline per day: from almost flat to losing most of the rate in days
MIN_POINTS = 30
# Below a thousandth of a unit a day is a meter's noise, not a rate: a down day. (It also bounds the log rates, so
# the band's exp(z sigma) stays finite whatever the input.)
MIN_RATE = 1e-3
MIN_SPAN_DAYS = 30
WINDOW_DAYS = 30
MIN_DAYS_BELOW = 14
Z_95 = 1.96
BOE_PER_MCF = 1 / 6  # 6 mcf of gas = 1 barrel of oil equivalent (energy content, the industry convention)
MODELS: tuple[Model, ...] = ("exponential", "hyperbolic", "harmonic")
_PARAMETERS = {"exponential": 2, "harmonic": 2, "hyperbolic": 3}


def arps_rate(t: ArrayLike, qi: float, di: float, b: float) -> Floats:
    """The Arps rate at ``t`` days (``b = 0``: exponential).

    >>> arps_rate([0, 10], 100.0, 0.1, 0.0).round(2).tolist()
    [100.0, 36.79]
    >>> arps_rate([0, 10], 100.0, 0.1, 1.0).round(2).tolist()
    [100.0, 50.0]
    """
    t = np.asarray(t, dtype=np.float64)
    if b == 0:
        return np.asarray(qi * np.exp(-di * t), dtype=np.float64)
    return np.asarray(qi / np.power(1.0 + b * di * t, 1.0 / b), dtype=np.float64)


def _log_rate(t: Floats, ln_qi: float, di: float, b: float) -> Floats:
    if b == 0:
        return np.asarray(ln_qi - di * t, dtype=np.float64)
    return np.asarray(ln_qi - np.log1p(b * di * t) / b, dtype=np.float64)


@dataclass(frozen=True)
class InsufficientData:
    """No fit: ``reason`` says why (too few producing days, too short a span)."""

    reason: str
    points: int


@dataclass(frozen=True)
class DeclineFit:
    """A fitted curve: the model, its parameters, and what the fit left over.

    ``sigma`` is the residual standard deviation of the log rates; ``aic`` the criterion it won with;
    ``candidates`` each model's AIC; ``origin`` the day number of ``t = 0`` (the first producing day).
    """

    model: Model
    qi: float
    di: float
    b: float
    sigma: float
    aic: float
    points: int
    span_days: float
    candidates: dict[str, float]
    origin: float = 0.0
    reason: None = None

    def rate(self, t: ArrayLike) -> Floats:
        """The expected daily rate at ``t`` days."""
        return arps_rate(t, self.qi, self.di, self.b)

    def band(self, t: ArrayLike, z: float = Z_95) -> tuple[Floats, Floats]:
        """(low, high) of the daily rate at ``t`` days: ``exp(ln q(t) -/+ z sigma)``.

        >>> fit = DeclineFit("exponential", 100.0, 0.0, 0.0, 0.1, 0.0, 30, 29.0, {})
        >>> [round(float(x[0]), 2) for x in fit.band([0])]
        [82.2, 121.65]
        """
        q = self.rate(t)
        spread = math.exp(z * self.sigma)
        return q / spread, q * spread


def producing(days: ArrayLike, rates: ArrayLike, runtime_hours: Sequence[float | None] | None = None,
              ) -> tuple[Floats, Floats]:
    """The producing days and their rates: a rate of at least `MIN_RATE` and a runtime that is not 0 (unknown
    counts).

    >>> d, q = producing([0, 1, 2, 3], [5.0, 0.0, 4.0, 3.0], [24, 24, 0, None])
    >>> d.tolist(), q.tolist()
    ([0.0, 3.0], [5.0, 3.0])
    """
    d = np.asarray(days, dtype=np.float64)
    q = np.asarray(rates, dtype=np.float64)
    if d.shape != q.shape:
        raise ValueError(f"{d.size} days but {q.size} rates")
    keep = np.isfinite(q) & (q >= MIN_RATE)
    if runtime_hours is not None:
        if len(runtime_hours) != d.size:
            raise ValueError(f"{d.size} days but {len(runtime_hours)} runtimes")
        keep &= np.array([h is None or h > 0 for h in runtime_hours], dtype=bool)
    return d[keep], q[keep]


def fit_decline(days: ArrayLike, rates: ArrayLike, runtime_hours: Sequence[float | None] | None = None, *,
                min_points: int = MIN_POINTS, min_span_days: float = MIN_SPAN_DAYS,
                b_bounds: tuple[float, float] = B_BOUNDS) -> DeclineFit | InsufficientData:
    """Fit the three Arps models to daily rates (``days``: day numbers, any origin) and keep the best by AIC.

    The curve's ``t = 0`` is the first producing day, so ``fit.rate(day - first_producing_day)``.
    """
    d, q = producing(days, rates, runtime_hours)
    if d.size < min_points:
        return InsufficientData(f"{d.size} producing days; at least {min_points} are needed", int(d.size))
    t = d - d.min()
    span = float(t.max())
    if span < min_span_days:
        return InsufficientData(f"producing days span {span:.0f} days; at least {min_span_days:.0f} are needed",
                                int(d.size))
    y = np.log(q)
    fits: dict[str, tuple[float, float, float, float]] = {}  # model: (ln qi, di, b, sse)
    slope, intercept = np.polyfit(t, y, 1)
    di0 = float(min(max(-slope, DI_BOUNDS[0]), DI_BOUNDS[1]))
    # Exponential is a straight line in log space: the least-squares line itself (ln qi re-centred when Di
    # had to be clipped to its bounds, e.g. a rising well).
    ln_qi_exp = float(intercept) if di0 == -slope else float(np.mean(y + di0 * t))
    fits["exponential"] = (ln_qi_exp, di0, 0.0, float(np.sum((ln_qi_exp - di0 * t - y) ** 2)))
    fits["harmonic"] = _fit_harmonic(t, y)
    fits["hyperbolic"] = _fit(t, y, intercept, di0, 0.5, b_bounds)
    n = t.size
    aic = {m: n * math.log(max(sse, 1e-300) / n) + 2 * _PARAMETERS[m] for m, (_, _, _, sse) in fits.items()}
    best = min(MODELS, key=lambda m: aic[m])
    ln_qi, di, b, sse = fits[best]
    k = _PARAMETERS[best]
    sigma = math.sqrt(sse / max(n - k, 1))
    return DeclineFit(model=best, qi=math.exp(ln_qi), di=di, b=b, sigma=sigma, aic=aic[best], points=int(n),
                      span_days=span, candidates={m: round(a, 3) for m, a in aic.items()}, origin=float(d.min()))


def _fit_harmonic(t: Floats, y: Floats) -> tuple[float, float, float, float]:
    """Harmonic by a one-dimensional search: for a given Di the best ln qi is the mean of ``y + ln(1 + Di t)``,
    so only ln Di is searched (bounded Brent), which is several times cheaper than a two-parameter fit."""

    def sse(log_di: float) -> float:
        shifted = y + np.log1p(math.exp(log_di) * t)
        return float(np.sum((shifted - shifted.mean()) ** 2))

    res = minimize_scalar(sse, bounds=(math.log(DI_BOUNDS[0]), math.log(DI_BOUNDS[1])), method="bounded",
                          options={"xatol": 1e-6})
    di = math.exp(float(res.x))
    return float(np.mean(y + np.log1p(di * t))), di, 1.0, sse(float(res.x))


def _fit(t: Floats, y: Floats, ln_qi0: float, di0: float, b0: float,
         b_bounds: tuple[float, float] | None) -> tuple[float, float, float, float]:
    """Least squares on log rates: (ln qi, di, b, SSE). ``b_bounds`` None: ``b`` fixed at ``b0``."""
    lo_di, hi_di = DI_BOUNDS
    if b_bounds is None:
        def residuals2(p: Floats) -> Floats:
            return _log_rate(t, p[0], p[1], b0) - y

        def jac2(p: Floats) -> Floats:
            dd = -t if b0 == 0 else -t / (1.0 + b0 * p[1] * t)
            return np.column_stack((np.ones_like(t), dd))

        res = least_squares(residuals2, np.array([ln_qi0, di0]), jac=jac2,
                            bounds=([-np.inf, lo_di], [np.inf, hi_di]), method="trf")
        return float(res.x[0]), float(res.x[1]), b0, float(np.sum(res.fun ** 2))

    def residuals3(p: Floats) -> Floats:
        return _log_rate(t, p[0], p[1], p[2]) - y

    def jac3(p: Floats) -> Floats:
        _, di, b = p
        u = 1.0 + b * di * t
        d_di = -t / u
        d_b = np.log(u) / b ** 2 - di * t / (b * u)
        return np.column_stack((np.ones_like(t), d_di, d_b))

    res = least_squares(residuals3, np.array([ln_qi0, di0, b0]), jac=jac3,
                        bounds=([-np.inf, lo_di, b_bounds[0]], [np.inf, hi_di, b_bounds[1]]), method="trf")
    return float(res.x[0]), float(res.x[1]), float(res.x[2]), float(np.sum(res.fun ** 2))


# ---------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class MonthForecast:
    """One calendar month ahead: the mean expected daily rate and its band (the daily band, averaged), and
    the expected volume of the month's remaining days."""

    month: date
    days: int
    rate: float
    low: float
    high: float
    volume: float


def forecast_months(fit: DeclineFit, first_day: date, last_day: date, months: int, z: float = Z_95,
                    ) -> list[MonthForecast]:
    """``months`` calendar months after ``last_day`` (the last day with data; the rest of its month comes
    first when it is not the month's last day), with ``t`` counted from ``first_day`` (the first producing day).

    >>> fit = DeclineFit("exponential", 100.0, 0.0, 0.0, 0.0, 0.0, 30, 29.0, {})
    >>> [(m.month.isoformat(), m.days, m.volume) for m in forecast_months(fit, date(2026, 1, 1),
    ...                                                                   date(2026, 1, 31), 2)]
    [('2026-02-01', 28, 2800.0), ('2026-03-01', 31, 3100.0)]
    """
    out: list[MonthForecast] = []
    start = last_day + timedelta(days=1)
    for _ in range(months):
        days_in_month = calendar.monthrange(start.year, start.month)[1]
        end = date(start.year, start.month, days_in_month)
        t = np.arange((start - first_day).days, (end - first_day).days + 1, dtype=np.float64)
        q = fit.rate(t)
        low, high = fit.band(t, z)
        out.append(MonthForecast(month=start.replace(day=1), days=int(t.size), rate=float(q.mean()),
                                 low=float(low.mean()), high=float(high.mean()), volume=float(q.sum())))
        start = end + timedelta(days=1)
    return out


@dataclass(frozen=True)
class Performance:
    """A well's last `WINDOW_DAYS` days against the curve of the days before them.

    ``expected`` and ``actual`` are volumes over the window's producing days; ``days_below`` counts the
    producing days under the band's lower edge. ``fit`` is None (and ``underperforming`` False) when the days
    before the window cannot be fitted; ``reason`` then says why.
    """

    fit: DeclineFit | None
    window_start: float
    producing_days: int
    days_below: int
    actual: float
    expected: float | None
    underperforming: bool
    reason: str | None = None


def assess(days: ArrayLike, rates: ArrayLike, runtime_hours: Sequence[float | None] | None = None, *,
           window_days: int = WINDOW_DAYS, min_days_below: int = MIN_DAYS_BELOW, z: float = Z_95,
           min_points: int = MIN_POINTS) -> Performance:
    """Fit the days before the last ``window_days`` (counted back from the last day given) and count the
    window's producing days below the band; flagged at ``min_days_below`` or more.

    >>> import numpy as np
    >>> days = np.arange(0, 200)
    >>> rates = 200.0 * np.exp(-0.005 * days) * (1 + 0.02 * np.sin(days))
    >>> rates[-20:] *= 0.5                                   # the last 20 days produce half
    >>> p = assess(days, rates)
    >>> p.fit.model, p.producing_days, p.days_below, p.underperforming
    ('exponential', 30, 20, True)
    """
    d = np.asarray(days, dtype=np.float64)
    q = np.asarray(rates, dtype=np.float64)
    if d.size == 0:
        return Performance(None, 0.0, 0, 0, 0.0, None, False, "no production records")
    window_start = float(d.max()) - window_days + 1
    before = d < window_start
    runtime_before = None if runtime_hours is None else [h for h, k in zip(runtime_hours, before, strict=True) if k]
    runtime_window = None if runtime_hours is None else [h for h, k in zip(runtime_hours, before, strict=True)
                                                         if not k]
    wd, wq = producing(d[~before], q[~before], runtime_window)
    actual = float(wq.sum())
    fit = fit_decline(d[before], q[before], runtime_before, min_points=min_points)
    if isinstance(fit, InsufficientData):
        return Performance(None, window_start, int(wd.size), 0, actual, None, False,
                           f"before the last {window_days} days: {fit.reason}")
    t = wd - fit.origin
    low, _ = fit.band(t, z)
    below = int(np.sum(wq < low))
    return Performance(fit, window_start, int(wd.size), below, actual, float(fit.rate(t).sum()),
                       below >= min_days_below)
