"""`get_reynolds_wisdom`: the situation read (core/wisdom.py), and when it names work, a
strategy chosen by simulating a few concurrencies on the pools as they stand."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from reynolds.core import simulator, wisdom
from reynolds.core.graph import Graph, Node
from reynolds.core.models import ShellAction, Strategy
from reynolds.core.reporting import iso

if TYPE_CHECKING:
    from reynolds.services.engine import Engine

# Items simulated at most: past this, a suggestion for 1,000 holds for more.
MAX_ITEMS = 1000
_ANY = ShellAction(kind="shell", argv=["true"])


def suggest(engine: Engine, items: int) -> dict[str, Any]:
    """The concurrency that finishes `items` independent subtasks soonest on the current pools
    (the smallest one when several tie), by simulating each candidate with the default
    estimate per item."""
    count = min(items, MAX_ITEMS)
    graph = Graph.build(Node(f"item{i}", i, _ANY) for i in range(count))
    capacity = engine.planning_replicas()
    slots = max(1, sum(capacity.values()))
    each_s = engine.settings.default_estimate_s
    candidates = sorted(
        {c for c in (1, 2, 4, 8, 16, 32, slots, count) if 1 <= c <= min(count, 256)}
    )
    tried = []
    for concurrency in candidates:
        strategy = Strategy(approach="parallel_optimized", max_concurrency=concurrency)
        run = simulator.run(
            graph, strategy, capacity, {nid: {} for nid in graph.nodes},
            dict.fromkeys(graph.nodes, each_s), lambda nid, n: simulator.Outcome(each_s),
            jitter=random.Random(0).random,  # noqa: S311  (no retries: never drawn)
            stats=engine.pool_stats(),
        )  # fmt: skip
        tried.append((run.makespan_s, concurrency))
    makespan, best = min(tried)
    return {
        "approach": "parallel_optimized",
        "maxConcurrency": best,
        "expectedSpeedup": round(count * each_s / makespan, 2) if makespan > 0 else 1.0,
        "basis": f"{count} items of {each_s:g} s each simulated on {slots} agent slots",
        "candidates": [{"maxConcurrency": c, "makespanSeconds": round(m, 3)} for m, c in tried],
    }


def answer(engine: Engine, req: wisdom.WisdomRequest, now: float) -> dict[str, Any]:
    reading = wisdom.read(req.situation, req.context)
    suggested = suggest(engine, reading.items) if reading.items and reading.items > 1 else None
    on = engine.settings.personality == "on"
    line = wisdom.headline(reading, suggested)
    out: dict[str, Any] = {
        "situation": req.situation,
        "wisdom": f"{line} {wisdom.charm(req.situation)}" if on else line,
        "practicalAdvice": wisdom.advice(reading, suggested),
        "charmLevel": 2 if on else 0,
        "reading": {
            "items": reading.items,
            "noun": reading.noun,
            "signals": sorted(reading.signals),
        },
        "timestamp": iso(now),
    }
    if suggested is not None:
        out["suggestedStrategy"] = suggested
    return out
