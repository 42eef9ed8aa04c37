"""Progress of a waiting task, as its subtasks finish: what a tool call reports while it waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from reynolds.core.models import FINISHED
from reynolds.services.events import EventBus
from reynolds.services.runs import TaskRun

# (progress, total, message): called as a task's subtasks finish.
ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
_ENDED = frozenset(str(s) for s in FINISHED)


def finished_count(statuses: Iterable[str]) -> int:
    """How many subtasks have ended, whatever the outcome."""
    return sum(1 for s in statuses if s in _ENDED)


def progress_message(done: int, total: int) -> str:
    return f"{done} of {total} subtasks finished"


async def follow(run: TaskRun, bus: EventBus, timeout_s: float, progress: ProgressFn) -> None:
    """Report progress whenever a subtask ends, until the task ends or `timeout_s` passes.

    The counts come from the run's state, not from the events, so an event that went by
    before the subscription cannot make them wrong; `done` is set before the store commits
    the task's last event, so checking it before each wait loses no wake-up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    total = len(run.subs)
    reported = -1
    sub = bus.subscribe(run.id)
    try:
        while True:
            done = finished_count(str(s.status) for s in run.subs.values())
            if done > reported:
                await progress(done, total, progress_message(done, total))
                reported = done
            remaining = deadline - loop.time()
            if run.done.is_set() or remaining <= 0:
                return
            await sub.next(remaining)
    finally:
        sub.close()
