"""Per-task budgets: wall clock, attempts, subtasks, tokens and cost; reserved before an attempt
starts and settled when it ends, so that a budget is never overrun by work already promised.

A `Ledger` is a value: `reserve` answers whether an attempt may start (and what it holds back),
`settle` books what an attempt really used. When a budget would be exceeded, nothing new starts
and the task ends `failed` with reason `budget_exceeded`, naming the budget. A `deadline` is a
wall-clock budget with a date. Time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from reynolds.core.models import Budget


@dataclass(frozen=True, slots=True)
class Limits:
    """What a task may spend; None: no limit."""

    wall_clock_s: float | None = None
    attempts: int | None = None
    subtasks: int | None = None
    tokens: int | None = None
    cost: float | None = None
    deadline: float | None = None  # epoch seconds

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.wall_clock_s,
                self.attempts,
                self.subtasks,
                self.tokens,
                self.cost,
                self.deadline,
            )
        )


def limits_of(budget: Budget | None, deadline: datetime | None) -> Limits:
    """A task's `budget` and `deadline` as limits."""
    b = budget or Budget()
    return Limits(
        wall_clock_s=b.wall_clock_seconds,
        attempts=b.attempts,
        subtasks=b.subtasks,
        tokens=b.tokens,
        cost=b.cost,
        deadline=deadline.timestamp() if deadline is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Exceeded:
    """Which budget stops the task, and the figures that say so."""

    budget: str
    limit: float
    used: float

    @property
    def reason(self) -> str:
        return "deadline_exceeded" if self.budget == "deadline" else "budget_exceeded"

    def message(self) -> str:
        if self.budget == "deadline":
            return "the task's deadline has passed"
        return f"the {self.budget} budget ({self.limit:g}) would be exceeded (used {self.used:g})"


@dataclass(frozen=True, slots=True)
class Ledger:
    """What a task has used and holds reserved."""

    limits: Limits
    started_at: float
    attempts: int = 0
    subtasks: int = 0  # subtasks that have had an attempt
    tokens: int = 0
    cost: float = 0.0

    def check(self, now: float) -> Exceeded | None:
        """A budget that time alone has exhausted (wall clock, deadline), or None."""
        limits = self.limits
        if limits.deadline is not None and now >= limits.deadline:
            return Exceeded("deadline", limits.deadline, now)
        elapsed = now - self.started_at
        if limits.wall_clock_s is not None and elapsed >= limits.wall_clock_s:
            return Exceeded("wallClockSeconds", limits.wall_clock_s, elapsed)
        return None

    def reserve(self, first: bool, now: float) -> tuple[Ledger, Exceeded | None]:
        """One more attempt (the `first` of its subtask or a retry): the new ledger, or the
        budget it would exceed."""
        limits = self.limits
        late = self.check(now)
        if late is not None:
            return self, late
        if limits.attempts is not None and self.attempts + 1 > limits.attempts:
            return self, Exceeded("attempts", limits.attempts, self.attempts)
        subtasks = self.subtasks + (1 if first else 0)
        if limits.subtasks is not None and subtasks > limits.subtasks:
            return self, Exceeded("subtasks", limits.subtasks, self.subtasks)
        if limits.tokens is not None and self.tokens >= limits.tokens:
            return self, Exceeded("tokens", limits.tokens, self.tokens)
        if limits.cost is not None and self.cost >= limits.cost:
            return self, Exceeded("cost", limits.cost, self.cost)
        return replace(self, attempts=self.attempts + 1, subtasks=subtasks), None

    def ends_at(self) -> float | None:
        """When time alone exhausts a budget (the deadline or the wall clock), if ever."""
        times = [t for t in (self.limits.deadline, self._wall_clock_end()) if t is not None]
        return min(times, default=None)

    def _wall_clock_end(self) -> float | None:
        wall = self.limits.wall_clock_s
        return self.started_at + wall if wall is not None else None

    def settle(self, tokens: int = 0, cost: float = 0.0) -> Ledger:
        """Book what an attempt used (tokens and cost are known only when it ends)."""
        return replace(self, tokens=self.tokens + tokens, cost=self.cost + cost)

    def view(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "subtasks": self.subtasks,
            "tokens": self.tokens,
            "cost": round(self.cost, 6),
        }
