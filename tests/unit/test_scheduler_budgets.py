"""Budgets and deadlines on the scheduler: an attempt is reserved before it starts, and a task
over its budget starts nothing more and fails naming the budget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.helpers.scheduler import by_id, scheduler, shell_step, until

from reynolds.core.models import Status
from reynolds.services.ports import ActionResult

pytestmark = pytest.mark.anyio

FLAKY = ActionResult(False, exit_code=1, error="flaky")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chain(n: int, **options: Any) -> list[dict[str, Any]]:
    return [shell_step(f"s{i}", *([f"s{i - 1}"] if i else []), **options) for i in range(n)]


async def test_the_attempts_budget_stops_the_task_before_it_starts_more() -> None:
    async with scheduler() as s:
        result = await s.run({"type": "t", "subtasks": chain(5), "budget": {"attempts": 3}})
    subs = by_id(result)
    assert [subs[f"s{i}"]["status"] for i in range(5)] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "skipped",
        "skipped",
    ]
    assert s.shell.started == ["s0", "s1", "s2"]
    assert result["status"] == "failed"
    assert result["reason"] == "budget_exceeded"
    assert "attempts budget (3)" in result["message"]
    assert subs["s3"]["reason"] == "budget_exceeded"
    assert result["metrics"]["budget"] == {
        "limits": {"attempts": 3},
        "used": {"attempts": 3, "subtasks": 3, "tokens": 0, "cost": 0.0},
        "exceeded": "attempts",
    }


async def test_retries_spend_attempts_and_a_retry_over_budget_is_not_made() -> None:
    async with scheduler() as s:
        s.shell.outcomes = {"s0": [FLAKY, FLAKY, FLAKY]}
        task = {"type": "t", "subtasks": chain(2, retries=5), "budget": {"attempts": 2}}
        result = await s.run(task)
    subs = by_id(result)
    assert subs["s0"]["attempts"] == 2
    assert subs["s0"]["status"] == "failed" and subs["s0"]["reason"] == "budget_exceeded"
    assert subs["s1"]["status"] == "skipped"
    assert result["reason"] == "budget_exceeded"


async def test_the_subtasks_budget_counts_subtasks_not_their_retries() -> None:
    async with scheduler() as s:
        s.shell.outcomes = {"s0": [FLAKY], "s1": [FLAKY]}
        task = {"type": "t", "subtasks": chain(3, retries=1), "budget": {"subtasks": 2}}
        result = await s.run(task)
    subs = by_id(result)
    assert [subs[f"s{i}"]["attempts"] for i in range(3)] == [2, 2, 0]
    assert subs["s2"]["status"] == "skipped"
    assert "subtasks budget (2)" in result["message"]


async def test_when_the_wall_clock_runs_out_running_work_is_stopped_and_fails() -> None:
    async with scheduler() as s:
        s.shell.gates = {"s0": asyncio.Event()}
        task = {"type": "t", "subtasks": chain(2), "budget": {"wallClockSeconds": 60}}
        run = await s.submit(task)
        assert await until(lambda: "s0" in s.shell.started)
        s.clock.advance(61)
        s.engine.dispatch.budgets.time_up(run)  # what the task's timer does
        assert await s.engine.wait(run, 5)
        result = await s.engine.result(run.id)
    subs = by_id(result)
    assert s.shell.cancelled == ["s0"]
    assert subs["s0"]["status"] == "failed" and subs["s0"]["reason"] == "budget_exceeded"
    assert subs["s1"]["status"] == "skipped"
    assert result["reason"] == "budget_exceeded"
    assert "wallClockSeconds" in result["message"]


async def test_a_deadline_already_passed_starts_nothing() -> None:
    async with scheduler() as s:
        past = datetime.fromtimestamp(s.clock.now - 1, UTC).isoformat()
        result = await s.run({"type": "t", "subtasks": chain(2), "deadline": past})
    assert s.shell.started == []
    assert result["status"] == "failed" and result["reason"] == "deadline_exceeded"
    assert {sub["status"] for sub in result["subtasks"]} == {"skipped"}
    assert result["message"] == "the task's deadline has passed"


async def test_work_is_ordered_by_deadline_within_a_priority() -> None:
    async with scheduler(replicas=1) as s:
        s.shell.gates = {"first": asyncio.Event()}
        blocker = await s.submit({"type": "t", "subtasks": [shell_step("first")]})
        assert await until(lambda: "first" in s.shell.started)
        soon = datetime.fromtimestamp(s.clock.now + 600, UTC).isoformat()
        later = datetime.fromtimestamp(s.clock.now + 6000, UTC).isoformat()
        runs = [
            await s.submit({"type": "t", "subtasks": [shell_step("none")]}),
            await s.submit({"type": "t", "subtasks": [shell_step("late")], "deadline": later}),
            await s.submit({"type": "t", "subtasks": [shell_step("soon")], "deadline": soon}),
        ]
        s.shell.gates["first"].set()
        for run in [blocker, *runs]:
            assert await s.engine.wait(run, 5)
            assert run.status is Status.SUCCEEDED
    assert s.shell.started == ["first", "soon", "late", "none"]


async def test_a_task_within_its_budget_is_untouched() -> None:
    async with scheduler() as s:
        budget = {"attempts": 10, "subtasks": 10, "wallClockSeconds": 3600}
        result = await s.run({"type": "t", "subtasks": chain(3), "budget": budget})
    assert result["status"] == "succeeded" and "reason" not in result
    assert result["metrics"]["budget"]["used"]["attempts"] == 3
    assert "exceeded" not in result["metrics"]["budget"]
