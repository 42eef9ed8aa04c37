"""Routing a ready subtask to a pool: score every pool with a free replica, pick by strategy.

Decisions are values with their scores, so they can be persisted and shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SELECTIONS = ("least_busy", "most_capable", "round_robin", "weighted")


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
) -> RoutingDecision:
    """Choose a pool for one subtask.

    An explicit `agent` waits for its own pool. Otherwise every pool with a free replica is
    scored; capability match counts in every strategy but `round_robin`, so a subtask whose
    words match one pool goes there when it can, and anything else takes a free slot anywhere
    rather than waiting (contract section 2).
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
