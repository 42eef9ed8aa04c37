"""The read side of the scheduler: a task's result and the task list, from memory while a
task is held there, else from the store; whatever they report has been committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from reynolds.core.personality import task_comment
from reynolds.core.reporting import (
    FAILED,
    Listing,
    run_metrics,
    subtask_page,
    task_result,
    task_summary,
)
from reynolds.core.routing import RoutingDecision
from reynolds.core.wire_values import clean_text, printable
from reynolds.errors import InvalidInput, NotFound
from reynolds.services.live_runs import LiveRuns
from reynolds.services.pool_control import PoolControl
from reynolds.services.ports import Store
from reynolds.services.runs import SubState, TaskRun
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

    async def result(self, task_id: str, limit: int | None = None) -> dict[str, Any]:
        """The contract's result for a task, from memory or the store, its lists cut after
        `limit` entries (REYNOLDS_RESULT_SUBTASKS by default). Whatever it reports has been
        committed: it waits for the writer only when the task has writes pending."""
        limit = self.settings.result_subtasks if limit is None else limit
        run = await self._committed(task_id)
        if run is not None:
            return self._from_memory(run, limit)
        task, subs = await self._stored(task_id)
        metrics = task.get("metrics") or {}
        comment = task_comment(
            task["status"], metrics, len(subs), self._personality(), task.get("reason")
        )
        return task_result(task, Listing.of(subs, limit), comment, self.clock())

    async def subtasks(
        self, task_id: str, start: int, limit: int, status: str | None = None
    ) -> dict[str, Any]:
        """A page of a task's subtasks (those with `status`, if given) in the task's order,
        from position `start`: each with its parallel group and whether it is critical."""
        run = await self._committed(task_id)
        plan: Any
        if run is not None:
            plan = run.plan
            subs = [s for s in run.subs.values() if status is None or str(s.status) == status]
            rows = [self._row(run, sub) for sub in subs[start : start + limit]]
            total = len(subs)
        else:
            task, stored = await self._stored(task_id)
            plan = task.get("plan")
            chosen = [row for row in stored if status is None or row["status"] == status]
            rows, total = chosen[start : start + limit], len(chosen)
        if start > total:
            raise InvalidInput(f"cursor {start} is past the {total} subtasks", field="cursor")
        end = start + len(rows)
        return {
            "taskId": task_id,
            "status": status,
            "total": total,
            "cursor": str(start),
            "subtasks": subtask_page(plan, rows),
            "nextCursor": str(end) if end < total else None,
        }

    async def _committed(self, task_id: str) -> TaskRun | None:
        """The task's run if it is in memory, once whatever was written of it is committed."""
        check_task_id(task_id)
        run = self.runs.find(task_id)
        # A task not in memory ended before the last run evicted (or before this server
        # started): only the writes of evicted runs can still be pending for it.
        if not self.store.durable(run.mark if run is not None else self.runs.evicted_mark):
            await self.store.flush()
        return run

    async def _stored(self, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A task's row and its subtasks' rows (each with its latest routing) from the store."""
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
        return task, subs

    def _from_memory(self, run: TaskRun, limit: int) -> dict[str, Any]:
        subs = list(run.subs.values())
        metrics = run.metrics
        if metrics is None:  # still running: what it has spent so far, too
            replicas = sum(self.control.planning_replicas().values())
            timing = [
                {"status": str(s.status), "started_at": s.started_at, "finished_at": s.finished_at}
                for s in subs
            ]
            metrics = run_metrics(run.created_at, None, timing, run.usable(replicas), None)
            if run.usage.calls:
                metrics |= run.usage.view()
        failed = [s for s in subs if s.status in FAILED]
        listing = Listing(
            shown=[self._row(run, s) for s in subs[:limit]],
            total=len(subs),
            counts=run.counts(),
            failed=[s.row(run.id) for s in failed[:limit]],
            failed_total=len(failed),
            limit=limit,
        )
        reason = run.stopped.reason if run.stopped is not None else None
        comment = task_comment(str(run.status), metrics, len(subs), self._personality(), reason)
        return task_result(run.task_row(), listing, comment, self.clock(), metrics)

    @staticmethod
    def _row(run: TaskRun, sub: SubState) -> dict[str, Any]:
        row = sub.row(run.id)
        row["routing"] = routing_view(sub.routing) if sub.routing is not None else None
        return row

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
