"""The tasks a scheduler holds in memory: those running, in priority order, and the recently
finished ones, so that polls of recent tasks are answered without the store; and the
experiments it is running for real."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from reynolds.services.recent_outcomes import RecentOutcomes
from reynolds.services.runs import TaskRun

# Finished runs kept in memory: at most this many, holding at most this many subtasks in all.
_RECENT_RUNS = 2_000
_RECENT_SUBTASKS = 100_000


class LiveRuns:
    """Active runs (highest priority first, then oldest) and a bounded memory of ended ones."""

    def __init__(self) -> None:
        self.active: list[TaskRun] = []
        self.recent: OrderedDict[str, TaskRun] = OrderedDict()
        self._recent_subtasks = 0
        # What a read of a task no longer in memory must see committed.
        self.evicted_mark = 0
        self._seq = 0
        # Experiments running for real (execute mode), by id: each is one asyncio task.
        self.experiments: dict[str, asyncio.Task[None]] = {}
        # How the attempts of the last hour ended (the health check's error rate).
        self.outcomes = RecentOutcomes()

    def next_seq(self) -> int:
        """The submission order of the next run taken in (ties of priority go to the older)."""
        self._seq += 1
        return self._seq

    def activate(self, run: TaskRun) -> None:
        self.active.append(run)
        self.active.sort(key=lambda r: r.rank)

    def finished(self, run: TaskRun) -> None:
        with contextlib.suppress(ValueError):
            self.active.remove(run)
        self.remember(run)

    def remember(self, run: TaskRun) -> None:
        self.recent[run.id] = run
        self._recent_subtasks += len(run.subs)
        while len(self.recent) > _RECENT_RUNS or (
            self._recent_subtasks > _RECENT_SUBTASKS and len(self.recent) > 1
        ):
            _, old = self.recent.popitem(last=False)
            self._recent_subtasks -= len(old.subs)
            self.evicted_mark = max(self.evicted_mark, old.mark)

    def forget(self, task_id: str) -> None:
        """Hold the task no more (another server has taken it): reads go to the store."""
        self.active = [run for run in self.active if run.id != task_id]
        old = self.recent.pop(task_id, None)
        if old is not None:
            self._recent_subtasks -= len(old.subs)

    def running(self, task_id: str) -> TaskRun | None:
        return next((r for r in self.active if r.id == task_id), None)

    def find(self, task_id: str) -> TaskRun | None:
        for run in self.active:
            if run.id == task_id:
                return run
        return self.recent.get(task_id)
