"""Experiments (pure): the scenario a caller asks for, how each subtask's time is modelled, and
the report's statistics — which variant is faster, by how much, and whether that is more than
chance."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reynolds.core import statistics as stats
from reynolds.core.downstreams import Overload
from reynolds.core.models import Approach, InputModel, Selection, Strategy, TaskSpec, WireModel
from reynolds.core.planning import effective_concurrency
from reynolds.core.simulator import Attempt, Outcome, SimulatedRun

DEFAULT_REPETITIONS = {"simulate": 30, "execute": 5}
InjectedClass = Literal[
    "timeout", "connection", "authentication", "not_found", "validation", "permission",
    "resource", "unknown", "overload",
]  # fmt: skip
MAX_VARIANTS = 10
GANTT_MAX = 500  # bars in a variant's Gantt chart
# Recent durations from which a learned model draws quantiles; fewer: a log-normal.
MIN_QUANTILE_SAMPLES = 8


class Variant(WireModel):
    """One strategy to try: the contract's `{name, approach, maxConcurrency}`, and what else a
    what-if may change: the pool selection, replicas per pool, retries of every subtask, the
    chance that an attempt fails and how it fails (`failureClass`: a class of core/failures.py,
    or `overload`, the downstream answering "not now" — what breakers and adaptive limits
    answer)."""

    name: str = Field(min_length=1, max_length=100)
    approach: Approach = "parallel_optimized"
    max_concurrency: int = Field(5, ge=1, le=1024)
    selection: Selection = "least_busy"
    replicas: dict[str, int] | None = None
    retries: int | None = Field(None, ge=0, le=20)
    failure_rate: float | None = Field(None, ge=0, le=1)
    failure_class: InjectedClass | None = None

    @field_validator("replicas")
    @classmethod
    def _counts(cls, replicas: dict[str, int] | None) -> dict[str, int] | None:
        for pool, count in (replicas or {}).items():
            if not 0 <= count <= 1000:
                raise ValueError(f"replicas of {pool!r} must be 0 to 1000")
        return replicas

    def strategy(self) -> Strategy:
        return Strategy(
            approach=self.approach, max_concurrency=self.max_concurrency, selection=self.selection
        )


class Scenario(InputModel):
    """What `run_experiment` compares: one task under each strategy, `repetitions` times —
    `task` as given, or with `replay` a recorded task, its subtasks taking the times and
    outcomes they took then."""

    name: str = Field(min_length=1, max_length=200)
    task: TaskSpec | None = None
    replay: str | None = Field(None, min_length=1, max_length=64)
    strategies: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)
    repetitions: int | None = Field(None, ge=1, le=1000)
    mode: Literal["simulate", "execute"] = "simulate"
    # Simulate mode: the same seed gives the same report.
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    @field_validator("strategies")
    @classmethod
    def _unique(cls, strategies: list[Variant]) -> list[Variant]:
        names = [s.name for s in strategies]
        if len(set(names)) != len(names):
            raise ValueError("strategy names must be unique")
        return strategies

    @model_validator(mode="after")
    def _one_source(self) -> Scenario:
        if (self.task is None) == (self.replay is None):
            raise ValueError("give either task or replay (a recorded task's id), not both")
        if self.replay is not None and self.mode == "execute":
            raise ValueError("replay is a simulation of a recorded run: mode must be simulate")
        return self

    @property
    def runs(self) -> int:
        return self.repetitions or DEFAULT_REPETITIONS[self.mode]


@dataclass(frozen=True, slots=True)
class Failing:
    """A variant's injected failures: each attempt fails with chance `rate` (None: as the
    model has it), the way `failure_class` says (None: a command exiting non-zero)."""

    rate: float | None = None
    failure_class: str | None = None

    def outcome(self, duration_s: float, ok: bool) -> Outcome:
        if ok:
            return Outcome(duration_s)
        if self.failure_class == "overload":
            return Outcome(duration_s, False, "exit", "resource", Overload("simulated"))
        reason = "timeout" if self.failure_class == "timeout" else "exit"
        return Outcome(duration_s, False, reason, self.failure_class or "unknown")


AS_RECORDED = Failing()


@dataclass(frozen=True, slots=True)
class DurationModel:
    """How long a subtask's attempt takes and how often it fails, and where that came from
    (`source`: history, estimate or default).

    From history with at least MIN_QUANTILE_SAMPLES recent durations: a draw from their
    quantile function (linear between order statistics), so a skewed or two-humped history
    stays so. With fewer: a log-normal with the mean and spread history measured (a fixed
    time when there is no spread)."""

    mean_s: float
    sd_s: float = 0.0
    failure_rate: float = 0.0
    source: str = "default"
    recent: tuple[float, ...] = ()  # sorted

    @classmethod
    def learned(
        cls, count: int, failures: int, mean_s: float, m2: float, recent: Sequence[float] = ()
    ) -> DurationModel:
        sd = math.sqrt(m2 / (count - 1)) if count > 1 and m2 > 0 else 0.0
        window = tuple(sorted(recent)) if len(recent) >= MIN_QUANTILE_SAMPLES else ()
        return cls(mean_s, sd, failures / count if count else 0.0, "history", window)

    def quantile(self, p: float) -> float:
        """The duration below which a share `p` of the recent ones fall."""
        at = p * (len(self.recent) - 1)
        low = int(at)
        high = min(low + 1, len(self.recent) - 1)
        return self.recent[low] + (self.recent[high] - self.recent[low]) * (at - low)

    def sample(self, rng: stats.Draws, fails: Failing = AS_RECORDED, attempt: int = 1) -> Outcome:
        duration = self.mean_s
        if self.recent:
            duration = self.quantile(rng.random())
        elif self.sd_s > 0 and self.mean_s > 0:
            sigma2 = math.log1p((self.sd_s / self.mean_s) ** 2)
            duration = rng.lognormvariate(math.log(self.mean_s) - sigma2 / 2, math.sqrt(sigma2))
        chance = self.failure_rate if fails.rate is None else fails.rate
        return fails.outcome(duration, rng.random() >= chance)

    def view(self) -> dict[str, Any]:
        return {
            "meanSeconds": round(self.mean_s, 4),
            "sdSeconds": round(self.sd_s, 4),
            "failureRate": round(self.failure_rate, 4),
            "source": self.source,
            **(
                {"quantiles": {f"p{p}": round(self.quantile(p / 100), 4) for p in (10, 50, 90)}}
                if self.recent
                else {}
            ),
        }


@dataclass(frozen=True, slots=True)
class Replayed:
    """A subtask as a recorded run had it: the time and outcome of each attempt (a later
    attempt than it made takes its last); one that never ran takes `fallback_s`."""

    outcomes: tuple[Outcome, ...]
    fallback_s: float
    source: str = "recorded"

    def sample(self, rng: stats.Draws, fails: Failing = AS_RECORDED, attempt: int = 1) -> Outcome:
        if not self.outcomes:
            return Outcome(self.fallback_s)
        recorded = self.outcomes[min(attempt, len(self.outcomes)) - 1]
        if fails.rate is None:
            return (
                recorded
                if fails.failure_class is None or recorded.ok
                else (fails.outcome(recorded.duration_s, False))
            )
        return fails.outcome(recorded.duration_s, rng.random() >= fails.rate)


TimeModel = DurationModel | Replayed


@dataclass(frozen=True, slots=True)
class VariantRuns:
    """What repeated runs of one variant measured."""

    variant: Variant
    makespans: list[float]
    success_rates: list[float]
    utilisations: list[float]
    overheads: list[float] | None = None  # execute mode only
    breaker_opens: list[int] | None = None  # simulate mode only
    # The attempts of its first run, for the report's Gantt chart (at most GANTT_MAX).
    gantt: Sequence[Attempt] = ()

    @classmethod
    def of(cls, variant: Variant, runs: Sequence[SimulatedRun], slots: int) -> VariantRuns:
        return cls(
            variant,
            [r.makespan_s for r in runs],
            [r.success_rate for r in runs],
            [r.utilisation(slots) for r in runs],
            breaker_opens=[r.breaker_opens for r in runs],
            gantt=runs[0].attempts[:GANTT_MAX] if runs else (),
        )


def compare(results: Sequence[VariantRuns], rng: stats.Draws) -> dict[str, Any]:
    """The report's figures: each variant's summary, each against the first (the baseline),
    and the winner — the fastest variant when it beats every other significantly (Mann–Whitney
    U, α = 0.05), else None."""
    base = results[0]
    variants = []
    for result in results:
        summary = stats.summarise(result.makespans, rng)
        view: dict[str, Any] = {
            "name": result.variant.name,
            "strategy": result.variant.strategy().model_dump(mode="json", by_alias=True),
            # What it may run at once: `direct` is one at a time whatever its maxConcurrency.
            "concurrency": effective_concurrency(result.variant.strategy()),
            "runs": summary.runs,
            "makespanSeconds": summary.view(),
            "successRate": round(statistics.fmean(result.success_rates), 4),
            "utilisation": round(statistics.fmean(result.utilisations), 4),
            "overhead": None
            if result.overheads is None
            else round(statistics.fmean(result.overheads), 4),
            # Breakers that opened, per run on average: work held back by a pool or a
            # downstream judged unwell.
            "breakerOpens": None
            if result.breaker_opens is None
            else round(statistics.fmean(result.breaker_opens), 4),
        }
        view["makespans"] = [round(m, 4) for m in result.makespans]
        view["gantt"] = [
            {
                "subtask": a.subtask,
                "attempt": a.attempt,
                "pool": a.pool,
                "start": round(a.start_s, 4),
                "end": round(a.end_s, 4),
                "ok": a.ok,
            }
            for a in result.gantt
        ]
        if result is not base:
            ratio, low, high = stats.ratio_interval(base.makespans, result.makespans, rng)
            view["speedupOverBaseline"] = {
                "ratio": round(ratio, 4),
                "ci95": [round(low, 4), round(high, 4)],
                "pValue": float(f"{stats.mann_whitney_p(base.makespans, result.makespans):.3g}"),
            }
        variants.append(view)
    best = min(results, key=lambda r: statistics.fmean(r.makespans))
    against = {
        r.variant.name: stats.mann_whitney_p(best.makespans, r.makespans)
        for r in results
        if r is not best
    }
    winner = best.variant.name if all(p < stats.ALPHA for p in against.values()) else None
    speedup = statistics.fmean(base.makespans) / statistics.fmean(best.makespans)
    return {
        "variants": variants,
        "winner": winner,
        "speedup": round(speedup, 4),
        "conclusion": _conclusion(best.variant.name, winner, against, speedup, base),
    }


def _conclusion(
    best: str, winner: str | None, against: Mapping[str, float], speedup: float, base: VariantRuns
) -> str:
    if not against:
        return f"one variant only: {best}; nothing to compare it with"
    if winner is None:
        close = ", ".join(f"{name} (p = {p:.3g})" for name, p in against.items() if p >= 0.05)
        return f"no significant difference between {best} and {close} at α = {stats.ALPHA}"
    over = "" if best == base.variant.name else f", {speedup:.2f}× the baseline {base.variant.name}"
    worst = max(against.values())
    return f"{best} is faster than every other variant (p ≤ {worst:.3g}){over}"


def markdown(report: Mapping[str, Any]) -> str:
    """The variants as a Markdown table."""
    lines = [
        "| variant | approach | at once | runs | mean (s) | median (s) | 95 % CI (s) | "
        "success | speed-up vs first | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        span = v["makespanSeconds"]
        up = v.get("speedupOverBaseline")
        versus = "— | — |"
        if up:
            low, high = up["ci95"]
            versus = f"{up['ratio']:.2f}× ({low:.2f}–{high:.2f}) | {up['pValue']:.3g} |"
        lines.append(
            f"| {v['name']} | {v['strategy']['approach']} | {v['concurrency']} | "
            f"{v['runs']} | {span['mean']:.3f} | {span['median']:.3f} | "
            f"{span['ci95'][0]:.3f}–{span['ci95'][1]:.3f} | {v['successRate']:.0%} | {versus}"
        )
    return "\n".join(lines)
