"""Runaway orchestration: tasks submitted by the actions of other tasks. Every shell action
runs with REYNOLDS_TASK_ID and REYNOLDS_SUBTASK_ID in its environment, and `reynolds
orchestrate` run inside one passes them on as `parentTaskId` and `parentSubtaskId` (an MCP or
REST client may pass them itself). A task's depth is its parent's plus one; a submission nested
too deep, or one more task from a subtask that has already started many, is refused as a loop
(core/loops.runaway_depth and runaway_fanout) unless forced."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from reynolds.core.loops import LoopVerdict, runaway_depth, runaway_fanout
from reynolds.services.live_runs import LiveRuns
from reynolds.services.ports import Store

# Parents remembered: tasks' depths and subtasks' counts of the tasks they started.
REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Parent:
    """Where a submission comes from: the task and subtask whose action submitted it."""

    task_id: str
    subtask_id: str | None = None


class Lineage:
    """Depths of tasks and the tasks each subtask started, to judge a new submission."""

    def __init__(self, level: float, store: Store, runs: LiveRuns) -> None:
        self.level = level
        self.store = store
        self.runs = runs
        self._children: OrderedDict[tuple[str, str | None], int] = OrderedDict()

    async def depth_of(self, task_id: str) -> int | None:
        """How deep `task_id` is (0: submitted by hand); None when there is no such task."""
        run = self.runs.find(task_id)
        if run is not None:
            return run.depth
        row = await asyncio.to_thread(self.store.get_task, task_id)
        return None if row is None else int(row.get("depth") or 0)

    def judge(self, parent: Parent, depth: int) -> LoopVerdict | None:
        """The verdict on one more task from `parent`, `depth` deep: None to run it."""
        verdict = runaway_depth(depth, self.level)
        if verdict is None:
            children = self._children.get((parent.task_id, parent.subtask_id), 0) + 1
            verdict = runaway_fanout(children, self.level)
        if verdict is None:
            return None
        evidence = {
            **verdict.evidence,
            "parentTaskId": parent.task_id,
            "parentSubtaskId": parent.subtask_id,
        }
        return LoopVerdict(verdict.detector, verdict.confidence, evidence)

    def started(self, parent: Parent) -> None:
        """`parent` started one more task."""
        key = (parent.task_id, parent.subtask_id)
        self._children[key] = self._children.pop(key, 0) + 1
        while len(self._children) > REMEMBERED:
            self._children.popitem(last=False)
