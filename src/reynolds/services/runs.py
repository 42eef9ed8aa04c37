"""The in-memory state of a task while it runs, and its rows for the store."""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from reynolds.core import planning
from reynolds.core.budgets import Exceeded, Ledger
from reynolds.core.fingerprints import Outcome
from reynolds.core.graph import Graph, Node, bottom_levels
from reynolds.core.loops import STORM_WINDOW, LoopVerdict
from reynolds.core.models import (
    FINISHED,
    PRIORITY_RANK,
    SUBTASKS_CEILING,
    Action,
    Status,
    Strategy,
    TaskSpec,
)
from reynolds.core.planning import OrderKey
from reynolds.core.pricing import Usage
from reynolds.core.routing import RoutingDecision

_ACTION: TypeAdapter[Action] = TypeAdapter(Action)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A task decomposed and planned, not yet running."""

    graph: Graph
    strategy: Strategy
    keys: dict[str, list[str]]  # duration-history keys per node
    estimate_s: dict[str, float]
    capability: dict[str, dict[str, float]]  # per node: capability score per pool
    plan: dict[str, Any]
    message: str | None  # set when nothing is runnable: what to add


@dataclass(slots=True, eq=False)
class SubState:
    """One subtask's live state."""

    node: Node
    status: Status
    remaining: int  # upstream subtasks not yet succeeded
    capability: Mapping[str, float] = field(default_factory=dict)  # score per pool
    attempts: int = 0
    exit_code: int | None = None
    output: str = ""
    error: str = ""
    reason: str | None = None
    agent_type: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    handle: asyncio.Task[None] | None = None
    retry_timer: asyncio.TimerHandle | None = None
    argv: list[str] | None = None  # the running attempt's argv after substitution (audit)
    routing: RoutingDecision | None = None  # why the latest attempt went to its pool
    # What its action depends on (core/downstreams.py), once it has been asked.
    downstream: str | None = None
    downstream_known: bool = False
    # Fingerprints of the failed attempts so far (loop detection reads them); none kept
    # for a subtask that has not failed.
    failures: list[Outcome] = field(default_factory=list)
    # {"failureClass": ..., "loop": verdict}: the class of its latest failed attempt, and
    # loop prevention's verdict when it stopped the subtask.
    detail: dict[str, Any] | None = None

    def row(self, task_id: str) -> dict[str, Any]:
        """The full subtasks row."""
        return {
            "task_id": task_id,
            "id": self.node.id,
            "seq": self.node.seq,
            "component": self.node.component,
            "step": self.node.step,
            "requested_agent": self.node.agent,
            "agent_type": self.agent_type,
            "depends_on": list(self.node.depends_on),
            "spec": self.node.spec(),
            "status": str(self.status),
            "attempts": self.attempts,
            "exit_code": self.exit_code,
            "output": self.output,
            "error": self.error,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **({"detail": self.detail} if self.detail is not None else {}),
        }


