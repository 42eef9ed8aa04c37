"""A recorded task as an experiment's source: its graph as it ran, each subtask's attempts
with the times and outcomes they took, and the makespan it measured — so that it can be
re-simulated under its own strategy (how far to trust the simulator) or another one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reynolds.core import planning
from reynolds.core.downstreams import overload
from reynolds.core.experiments import Replayed
from reynolds.core.graph import Graph, Node
from reynolds.core.models import FINISHED, Status, Strategy
from reynolds.core.simulator import Outcome
from reynolds.errors import InvalidInput
from reynolds.services.runs import Prepared, node_from_row

if TYPE_CHECKING:
    from reynolds.services.engine import Engine

FIELD = "scenario.replay"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a recorded task gives a replay."""

    task_id: str
    prepared: Prepared
    models: dict[str, Replayed]
    makespan_s: float | None
    strategy: dict[str, Any]

    def view(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "makespanSeconds": self.makespan_s,
            "strategy": self.strategy,
        }


async def recorded_run(engine: Engine, task_id: str) -> Recorded:
    """The task `task_id` as it ran; InvalidInput (422, naming `scenario.replay`) when there
    is no such task or it has not ended."""
    store = engine.store
    task = await asyncio.to_thread(store.get_task, task_id)
    if task is None:
        raise InvalidInput(f"no task {task_id} to replay", field=FIELD)
    status = Status(task["status"])
    if status not in FINISHED or status is Status.PLANNED:
        raise InvalidInput(
            f"task {task_id} is {status}: only an ended run can be replayed", field=FIELD
        )
    rows = await asyncio.to_thread(store.get_subtasks, task_id)
    attempts = await asyncio.to_thread(store.get_attempts, task_id)
    nodes = [node_from_row(r) for r in rows]
    graph = Graph.build(nodes)
    keys = {nid: planning.history_keys(task["type"], n) for nid, n in graph.nodes.items()}
    known = await asyncio.to_thread(store.durations, {k for ks in keys.values() for k in ks})
    default_s = engine.settings.default_estimate_s
    estimate_s = planning.estimates(graph, keys, known, default_s)
    for row in rows:  # as the run planned them, when it kept them (it orders the work)
        planned = (row.get("spec") or {}).get("plannedSeconds")
        if isinstance(planned, int | float) and row["id"] in estimate_s:
            estimate_s[row["id"]] = float(planned)
    outcomes: dict[str, list[Outcome]] = {nid: [] for nid in graph.nodes}
    for attempt in attempts:
        started, finished = attempt.get("started_at"), attempt.get("finished_at")
        if attempt["subtask_id"] in outcomes and started is not None and finished is not None:
            node = graph.nodes[attempt["subtask_id"]]
            outcomes[node.id].append(_outcome(engine, node, attempt, max(0.0, finished - started)))
    models = {nid: Replayed(tuple(found), estimate_s[nid]) for nid, found in outcomes.items()}
    strategy = task.get("strategy") or {}
    prepared = Prepared(
        graph=graph,
        strategy=Strategy.model_validate(strategy),
        keys=keys,
        estimate_s=estimate_s,
        capability=engine.planner.capabilities(graph),
        plan=task.get("plan") or {},
        message=None,
    )
    metrics = task.get("metrics") or {}
    return Recorded(task_id, prepared, models, metrics.get("makespanSeconds"), strategy)


def _outcome(engine: Engine, node: Node, attempt: dict[str, Any], duration_s: float) -> Outcome:
    """A recorded attempt as the simulator takes it: how long, and how it ended — its reason
    and class, and whether its downstream said it was overloaded (judged again from its exit
    code and error by the pool's rules, as the dispatcher judged it then)."""
    if attempt["status"] == "succeeded":
        return Outcome(duration_s)
    pool = attempt.get("agent_type")
    signal = overload(
        node.action,
        exit_code=attempt.get("exit_code"),
        output="",
        error=attempt.get("error") or "",
        retry_after_s=None,
        rules=engine.dispatch.overload_rules.get(pool) if pool else None,
    )
    return Outcome(duration_s, False, attempt.get("reason"), attempt.get("failure_class"), signal)
