"""Submission's first half: a task decomposed, its durations estimated from history, its
subtasks scored against the pools and its plan made, before anything runs."""

from __future__ import annotations

import asyncio
from typing import Any

from reynolds.core import planning
from reynolds.core.decomposition import Decomposition, decompose, with_integration
from reynolds.core.graph import Graph, Node
from reynolds.core.llm_plan import SYSTEM, parse_plan, plan_prompt, plan_schema
from reynolds.core.models import Approach, LlmAction, Strategy, TaskSpec
from reynolds.core.pools import PoolSet, action_executable, capability_scores
from reynolds.errors import InvalidInput, PlanError
from reynolds.services.pool_control import PoolControl, pool_key
from reynolds.services.ports import ActionContext, ActionResult, LlmActionRunner, Store
from reynolds.services.runs import Prepared, TaskRun

# The most of a model's answer a plan is read from.
PLAN_CAP_BYTES = 256 * 1024


class Planner:
    """Plans tasks on the pools as they stand, and keeps the duration history it plans with
    (a mirror of the store's, learnt from every attempt)."""

    def __init__(
        self,
        *,
        store: Store,
        pools: PoolSet,
        control: PoolControl,
        default_estimate_s: float,
        llm: LlmActionRunner | None = None,
        llm_plan_max_tokens: int = 1024,
        llm_plan_timeout_s: float = 120.0,
        llm_schema_format: str = "json_schema",
    ) -> None:
        self.store = store
        self.pools = pools
        self.control = control
        self.default_estimate_s = default_estimate_s
        self.llm = llm
        self.llm_plan_max_tokens = llm_plan_max_tokens
        self.llm_plan_timeout_s = llm_plan_timeout_s
        self.llm_schema_format = llm_schema_format
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
        dec, asked = await self._decompose(spec)
        dec = with_integration(dec, spec, self.pools)
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
        plan |= asked
        return Prepared(dec.graph, strategy, keys, est, capability, plan, dec.message)

    async def _decompose(self, spec: TaskSpec) -> tuple[Decomposition, dict[str, object]]:
        """The task's graph, and what the plan says of the model when one was asked: its
        usage, or the `warning` that its plan was not used and the patterns were."""
        if spec.decompose != "llm" or spec.steps is not None or spec.subtasks is not None:
            return decompose(spec, self.pools), {}
        result = await self._ask_for_plan(spec)
        if result.ok:
            try:
                return parse_plan(result.output, spec, self.pools), {"llm": _usage(result)}
            except (PlanError, InvalidInput) as exc:
                why = exc.message
        else:
            why = result.error or str(result.reason)
        dec = decompose(spec, self.pools)
        warning = f"the LLM plan was not used ({why}); planned with the {dec.pattern} pattern"
        return dec, {"warning": warning, **({"llm": _usage(result)} if result.ok else {})}

    async def _ask_for_plan(self, spec: TaskSpec) -> ActionResult:
        if self.llm is None:
            return ActionResult(False, reason="not_configured", error="no llm endpoint")
        action = LlmAction(
            kind="llm",
            prompt=plan_prompt(spec, self.pools),
            system=SYSTEM,
            max_tokens=self.llm_plan_max_tokens,
            response_format=_schema_format(self.llm_schema_format, plan_schema(self.pools)),
        )
        ctx = ActionContext(
            task_id="",
            subtask_id="plan",
            attempt=1,
            timeout_s=self.llm_plan_timeout_s,
            output_cap_bytes=PLAN_CAP_BYTES,
            workspace="",
        )
        return await self.llm.run(action, ctx)

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


def _usage(result: ActionResult) -> dict[str, object]:
    return {
        "promptTokens": result.prompt_tokens,
        "completionTokens": result.completion_tokens,
        "cost": result.cost,
    }


def _schema_format(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` that asks for answers under `schema`."""
    if kind == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}}
