"""`analyze_orchestration_potential`: the planner's view of a task, explained."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from reynolds.core import planning
from reynolds.core.failure_patterns import FailurePattern
from reynolds.core.models import Strategy, TaskSpec
from reynolds.services.patterns import patterns_for_task, signatures
from reynolds.services.ports import Cache, Row

if TYPE_CHECKING:
    from reynolds.services.engine import Engine

# Committed events after which the planner knows something new: a duration learned, a pool's
# success rate or replicas changed.
LEARNING_EVENTS = frozenset({"subtask_finished", "subtask_retry", "agent_scaled"})


async def analyze(engine: Engine, spec: TaskSpec, strategy: Strategy | None) -> dict[str, Any]:
    """Plan without running and say, plainly, whether parallelism pays and how much."""
    prep = await engine.prepare(spec, strategy)
    graph, chosen, est, capability = prep.graph, prep.strategy, prep.estimate_s, prep.capability
    plan, message = prep.plan, prep.message
    levels = graph.levels()
    width = planning.max_width(levels)
    slots = sum(engine.replicas.values())
    recommended = max(1, min(width, slots))
    if strategy is None:
        chosen = chosen.model_copy(update={"max_concurrency": recommended})
        plan = planning.plan_summary(
            graph, est, chosen, engine.replicas, capability, engine.pool_stats()
        )
    known = sum(1 for n in graph.nodes.values() if n.estimate_s is not None)
    learned = sum(
        1
        for nid, n in graph.nodes.items()
        if n.estimate_s is None and est[nid] != engine.settings.default_estimate_s
    )
    speedup = float(plan["estimatedSpeedup"])
    default_s = engine.settings.default_estimate_s
    should = width >= 2 and speedup >= 1.2
    confidence = round(0.5 + 0.45 * (known + learned) / max(len(graph.nodes), 1), 3)
    signals = [
        f"{len(graph.nodes)} subtasks in {len(levels)} dependency level(s)",
        f"widest level: {width} subtasks that can run side by side",
        f"estimates: {known} given, {learned} learned from past runs, "
        f"{len(graph.nodes) - known - learned} defaulted to {default_s:g} s",
        f"critical path: {len(plan['criticalPath'])} subtasks",
        f"{slots} agent replicas across {len(engine.replicas)} pools",
    ]
    if message:
        signals.append(
            "no executor configured for the pattern's pools: the task would be planned only"
        )
    failures = await patterns_for_task(
        engine.store, spec.type, signatures(n.action for n in graph.nodes.values())
    )
    if failures:
        signals.append(_failure_signal(failures[0], len(failures)))
    if should:
        recommendation = (
            f"Orchestrate in parallel with {chosen.approach} at maxConcurrency "
            f"{chosen.max_concurrency}: estimated {plan['estimatedParallelSeconds']:g} s "
            f"instead of {plan['estimatedSequentialSeconds']:g} s one at a time ({speedup:g}x)."
        )
    else:
        recommendation = (
            "Run it directly: the dependency chain leaves little to overlap "
            f"(estimated speedup {speedup:g}x)."
        )
    on = engine.settings.personality == "on"
    advice = (
        (
            "Independent work is a gift. Unwrap it all at once."
            if should
            else "Some things are a single-file line. Respect the line."
        )
        if on
        else recommendation
    )
    return {
        "shouldOrchestrate": should,
        "confidence": confidence,
        "strategy": chosen.model_dump(mode="json", by_alias=True),
        "signals": signals,
        "recommendation": recommendation,
        "reynoldsAdvice": advice,
        "independentComponents": width,
        "dependencyDepth": len(levels),
        "recommendedConcurrency": recommended,
        "estimatedSequentialSeconds": plan["estimatedSequentialSeconds"],
        "estimatedParallelSeconds": plan["estimatedParallelSeconds"],
        "estimatedSpeedup": plan["estimatedSpeedup"],
        "plan": plan,
        "failurePatterns": [p.view() for p in failures],
    }


def _failure_signal(worst: FailurePattern, count: int) -> str:
    retry = "a retry may help" if worst.retryable else "a retry will not help"
    return (
        f"{count} failure pattern(s) learned from past runs apply; the most frequent: "
        f"{worst.signature} failed {worst.failures} time(s) on {worst.pool}, mostly "
        f"{worst.main_class} ({retry})"
    )


class HistoryVersion:
    """What the planner has learned, as a string that changes whenever that does.

    It joins a per-process epoch (entries another process or an earlier run cached never
    match), the count of committed learning events (`observe` is the store's on_commit
    callback) and a digest of the replicas and per-pool statistics as they stand. The digest
    changes the moment an attempt ends or a pool is scaled; the count catches what the digest
    cannot see (a duration learned while the pool's figures happen to stay the same), one
    commit later.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._epoch = uuid.uuid4().hex[:12]
        self._learned = 0  # written by the store's writer thread only

    def observe(self, rows: list[Row]) -> None:
        self._learned += sum(1 for row in rows if row.get("kind") in LEARNING_EVENTS)

    def current(self) -> str:
        live = json.dumps(
            [sorted(self._engine.replicas.items()), sorted(self._engine.pool_stats().items())]
        )
        return f"{self._epoch}:{self._learned}:{_digest(live)}"


class CachedAnalysis:
    """`analyze` behind a cache, keyed by the normalised task and strategy and the history
    version, for `ttl_s`: asking again about the same task answers from the cache until
    anything is learned. `computed` and `hits` count what happened."""

    def __init__(
        self, engine: Engine, cache: Cache, version: HistoryVersion, *, ttl_s: float
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.version = version
        self.ttl_s = ttl_s
        self.computed = 0
        self.hits = 0

    def key(self, spec: TaskSpec, strategy: Strategy | None) -> str:
        normalised = json.dumps(
            [
                spec.model_dump(mode="json", by_alias=True),
                strategy.model_dump(mode="json", by_alias=True) if strategy else None,
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
        return f"analysis:{_digest(normalised + self.version.current(), 32)}"

    async def analyze(self, spec: TaskSpec, strategy: Strategy | None) -> dict[str, Any]:
        key = self.key(spec, strategy)
        cached = await self.cache.get(key)
        if isinstance(cached, dict):
            self.hits += 1
            return cached
        result = await analyze(self.engine, spec, strategy)
        self.computed += 1
        await self.cache.set(key, result, self.ttl_s)
        return result


def _digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