@dataclass(slots=True, eq=False)
class TaskRun:
    """A task being run: its graph, plan and the state of every subtask."""

    id: str
    seq: int
    spec: TaskSpec
    strategy: Strategy
    graph: Graph
    estimate_s: dict[str, float]
    bottom_s: dict[str, float]
    plan: dict[str, Any]
    created_at: float
    token_name: str | None = None
    fingerprint: str | None = None  # of its input, for resubmission loops
    parent_id: str | None = None  # the task whose action submitted it
    depth: int = 0  # generations below a task submitted by hand
    history_keys: dict[str, list[str]] = field(default_factory=dict)
    status: Status = Status.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    metrics: dict[str, Any] | None = None
    subs: dict[str, SubState] = field(default_factory=dict)
    ready: list[tuple[OrderKey, str]] = field(default_factory=list)
    running: int = 0
    unfinished: int = 0
    cancelling: bool = False
    turn: int = 0  # placements so far: round_robin's position
    # What it has spent of its budget and deadline (None: it has neither), and the budget
    # that stopped it.
    ledger: Ledger | None = None
    stopped: Exceeded | None = None
    usage: Usage = field(default_factory=Usage)  # of its llm attempts
    budget_timer: asyncio.TimerHandle | None = None
    # Whether each of its latest retries succeeded, and the retry storm that stopped its
    # retries (loop prevention).
    retry_outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=STORM_WINDOW))
    storm: LoopVerdict | None = None
    mark: int = 0  # the store's write mark after this task's latest write
    # Its worktrees being removed as it ends, and removed.
    workspace_closing: asyncio.Task[None] | None = None
    workspace_closed: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def new(
        cls,
        task_id: str,
        seq: int,
        spec: TaskSpec,
        prep: Prepared,
        *,
        created_at: float,
        token_name: str | None,
    ) -> TaskRun:
        """A task as submitted: sources ready, the rest pending; `planned` with every subtask
        pending when the plan found nothing runnable (`prep.message` says what to add)."""
        graph = prep.graph
        run = cls(
            id=task_id,
            seq=seq,
            spec=spec,
            strategy=prep.strategy,
            graph=graph,
            estimate_s=prep.estimate_s,
            bottom_s=bottom_levels(graph, prep.estimate_s),
            plan=prep.plan,
            created_at=created_at,
            token_name=token_name,
            history_keys=prep.keys,
        )
        # The model's plan is the task's first spending (on its budget too).
        run.usage = Usage.from_details([_planning_usage(prep.plan)])
        for nid, node in graph.nodes.items():
            status = Status.READY if not node.depends_on else Status.PENDING
            run.subs[nid] = SubState(node, status, len(node.depends_on), prep.capability[nid])
        run.unfinished = len(run.subs)
        if prep.message is not None:
            run.status = Status.PLANNED
            run.message = prep.message
            for sub in run.subs.values():
                sub.status = Status.PENDING
            run.done.set()
        return run

    @classmethod
    def from_rows(
        cls,
        task: dict[str, Any],
        rows: list[dict[str, Any]],
        *,
        seq: int,
        default_estimate_s: float,
        capabilities: Callable[[Graph], dict[str, dict[str, float]]],
    ) -> TaskRun:
        """A stored task as its rows have it (statuses included); ValidationError when
        today's input rules refuse its spec, strategy or an action."""
        # Stored under whatever limit the server had then: only today's other rules apply.
        spec = TaskSpec.model_validate(task["spec"], context={"max_subtasks": SUBTASKS_CEILING})
        strategy = Strategy.model_validate(task["strategy"])
        nodes = [node_from_row(r) for r in rows]
        graph = Graph({n.id: n for n in nodes}, {n.id: [] for n in nodes})
        for n in nodes:
            for dep in n.depends_on:
                graph.dependents[dep].append(n.id)
        keys = {nid: planning.history_keys(spec.type, n) for nid, n in graph.nodes.items()}
        est = planning.estimates(graph, keys, {}, default_estimate_s)
        run = cls(
            id=task["id"],
            seq=seq,
            spec=spec,
            strategy=strategy,
            graph=graph,
            estimate_s=est,
            bottom_s=bottom_levels(graph, est),
            plan=task.get("plan") or {},
            created_at=task["created_at"],
            token_name=task.get("token_name"),
            fingerprint=task.get("fingerprint"),
            parent_id=task.get("parent_id"),
            depth=task.get("depth") or 0,
            history_keys=keys,
            status=Status(task["status"]),
            started_at=task.get("started_at"),
        )
        capability = capabilities(graph)
        for row, node in zip(rows, nodes, strict=True):
            run.subs[node.id] = SubState(
                node,
                Status(row["status"]),
                0,
                capability.get(node.id, {}),
                attempts=row["attempts"] or 0,
                exit_code=row.get("exit_code"),
                output=row.get("output") or "",
                error=row.get("error") or "",
                reason=row.get("reason"),
                agent_type=row.get("agent_type"),
                started_at=row.get("started_at"),
                finished_at=row.get("finished_at"),
                detail=row.get("detail"),
            )
        run.usage = Usage.from_details(
            [_planning_usage(run.plan), *(sub.detail for sub in run.subs.values())]
        )
        return run

    @property
    def rank(self) -> tuple[int, float, int]:
        """Across tasks: priority first, then the earliest deadline (none: last), then
        submission order."""
        deadline = self.spec.deadline
        due = deadline.timestamp() if deadline is not None else math.inf
        return (PRIORITY_RANK[self.spec.priority], due, self.seq)

    @property
    def limit(self) -> int:
        return 1 if self.strategy.approach == "direct" else self.strategy.max_concurrency

    def usable(self, replicas: int) -> int:
        """How many subtasks could run at once: the limit, the graph's width and `replicas`."""
        width = planning.max_width(self.graph.levels())
        return max(1, min(self.limit, width, replicas))

    def ideal_makespan(
        self, replicas: Mapping[str, int], stats: planning.PoolStats
    ) -> float | None:
        """What a perfect list scheduler would need with the measured durations."""
        actual: dict[str, float] = {}
        for nid, sub in self.subs.items():
            if sub.started_at is None or sub.finished_at is None:
                actual[nid] = 0.0
            else:
                actual[nid] = sub.finished_at - sub.started_at
        capability = {nid: s.capability for nid, s in self.subs.items()}
        return planning.simulate(
            self.graph, actual, self.strategy, replicas, capability, stats
        ).makespan_s

    def key(self, nid: str) -> OrderKey:
        node = self.graph.nodes[nid]
        # Looked up at each call: the simulator reads the same policy (core/simulator.py).
        return planning.order_key(
            self.strategy.approach, node, self.bottom_s[nid], self.estimate_s[nid]
        )

    def counts(self) -> dict[str, int]:
        return dict(Counter(str(s.status) for s in self.subs.values()))

    def task_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.spec.type,
            "description": self.spec.description,
            "priority": self.spec.priority,
            "status": str(self.status),
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "strategy": self.strategy.model_dump(mode="json", by_alias=True),
            "plan": self.plan,
            "metrics": self.metrics,
            "message": self.message,
            "reason": self.stopped.reason if self.stopped is not None else None,
            "token_name": self.token_name,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "fingerprint": self.fingerprint,
            "parent_id": self.parent_id,
            "depth": self.depth if self.parent_id is not None else None,
        }

    def subtask_rows(self) -> list[dict[str, Any]]:
        return [s.row(self.id) for s in self.subs.values()]


