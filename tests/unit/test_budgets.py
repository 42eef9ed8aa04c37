"""Budgets: reserved before an attempt starts, the first one exceeded named."""

from __future__ import annotations

from reynolds.core.budgets import Ledger, Limits


def test_attempts_and_subtasks_are_reserved_and_the_exceeded_one_is_named() -> None:
    ledger = Ledger(Limits(attempts=2, subtasks=1), started_at=0)
    ledger, no = ledger.reserve(True, 1)
    assert no is None
    ledger, no = ledger.reserve(False, 2)  # a retry of the same subtask
    assert no is None
    _, over = ledger.reserve(False, 3)
    assert over is not None and over.budget == "attempts" and over.reason == "budget_exceeded"
    _, over = Ledger(Limits(subtasks=1), 0).reserve(True, 1)[0].reserve(True, 1)
    assert over is not None and over.budget == "subtasks"


def test_wall_clock_and_deadline_are_time_budgets() -> None:
    ledger = Ledger(Limits(wall_clock_s=10), started_at=100)
    assert ledger.check(109.9) is None
    over = ledger.check(110)
    assert over is not None and over.budget == "wallClockSeconds"
    late = Ledger(Limits(deadline=50), started_at=0).check(50)
    assert late is not None and late.reason == "deadline_exceeded"
    assert Ledger(Limits(wall_clock_s=10, deadline=105), started_at=100).ends_at() == 105
    assert Ledger(Limits(wall_clock_s=10, deadline=500), started_at=100).ends_at() == 110
    assert Ledger(Limits(attempts=3), started_at=100).ends_at() is None


def test_tokens_and_cost_are_settled_after_and_stop_what_would_follow() -> None:
    ledger = Ledger(Limits(tokens=100, cost=1.0), started_at=0)
    ledger, _ = ledger.reserve(True, 0)
    ledger = ledger.settle(tokens=120, cost=0.5)
    _, over = ledger.reserve(True, 1)
    assert over is not None and over.budget == "tokens" and "120" in over.message()
