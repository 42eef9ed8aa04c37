"""Estimates, ordering policy, pool choice and list scheduling.

The executor and the planner's simulation share `order_key`, `place` (routing.route) and
`take_startable`, so the plan a user sees is the schedule the engine follows.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reynolds.core.graph import Graph, Node, bottom_levels, critical_path
from reynolds.core.models import ShellAction, Strategy
from reynolds.core.routing import PoolView, RoutingDecision, route
from reynolds.core.substitution import substitute
from reynolds.errors import ActionDenied, InvalidInput

OrderKey = tuple[float, ...]
# History keys longer than this are kept as a digest (the store's key column holds 1,000).
_LONGEST_PLAIN_KEY = 512


def history_keys(task_type: str, node: Node) -> list[str]:
    """Duration-history keys, most specific first: the substituted argv (a digest of it when
    long, so that keys stay small in memory and in the store), then the step.

    A subtask whose argv would be too long to run once substituted is refused here, when the
    task is submitted: InvalidInput naming it, before anything runs."""
    keys: list[str] = []
    if isinstance(node.action, ShellAction):
        values = {"component": node.component or "", "step": node.step or "", "taskType": task_type}
        try:
            argv = substitute(node.action.argv, values, allow_option_values=True)
        except ActionDenied as exc:
            raise InvalidInput(f"subtask {node.id!r}: {exc.message}", field="task") from None
        text = json.dumps(argv, separators=(",", ":"))
        if len(text) > _LONGEST_PLAIN_KEY:
            text = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        keys.append("argv:" + text)
    keys.append(f"step:{task_type}:{node.step or node.id}")
    return keys


def estimates(
    graph: Graph,
    keys: Mapping[str, Sequence[str]],
    history: Mapping[str, float],
    default_s: float,
) -> dict[str, float]:
    """Each node's expected seconds: its own estimate, else history (by each node's
    `history_keys`, most specific first), else the default."""
    out: dict[str, float] = {}
    for nid, node in graph.nodes.items():
        if node.estimate_s is not None:
            out[nid] = node.estimate_s
            continue
        for key in keys.get(nid, ()):
            if key in history:
                out[nid] = history[key]
                break
        else:
            out[nid] = default_s
    return out


def order_key(approach: str, node: Node, bottom_s: float, estimate_s: float) -> OrderKey:
    """Smaller runs first. `direct` keeps submission order; the others favour the critical
    path, then the longest subtask, so long work starts early."""
    if approach == "direct":
        return (float(node.seq),)
    return (-bottom_s, -estimate_s, float(node.seq))


def effective_concurrency(strategy: Strategy) -> int:
    return 1 if strategy.approach == "direct" else strategy.max_concurrency


PoolStats = Mapping[str, tuple[float | None, float | None]]  # pool -> (success rate, latency s)


def place(
    agent: str | None,
    capability: Mapping[str, float],
    free: Mapping[str, int],
    replicas: Mapping[str, int],
    strategy: Strategy,
    turn: int,
    stats: PoolStats | None = None,
) -> RoutingDecision:
    """Route one ready subtask over the pools as they stand, by the strategy's selection and
    approach (see `routing.route`)."""
    known = stats or {}
    views = [
        PoolView(name, slots, replicas.get(name, 0), *known.get(name, (None, None)))
        for name, slots in free.items()
    ]
    return route(agent, capability, views, strategy.selection, turn, strategy.approach)


def take_startable(
    ready: list[tuple[OrderKey, str]],
    place: Callable[[str], str | None],
    limit: int,
) -> list[tuple[str, str]]:
    """Pop up to `limit` subtasks from the `ready` heap that `place` can put on a pool now.

    Subtasks that cannot start yet (their pool is full) go back on the heap, in order.
    """
    started: list[tuple[str, str]] = []
    deferred: list[tuple[OrderKey, str]] = []
    while ready and len(started) < limit:
        item = heapq.heappop(ready)
        pool = place(item[1])
        if pool is None:
            deferred.append(item)
        else:
            started.append((item[1], pool))
    for item in deferred:
        heapq.heappush(ready, item)
    return started


@dataclass(frozen=True, slots=True)
class Simulation:
    makespan_s: float
    start_s: dict[str, float]
    pool: dict[str, str]


def simulate(
    graph: Graph,
    estimate_s: Mapping[str, float],
    strategy: Strategy,
    capacity: Mapping[str, int],
    capability: Mapping[str, Mapping[str, float]],
    stats: PoolStats | None = None,
) -> Simulation:
    """List-schedule the graph with the engine's own policy; returns the makespan."""
    bottom = bottom_levels(graph, estimate_s)
    remaining = {nid: len(n.depends_on) for nid, n in graph.nodes.items()}
    ready: list[tuple[OrderKey, str]] = []
    for nid, node in graph.nodes.items():
        if remaining[nid] == 0:
            heapq.heappush(
                ready, (order_key(strategy.approach, node, bottom[nid], estimate_s[nid]), nid)
            )
    free = dict(capacity)
    limit = effective_concurrency(strategy)
    running: list[tuple[float, int, str, str]] = []
    starts: dict[str, float] = {}
    now = 0.0
    tick = 0
    turn = 0
    pools: dict[str, str] = {}

    def put(nid: str) -> str | None:
        nonlocal turn
        node = graph.nodes[nid]
        decision = place(node.agent, capability.get(nid, {}), free, capacity, strategy, turn, stats)
        if decision.pool is not None:
            free[decision.pool] -= 1  # reserved now, so the next choice sees it taken
            turn += 1
            pools[nid] = decision.pool
        return decision.pool

    while ready or running:
        for nid, pool in take_startable(ready, put, limit - len(running)):
            starts[nid] = now
            tick += 1
            heapq.heappush(running, (now + estimate_s[nid], tick, nid, pool))
        if not running:
            break  # what is left can never start (a pool without replicas)
        now, _, done, pool = heapq.heappop(running)
        finished = [(done, pool)]
        while running and running[0][0] <= now:
            _, _, other, other_pool = heapq.heappop(running)
            finished.append((other, other_pool))
        for nid, pool_name in finished:
            free[pool_name] += 1
            for child in graph.dependents[nid]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    key = order_key(
                        strategy.approach, graph.nodes[child], bottom[child], estimate_s[child]
                    )
                    heapq.heappush(ready, (key, child))
    return Simulation(now, starts, pools)


def plan_summary(
    graph: Graph,
    estimate_s: Mapping[str, float],
    strategy: Strategy,
    capacity: Mapping[str, int],
    capability: Mapping[str, Mapping[str, float]],
    stats: PoolStats | None = None,
) -> dict[str, Any]:
    """The contract's `plan`: groups, critical path, estimated makespans and speedup."""
    sim = simulate(graph, estimate_s, strategy, capacity, capability, stats)
    sequential = sum(estimate_s.values())
    return {
        "strategy": strategy.model_dump(mode="json", by_alias=True),
        "parallelGroups": graph.levels(),
        "criticalPath": critical_path(graph, estimate_s),
        "estimatedSequentialSeconds": round(sequential, 3),
        "estimatedParallelSeconds": round(sim.makespan_s, 3),
        "estimatedSpeedup": round(sequential / sim.makespan_s, 2) if sim.makespan_s > 0 else 1.0,
    }


def max_width(levels: Sequence[Sequence[str]]) -> int:
    return max((len(level) for level in levels), default=1)
