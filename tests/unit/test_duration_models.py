"""How a subtask's time is modelled for a simulation: history's quantiles when it has enough
recent durations, else a log-normal with its mean and spread."""

from __future__ import annotations

import random
import statistics

import pytest

from reynolds.core.experiments import MIN_QUANTILE_SAMPLES, DurationModel


def draws(model: DurationModel, n: int = 2000) -> list[float]:
    rng = random.Random(7)
    return [model.sample(rng).duration_s for _ in range(n)]


def test_a_two_humped_history_stays_two_humped() -> None:
    recent = [1.0] * 10 + [10.0] * 10  # fast from cache, slow when cold
    mean, sd = statistics.fmean(recent), statistics.stdev(recent)
    m2 = sd**2 * (len(recent) - 1)
    model = DurationModel.learned(len(recent), 0, mean, m2, recent)
    assert model.view()["quantiles"] == {"p10": 1.0, "p50": 5.5, "p90": 10.0}
    drawn = draws(model)
    # Between the humps only the interpolation between the two middle order statistics (one
    # draw in nineteen); the log-normal with the same mean and spread puts most draws there.
    middle = sum(1 for d in drawn if 2.0 < d < 9.0) / len(drawn)
    assert middle < 0.08
    smooth = DurationModel(mean, sd, source="history")
    assert sum(1 for d in draws(smooth) if 2.0 < d < 9.0) / 2000 > 0.4
    assert min(drawn) == 1.0 and max(drawn) == 10.0


def test_the_quantile_function_is_linear_between_order_statistics() -> None:
    model = DurationModel.learned(8, 0, 4.5, 42.0, [8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert model.recent == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    assert model.quantile(0.0) == 1.0 and model.quantile(1.0) == 8.0
    assert model.quantile(0.5) == pytest.approx(4.5)


def test_too_few_recent_durations_fall_back_to_the_log_normal() -> None:
    few = [0.5, 1.0, 1.5][: MIN_QUANTILE_SAMPLES - 1]
    model = DurationModel.learned(3, 0, 1.0, 0.5, few)
    assert model.recent == () and "quantiles" not in model.view()
    drawn = draws(model)
    assert statistics.fmean(drawn) == pytest.approx(1.0, rel=0.05)
    assert len(set(drawn)) == len(drawn)  # continuous, not three values
