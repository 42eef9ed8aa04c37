"""The read side of the scheduler: a task's result and the task list, from memory while a
task is held there, else from the store; whatever they report has been committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from reynolds.core.personality import task_comment
from reynolds.core.reporting import run_metrics, task_result, task_summary
from reynolds.core.routing import RoutingDecision
from reynolds.core.wire_values import clean_text, printable
from reynolds.errors import NotFound
from reynolds.services.live_runs import LiveRuns
from reynolds.services.pool_control import PoolControl
from reynolds.services.ports import Store
from reynolds.services.runs import TaskRun
from reynolds.settings import Settings


class TaskReads:
    """Results and lists of tasks, in the contract's shapes."""

    def __init__(
        self,
        *,
        store: Store,
        runs: LiveRuns,
        control: PoolControl,
        clock: Callable[[], float],
        settings: Settings,
    ) -> None:
        self.store = store
        self.runs = runs
        self.control = control
        self.clock = clock
        self.settings = settings

    async def result(self, task_id: str) -> dict[str, Any]:
        """The contract's result for a task, from memory or the store. Whatever it reports
        has been committed: it waits for the writer only when the task has writes pending."""
        check_task_id(task_id)
        run = self.runs.find(task_id)
        # A task not in memory ended before the last run evicted (or before this server
        # started): only the writes of evicted runs can still be pending for it.
        if not self.store.durable(run.mark if run is not None else self.runs.evicted_mark):
            await self.store.flush()
        if run is not None:
            return self._from_memory(run)
        task = await asyncio.to_thread(self.store.get_task, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", taskId=task_id)
        subs = await asyncio.to_thread(self.store.get_subtasks, task_id)
        latest = await asyncio.to_thread(self.store.decisions, task_id)
        for row in subs:
            decision = latest.get(row["id"])
            row["routing"] = decision and {
                "pool": decision["pool"],
                "scores": decision["scores"],
                "selection": decision["selection"],
                "reason": decision["reason"],
            }
        metrics = task.get("metrics") or {}
        comment = task_comment(
            task["status"], metrics, len(subs), self._personality(), task.get("reason")
        )
        return task_result(task, subs, comment, self.clock())

    def _from_memory(self, run: TaskRun) -> dict[str, Any]:
        rows = run.subtask_rows()
        replicas = sum(self.control.planning_replicas().values())
        metrics = run.metrics
        if metrics is None:  # still running: what it has spent so far, too
            metrics = run_metrics(run.created_at, None, rows, run.usable(replicas), None)
            if run.usage.calls:
                metrics |= run.usage.view()
        reason = run.stopped.reason if run.stopped is not None else None
        comment = task_comment(str(run.status), metrics, len(rows), self._personality(), reason)
        for row in rows:
            routing = run.subs[row["id"]].routing
            row["routing"] = routing_view(routing) if routing is not None else None
        return task_result(run.task_row(), rows, comment, self.clock(), metrics)

    def _personality(self) -> bool:
        return self.settings.personality == "on"

    async def list_tasks(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        if not self.store.durable(self.store.write_mark()):
            await self.store.flush()
        rows = await asyncio.to_thread(self.store.list_tasks, status, limit)
        out = []
        for row in rows:
            run = self.runs.find(row["id"])
            out.append(task_summary(run.task_row() if run else row, run.counts() if run else None))
        return out

    async def status_of(self, task_id: str) -> str:
        """The status of a task in memory or in the store; NotFound otherwise."""
        known = self.runs.find(task_id)
        if known is not None:
            return str(known.status)
        row = await asyncio.to_thread(self.store.get_task, task_id)
        if row is None:
            raise NotFound(f"no task {task_id!r}", taskId=task_id)
        return str(row["status"])


def check_task_id(task_id: str) -> None:
    """NotFound for an id no task can have, before the store is asked (PostgreSQL would fail
    on a NUL, not answer that there is no such task)."""
    if not clean_text(task_id):
        raise NotFound(f"no task {printable(task_id)!r}", taskId=printable(task_id))


def routing_view(decision: RoutingDecision) -> dict[str, Any]:
    """A routing decision as the task detail shows it."""
    return {
        "pool": decision.pool,
        "scores": decision.scores,
        "selection": decision.selection,
        "reason": decision.reason,
    }
