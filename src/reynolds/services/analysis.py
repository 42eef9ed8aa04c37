"""`analyze_orchestration_potential`: the planner's view of a task, explained."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reynolds.core import planning
from reynolds.core.models import Strategy, TaskSpec

if TYPE_CHECKING:
    from reynolds.services.engine import Engine


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
    }
