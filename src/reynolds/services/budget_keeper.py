"""Budgets and deadlines on the scheduler: each attempt reserved on its task's ledger before it
is dispatched (core/budgets.py), and a task that would exceed its budget, or whose deadline or
wall clock has run out, stopped: nothing new starts, what has not started is skipped with the
reason, and when time ran out the attempts under way are stopped too. The task then ends
`failed` with reason `budget_exceeded` or `deadline_exceeded`, naming the budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reynolds.core.budgets import Exceeded, Ledger, limits_of
from reynolds.core.models import Status
from reynolds.services.recording import Recorder
from reynolds.services.runs import SubState, TaskRun

# Budgets that time exhausts: attempts under way are stopped when they run out.
TIME_BUDGETS = frozenset({"deadline", "wallClockSeconds"})


class BudgetKeeper:
    """Keeps each task's ledger; `on_stop(run)` is the dispatch loop's part of a stop (cancel
    what runs, when time ran out; finish the task once nothing is left)."""

    def __init__(
        self,
        recorder: Recorder,
        clock: Callable[[], float],
        on_stop: Callable[[TaskRun, bool], None],
    ) -> None:
        self.record = recorder
        self.clock = clock
        self.on_stop = on_stop

    def open(self, run: TaskRun) -> None:
        """Start `run`'s ledger, when it has a budget or a deadline, and its timer."""
        limits = limits_of(run.spec.budget, run.spec.deadline)
        if not limits.any:
            return
        # A resumed task has spent what its subtasks' attempts and llm usage say.
        run.ledger = Ledger(
            limits,
            started_at=run.created_at,
            attempts=sum(s.attempts for s in run.subs.values()),
            subtasks=sum(1 for s in run.subs.values() if s.attempts),
            tokens=run.usage.prompt_tokens + run.usage.completion_tokens,
            cost=run.usage.cost,
        )
        ends = run.ledger.ends_at()
        if ends is not None:
            delay = max(0.0, ends - self.clock())
            run.budget_timer = asyncio.get_running_loop().call_later(delay, self.time_up, run)

    def reserve(self, run: TaskRun, sub: SubState) -> bool:
        """Reserve one attempt of `sub`; False (and the task stopped) when that would exceed
        a budget."""
        assert run.ledger is not None
        ledger, exceeded = run.ledger.reserve(sub.attempts == 0, self.clock())
        if exceeded is not None:
            self.stop(run, exceeded)
            return False
        run.ledger = ledger
        return True

    def time_up(self, run: TaskRun) -> None:
        run.budget_timer = None
        if run.ledger is None or run.done.is_set() or run.stopped is not None:
            return
        exceeded = run.ledger.check(self.clock())
        if exceeded is not None:
            self.stop(run, exceeded)

    def stop(self, run: TaskRun, exceeded: Exceeded) -> None:
        """Nothing more of `run` starts: what waits is skipped, saying which budget."""
        if run.stopped is not None:
            return
        run.stopped = exceeded
        self.sweep(run)
        self.record.event(
            run,
            None,
            "budget_exceeded",
            {
                "budget": exceeded.budget,
                "limit": exceeded.limit,
                "used": exceeded.used,
                "reason": exceeded.reason,
            },
        )
        self.on_stop(run, exceeded.budget in TIME_BUDGETS)

    def sweep(self, run: TaskRun) -> None:
        """End every subtask of a stopped `run` that waits to start (skipped) or to retry
        (failed)."""
        exceeded = run.stopped
        if exceeded is None:
            return
        now = self.clock()
        for sub in run.subs.values():
            if sub.status in (Status.READY, Status.PENDING):
                if sub.retry_timer is not None:
                    sub.retry_timer.cancel()
                    sub.retry_timer = None
                # One that failed and waited for a retry failed; one never tried is skipped.
                sub.status = Status.FAILED if sub.attempts else Status.SKIPPED
                self.mark(sub, exceeded)
                sub.finished_at = now
                run.unfinished -= 1
                self.record.subtask(run, sub, now)
        run.ready.clear()

    @staticmethod
    def mark(sub: SubState, exceeded: Exceeded) -> None:
        """Say on `sub` which budget stopped it."""
        why = exceeded.message()
        sub.reason = exceeded.reason
        sub.error = f"{why}\n{sub.error}" if sub.error else why

    @staticmethod
    def view(run: TaskRun) -> dict[str, object]:
        """What `run` was allowed and spent, and the budget that stopped it."""
        assert run.ledger is not None
        limits = run.ledger.limits
        given = {
            "wallClockSeconds": limits.wall_clock_s,
            "attempts": limits.attempts,
            "subtasks": limits.subtasks,
            "tokens": limits.tokens,
            "cost": limits.cost,
        }
        out: dict[str, object] = {
            "limits": {k: v for k, v in given.items() if v is not None},
            "used": run.ledger.view(),
        }
        if run.stopped is not None:
            out["exceeded"] = run.stopped.budget
        return out

    def close(self, run: TaskRun) -> None:
        """`run` ended: its timer is no longer needed."""
        if run.budget_timer is not None:
            run.budget_timer.cancel()
            run.budget_timer = None
