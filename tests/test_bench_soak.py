"""bench.soak's verdict on memory: flat after the warm-up, or growing."""

import pytest

from bench.soak import MIB, flatness

pytestmark = pytest.mark.fast


def test_a_level_series_is_flat_and_the_warm_up_is_not_judged() -> None:
    climb_then_level = [(t, (1000 + min(t, 300)) * MIB) for t in range(0, 1800, 10)]
    flat = flatness(climb_then_level, warmup_s=300)
    assert flat["growth"] == 0.0 and flat["slope_mib_per_h"] == 0.0 and flat["samples"] == 150


def test_a_leak_shows_as_growth_and_slope() -> None:
    leak = [(t, (1000 + t / 10) * MIB) for t in range(0, 1800, 10)]  # 360 MiB an hour
    flat = flatness(leak, warmup_s=300)
    assert flat["growth"] > 0.05 and flat["slope_mib_per_h"] == pytest.approx(360, rel=0.01)


def test_too_few_samples_give_no_verdict() -> None:
    assert flatness([(t, MIB) for t in range(0, 100, 10)], warmup_s=60)["growth"] is None
