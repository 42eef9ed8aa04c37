"""Submission's first half: a task decomposed, its durations estimated from history, its
subtasks scored against the pools and its plan made, before anything runs."""

from __future__ import annotations

import asyncio

from reynolds.core import planning
from reynolds.core.decomposition import decompose
from reynolds.core.graph import Graph, Node
from reynolds.core.models import Approach, Strategy, TaskSpec
from reynolds.core.pools import PoolSet, action_executable, capability_scores
from reynolds.services.pool_control import PoolControl, pool_key
from reynolds.services.ports import Store
from reynolds.services.runs import Prepared, TaskRun


class Planner:
    """Plans tasks on the pools as they stand, and keeps the duration history it plans with
    (a mirror of the store's, learnt from every attempt)."""

    def __init__(
        self, *, store: Store, pools: PoolSet, control: PoolControl, default_estimate_s: float
    ) -> None:
        self.store = store
        self.pools = pools
        self.control = control
        self.default_estimate_s = default_estimate_s
        self._history: dict[str, float | None] = {}

    def default_strategy(self, spec: TaskSpec, graph: Graph) -> Strategy:
        """When the caller leaves it open: urgent for critical work, else critical-path
        first, as wide as the graph and the pools allow."""
        width = planning.max_width(graph.levels())
        approach: Approach = (
            "parallel_urgent" if spec.priority == "critical" else "parallel_optimized"
        )
        return Strategy(
            approach=approach,
            max_concurrency=max(1, min(width, sum(self.control.planning_replicas().values()))),
        )

    async def prepare(self, spec: TaskSpec, strategy: Strategy | None) -> Prepared:
        """Decompose and plan without running."""
        dec = decompose(spec, self.pools)
        strategy = strategy or self.default_strategy(spec, dec.graph)
        keys = {nid: planning.history_keys(spec.type, n) for nid, n in dec.graph.nodes.items()}
        history = await self._history_for(keys)
        est = planning.estimates(dec.graph, keys, history, self.default_estimate_s)
        capability = self.capabilities(dec.graph)
        control = self.control
        plan = planning.plan_summary(
            dec.graph, est, strategy, control.planning_replicas(), capability, control.pool_stats()
        )
        if dec.pattern:
            plan["pattern"] = dec.pattern
        return Prepared(dec.graph, strategy, keys, est, capability, plan, dec.message)

    def capabilities(self, graph: Graph) -> dict[str, dict[str, float]]:
        """How well each node's words match each pool (empty: explicit agent or no action).
        Nodes of one step share their words, so each distinct (text, executable) is scored once."""
        seen: dict[tuple[str, str | None], dict[str, float]] = {}
        out: dict[str, dict[str, float]] = {}
        for nid, node in graph.nodes.items():
            if node.agent is not None or node.action is None:
                out[nid] = {}
                continue
            key = (f"{node.step or ''} {node.description}", action_executable(node.action))
            if key not in seen:
                seen[key] = capability_scores(self.pools, *key)
            out[nid] = seen[key]
        return out

    async def _history_for(self, keys_by_node: dict[str, list[str]]) -> dict[str, float]:
        keys = {k for ks in keys_by_node.values() for k in ks}
        missing = [k for k in keys if k not in self._history]
        if missing:
            found = await asyncio.to_thread(self.store.durations, missing)
            for k in missing:
                self._history[k] = found.get(k)
        return {k: v for k in keys if (v := self._history.get(k)) is not None}

    def learn(
        self, run: TaskRun, node: Node, duration_s: float, ok: bool, pool: str | None = None
    ) -> None:
        """Record how long an attempt took and whether it succeeded, in the store (under its
        pool's key too) and in the mirror plans read."""
        keys = run.history_keys.get(node.id) or planning.history_keys(run.spec.type, node)
        self.store.record_duration([*keys, pool_key(pool)] if pool else keys, duration_s, ok)
        for key in keys:
            old = self._history.get(key)
            # The store keeps the exact running mean; this mirror only needs to be close.
            self._history[key] = duration_s if old is None else old + (duration_s - old) * 0.5
