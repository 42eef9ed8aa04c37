"""Routing a ready subtask to a pool: score every pool with a free replica, pick by strategy.

Decisions are values with their scores, so they can be persisted and shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

SELECTIONS = ("least_busy", "most_capable", "round_robin", "weighted")
# The approach whose unmatched subtasks are spread by free share (see `spread_by_free_share`).
HYBRID = "hybrid_intelligent"


@dataclass(frozen=True, slots=True)
class PoolView:
    """One pool as routing sees it at this moment."""

    name: str
    free: int
    replicas: int
    success_rate: float | None = None  # from history; None when unknown
    latency_s: float | None = None  # mean duration from history; None when unknown


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The pool chosen (None: wait for a free replica), the scores behind it and why."""

    pool: str | None
    scores: dict[str, float]
    selection: str
    reason: str


def route(
    agent: str | None,
    capability: Mapping[str, float],
    pools: Sequence[PoolView],
    selection: str = "least_busy",
    turn: int = 0,
    approach: str = "parallel_optimized",
) -> RoutingDecision:
    """Choose a pool for one subtask.

    An explicit `agent` waits for its own pool. Otherwise every pool with a free replica is
    scored; capability match counts in every strategy but `round_robin`, so a subtask whose
    words match one pool goes there when it can, and anything else takes a free slot anywhere
    rather than waiting (contract section 2). Under the `hybrid_intelligent` approach a
    subtask that matches no pool is placed by `spread_by_free_share` instead, whatever the
    selection.
    """
    if agent is not None:
        free = next((p.free for p in pools if p.name == agent), 0)
        return RoutingDecision(
            agent if free > 0 else None,
            {agent: 1.0},
            selection,
            "explicit agent" if free > 0 else "explicit agent: waiting for a free replica",
        )
    candidates = [p for p in pools if p.free > 0]
    if not candidates:
        return RoutingDecision(None, {}, selection, "every pool is busy")
    best_cap = max((capability.get(p.name, 0.0) for p in pools), default=0.0)
    if approach == HYBRID and best_cap <= 0:
        return spread_by_free_share(candidates, selection, turn)
    latencies = [p.latency_s for p in candidates if p.latency_s is not None]
    slowest = max(latencies, default=0.0)
    scores: dict[str, float] = {}
    if selection == "round_robin":
        chosen = candidates[turn % len(candidates)]
        scores = {p.name: 1.0 if p is chosen else 0.0 for p in candidates}
        return RoutingDecision(chosen.name, scores, selection, f"turn {turn}")
    for p in candidates:
        cap = capability.get(p.name, 0.0) / best_cap if best_cap > 0 else 0.0
        room = p.free / max(p.replicas, 1)
        success = p.success_rate if p.success_rate is not None else 1.0
        speed = 1.0 - (p.latency_s / slowest) if p.latency_s is not None and slowest > 0 else 0.5
        if selection == "most_capable":
            score = 10 * cap + 2 * success + room
        elif selection == "weighted":
            score = 0.4 * cap + 0.3 * success + 0.2 * room + 0.1 * speed
        else:  # least_busy
            score = 2 * cap + room
        scores[p.name] = round(score, 4)
    chosen_name = max(candidates, key=lambda p: scores[p.name]).name
    why = (
        "capability match"
        if best_cap > 0 and capability.get(chosen_name, 0.0) == best_cap
        else "free replica"
    )
    return RoutingDecision(chosen_name, scores, selection, why)


def spread_by_free_share(
    candidates: Sequence[PoolView], selection: str, turn: int
) -> RoutingDecision:
    """An unmatched subtask under `hybrid_intelligent`: the pool whose free share of its
    replicas (free / replicas) is largest; pools that tie take turns by `turn`.

    History (success rate, latency) is left out, so unmatched work follows free room alone;
    the turns make subtasks that come one at a time, each finding every pool idle, land on
    each pool in order instead of always on the first.
    """
    shares = {p.name: Fraction(p.free, max(p.replicas, 1)) for p in candidates}
    largest = max(shares.values())
    tied = [name for name, share in shares.items() if share == largest]
    chosen = tied[turn % len(tied)]
    scores = {name: round(float(share), 4) for name, share in shares.items()}
    why = f"unmatched: largest free share of replicas ({len(tied)} tied, turn {turn})"
    return RoutingDecision(chosen, scores, selection, why)
