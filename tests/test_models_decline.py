"""Arps decline fits (models/decline.py) on synthetic wells with a fixed seed.

Tolerances, stated once: with 2 years of daily rates and multiplicative noise of 5 % (log-normal, sigma 0.05),
``qi`` within 5 %, ``Di`` within 10 % and (hyperbolic) ``b`` within 0.1 of the truth, and the right model chosen.
The 95 % band must hold 88 % to 99 % of 180 held-out days (it ignores parameter uncertainty, so a little
under nominal is expected, far under is a bug).
"""

import numpy as np
import pytest

from models.decline import (
    DeclineFit,
    InsufficientData,
    arps_rate,
    assess,
    fit_decline,
    forecast_months,
)

pytestmark = pytest.mark.fast

SEED = 17
NOISE = 0.05
QI, DI = 500.0, 0.01
CASES = [("exponential", 0.0), ("hyperbolic", 0.5), ("harmonic", 1.0)]


def synthetic(b: float, days: int = 730, seed: int = SEED, di: float = DI) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(days, dtype=float)
    return t, arps_rate(t, QI, di, b) * np.exp(rng.normal(0.0, NOISE, days))


@pytest.mark.parametrize(("model", "b"), CASES)
def test_fit_recovers_the_parameters(model: str, b: float) -> None:
    t, q = synthetic(b)
    fit = fit_decline(t, q)
    assert isinstance(fit, DeclineFit)
    assert fit.model == model, fit.candidates
    assert fit.qi == pytest.approx(QI, rel=0.05)
    assert fit.di == pytest.approx(DI, rel=0.10)
    assert fit.b == pytest.approx(b, abs=0.1)
    assert fit.sigma == pytest.approx(NOISE, rel=0.15)


@pytest.mark.parametrize(("model", "b"), CASES)
def test_band_holds_held_out_days_at_about_the_nominal_rate(model: str, b: float) -> None:
    t, q = synthetic(b, days=725)
    fit = fit_decline(t[:545], q[:545])
    assert isinstance(fit, DeclineFit)
    low, high = fit.band(t[545:])
    inside = float(np.mean((q[545:] >= low) & (q[545:] <= high)))
    assert 0.88 <= inside <= 0.99, inside


def test_down_days_are_left_out_not_read_as_zero() -> None:
    t, q = synthetic(0.5)
    runtime: list[float | None] = [24.0] * t.size
    shut_in = q.copy()
    for day in range(100, 130):  # a month shut in: rate 0 and runtime 0
        shut_in[day] = 0.0
        runtime[day] = 0.0
    q_down = q.copy()
    q_down[200:210] = 1.0  # ten days of 1 bbl that ran 0 hours: a meter artefact, dropped by the runtime
    for day in range(200, 210):
        runtime[day] = 0.0
    shut_in[200:210] = q_down[200:210]
    with_downtime = fit_decline(t, shut_in, runtime)
    without = fit_decline(np.delete(t, list(range(100, 130)) + list(range(200, 210))),
                          np.delete(q, list(range(100, 130)) + list(range(200, 210))))
    assert isinstance(with_downtime, DeclineFit) and isinstance(without, DeclineFit)
    assert with_downtime.points == t.size - 40
    assert (with_downtime.qi, with_downtime.di, with_downtime.b) == pytest.approx((without.qi, without.di, without.b))


def test_too_few_days_is_a_reason_not_a_fit() -> None:
    t, q = synthetic(0.0, days=29)
    result = fit_decline(t, q)
    assert isinstance(result, InsufficientData)
    assert result.reason == "29 producing days; at least 30 are needed"
    short = fit_decline(np.arange(40) / 4, np.full(40, 10.0))  # 40 readings within 10 days
    assert isinstance(short, InsufficientData) and "span 10 days" in short.reason


def test_an_underperforming_well_is_flagged_and_a_healthy_one_is_not() -> None:
    t, q = synthetic(0.5, days=400)
    healthy = assess(t, q)
    assert healthy.fit is not None and not healthy.underperforming and healthy.days_below <= 3
    assert healthy.actual == pytest.approx(healthy.expected, rel=0.05)
    q_bad = q.copy()
    q_bad[-16:] *= 0.6  # the last 16 days lose 40 %: far below a 10 % (1.96 sigma) lower edge
    bad = assess(t, q_bad)
    assert bad.underperforming and bad.days_below >= 14
    assert bad.actual < 0.85 * (bad.expected or 0)
    too_short = assess(t[:50], q[:50])
    assert too_short.fit is None and not too_short.underperforming and "before the last 30 days" in too_short.reason


def test_monthly_forecast_volumes_follow_the_curve() -> None:
    from datetime import date
    fit = fit_decline(*synthetic(0.0))
    assert isinstance(fit, DeclineFit)
    months = forecast_months(fit, date(2025, 1, 1), date(2026, 12, 31), 3)
    assert [m.month for m in months] == [date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)]
    assert [m.days for m in months] == [31, 28, 31]
    # January 2027 is t = 730..760 days after 2025-01-01: sum of qi exp(-Di t)
    jan = sum(fit.qi * np.exp(-fit.di * t) for t in range(730, 761))
    assert months[0].volume == pytest.approx(jan)
    assert all(m.low < m.rate < m.high for m in months)
    assert months[0].rate > months[1].rate > months[2].rate
