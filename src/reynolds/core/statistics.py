"""Statistics an experiment's report rests on (pure; randomness passed in, a seeded
`random.Random` say): bootstrap intervals and the Mann–Whitney U test (scipy's)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class Draws(Protocol):
    """A source of random draws (`random.Random` is one)."""

    def random(self) -> float: ...
    def choices(self, population: Sequence[T], *, k: int) -> list[T]: ...
    def lognormvariate(self, mu: float, sigma: float) -> float: ...


ALPHA = 0.05
RESAMPLES = 2000


@dataclass(frozen=True, slots=True)
class Summary:
    """One variant's makespans: how many, their mean and median, and a 95 % interval of the
    mean (percentile bootstrap)."""

    runs: int
    mean: float
    median: float
    ci95: tuple[float, float]

    def view(self) -> dict[str, object]:
        return {
            "mean": round(self.mean, 4),
            "median": round(self.median, 4),
            "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)],
        }


def summarise(values: Sequence[float], rng: Draws) -> Summary:
    if not values:
        raise ValueError("no values to summarise")
    return Summary(
        len(values),
        statistics.fmean(values),
        statistics.median(values),
        bootstrap(values, rng),
    )


def bootstrap(values: Sequence[float], rng: Draws) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of the mean of `values`."""
    n = len(values)
    if n == 1:
        return (values[0], values[0])
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(RESAMPLES))
    return (means[int(0.025 * RESAMPLES)], means[int(0.975 * RESAMPLES) - 1])


def ratio_interval(
    base: Sequence[float], other: Sequence[float], rng: Draws
) -> tuple[float, float, float]:
    """mean(base) / mean(other) (the speed-up of `other` over `base`), with a 95 %
    bootstrap interval, each side resampled on its own."""
    point = statistics.fmean(base) / statistics.fmean(other)
    ratios = sorted(
        statistics.fmean(rng.choices(base, k=len(base)))
        / statistics.fmean(rng.choices(other, k=len(other)))
        for _ in range(RESAMPLES)
    )
    return point, ratios[int(0.025 * RESAMPLES)], ratios[int(0.975 * RESAMPLES) - 1]


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sided Mann–Whitney U p-value; 1.0 when the two samples are the same values (no
    difference to test)."""
    if sorted(a) == sorted(b) or len(set(a) | set(b)) == 1:
        return 1.0
    from scipy.stats import mannwhitneyu  # imported when a report is made: it is slow to load

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
