"""The in-memory state of a task while it runs, and its rows for the store."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reynolds.core.graph import Graph, Node
from reynolds.core.models import FINISHED, PRIORITY_RANK, Status, Strategy, TaskSpec
from reynolds.core.planning import OrderKey, order_key
from reynolds.core.routing import RoutingDecision


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
    mark: int = 0  # the store's write mark after this task's latest write
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def rank(self) -> tuple[int, int]:
        """Across tasks: priority first, then submission order."""
        return (PRIORITY_RANK[self.spec.priority], self.seq)

    @property
    def limit(self) -> int:
        return 1 if self.strategy.approach == "direct" else self.strategy.max_concurrency

    def key(self, nid: str) -> OrderKey:
        node = self.graph.nodes[nid]
        return order_key(self.strategy.approach, node, self.bottom_s[nid], self.estimate_s[nid])

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
            "token_name": self.token_name,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def subtask_rows(self) -> list[dict[str, Any]]:
        return [s.row(self.id) for s in self.subs.values()]


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