def node_from_row(row: dict[str, Any]) -> Node:
    """A subtask's node as its stored row keeps it."""
    spec = row["spec"]
    action = _ACTION.validate_python(spec["action"]) if spec.get("action") else None
    return Node(
        id=row["id"],
        seq=row["seq"],
        action=action,
        depends_on=tuple(row["depends_on"]),
        component=row.get("component"),
        step=row.get("step"),
        agent=row.get("requested_agent"),
        description=spec.get("description") or "",
        timeout_s=spec.get("timeoutSeconds"),
        retries=spec.get("retries") or 0,
        estimate_s=spec.get("estimatedSeconds"),
        idempotent=spec.get("idempotent", True),
        allow_option_values=spec.get("allowOptionValues", False),
        loop_prevention=spec.get("loopPrevention", True),
        always=spec.get("always", False),
    )


@dataclass(frozen=True, slots=True)
class RefusedWrites:
    """What ends a stored task that can no longer be run: its row, its unfinished subtasks'
    rows and its last event."""

    task: dict[str, Any]
    subtasks: list[dict[str, Any]]
    event: dict[str, Any]


def refused_writes(
    task_id: str, subtasks: list[dict[str, Any]], why: str, now: float
) -> RefusedWrites:
    """The task and every subtask that had not ended fail with reason `invalid`, saying why."""
    failed = {"status": str(Status.FAILED), "finished_at": now}
    return RefusedWrites(
        task={"id": task_id, **failed, "message": why},
        subtasks=[
            {"task_id": task_id, "id": row["id"], **failed, "reason": "invalid", "error": why}
            for row in subtasks
            if Status(row["status"]) not in FINISHED
        ],
        event={
            "task_id": task_id,
            "subtask_id": None,
            "kind": "task_finished",
            "data": {"status": str(Status.FAILED), "reason": "invalid"},
            "at": now,
        },
    )


def _planning_usage(plan: dict[str, Any]) -> dict[str, Any]:
    """What asking the model for the plan spent (`plan.llm`), as a subtask's usage detail."""
    spent = plan.get("llm")
    if not isinstance(spent, dict):
        return {}
    return {"usage": {**spent, "calls": 1}}
