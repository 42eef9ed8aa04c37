"""The scheduler on the in-memory store with a fake clock and scripted actions: order of
dependencies, the concurrency limit, retries, timestamps from the clock."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from tests.helpers.scheduler import by_id, scheduler, shell_step, until

from reynolds.core.models import TaskSpec
from reynolds.services.ports import ActionResult

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_a_diamond_runs_each_subtask_after_everything_it_depends_on() -> None:
    steps = [shell_step("d", "b", "c"), shell_step("b", "a"), shell_step("c", "a"), shell_step("a")]
    async with scheduler() as s:
        hold_c = s.shell.gates["c"] = asyncio.Event()
        run = await s.submit({"type": "diamond", "subtasks": steps}, {"maxConcurrency": 4})
        await until(lambda: "end b" in s.shell.log)
        await until(lambda: False, turns=20, patience_s=0)  # what b's end starts has started
        assert "d" not in s.shell.started, "d started while c still ran"
        hold_c.set()
        assert await s.engine.wait(run, 10)
        result = await s.engine.result(run.id)

    assert result["status"] == "succeeded"
    at = s.shell.log.index
    assert s.shell.started[0] == "a" and s.shell.started[-1] == "d"
    assert at("start b") > at("end a") and at("start c") > at("end a")
    assert at("start d") > max(at("end b"), at("end c"))
    assert s.shell.peak == 2  # b and c, side by side
    assert by_id(result)["d"]["output"] == "echo d"


async def test_no_more_subtasks_run_at_once_than_the_task_allows() -> None:
    async with scheduler(replicas=8) as s:
        result = await s.run(
            {"type": "wide", "subtasks": [shell_step(f"s{i}") for i in range(6)]},
            {"maxConcurrency": 2},
        )

    assert result["status"] == "succeeded"
    assert len(s.shell.finished) == 6
    assert s.shell.peak == 2


async def test_no_more_subtasks_run_at_once_than_the_pool_has_replicas() -> None:
    async with scheduler(replicas=3) as s:
        result = await s.run(
            {"type": "wide", "subtasks": [shell_step(f"s{i}") for i in range(7)]},
            {"maxConcurrency": 7},
        )

    assert result["status"] == "succeeded"
    assert s.shell.peak == 3
    assert s.engine.free == {"work": 3}


async def test_a_failed_attempt_is_retried_until_it_succeeds_within_its_retries() -> None:
    async with scheduler() as s:
        failed = ActionResult(False, exit_code=1, error="flaky", reason="exit")
        s.shell.outcomes["flaky"] = [failed, failed]
        result = await s.run(
            {
                "type": "retry",
                "subtasks": [shell_step("flaky", retries=2), shell_step("after", "flaky")],
            }
        )

    subs = by_id(result)
    assert result["status"] == "succeeded"
    assert subs["flaky"]["attempts"] == 3
    assert s.shell.started.count("flaky") == 3
    assert subs["after"]["status"] == "succeeded"
    retries = [e for e in s.store.events(result["taskId"]) if e["kind"] == "subtask_retry"]
    assert [e["data"]["attempt"] for e in retries] == [1, 2]


async def test_a_subtask_out_of_retries_fails_and_what_depends_on_it_is_skipped() -> None:
    async with scheduler() as s:
        failed = ActionResult(False, exit_code=2, error="broken", reason="exit")
        s.shell.outcomes["build"] = [failed, failed]
        result = await s.run(
            {
                "type": "retry",
                "subtasks": [
                    shell_step("build", retries=1),
                    shell_step("test", "build"),
                    shell_step("ship", "test"),
                    shell_step("lint"),
                ],
            }
        )

    subs = by_id(result)
    assert result["status"] == "failed"
    assert (subs["build"]["status"], subs["build"]["attempts"]) == ("failed", 2)
    assert subs["build"]["exitCode"] == 2
    assert [subs[n]["reason"] for n in ("test", "ship")] == ["upstream_failed"] * 2
    assert [subs[n]["status"] for n in ("test", "ship")] == ["skipped"] * 2
    assert subs["lint"]["status"] == "succeeded"
    assert "test" not in s.shell.started
    assert s.metrics.tasks == ["failed"]


async def test_a_denied_action_is_not_retried() -> None:
    async with scheduler() as s:
        s.shell.outcomes["rm"] = [ActionResult(False, reason="denied", error="not listed")]
        result = await s.run({"type": "deny", "subtasks": [shell_step("rm", retries=3)]})

    (sub,) = result["subtasks"]
    assert (sub["status"], sub["reason"], sub["attempts"]) == ("failed", "denied", 1)


async def test_times_are_the_clock_s_and_durations_what_it_advanced() -> None:
    async with scheduler() as s:
        s.shell.takes_s = {"a": 5.0, "b": 2.5}
        result = await s.run({"type": "clock", "subtasks": [shell_step("a"), shell_step("b", "a")]})

    subs = by_id(result)
    assert seconds(result["createdAt"]) == pytest.approx(1_000_000.0)
    assert seconds(subs["a"]["finishedAt"]) - seconds(subs["a"]["startedAt"]) == pytest.approx(5.0)
    assert seconds(subs["b"]["finishedAt"]) - seconds(subs["b"]["startedAt"]) == pytest.approx(2.5)
    assert seconds(result["finishedAt"]) == pytest.approx(1_000_007.5)
    assert result["metrics"]["makespanSeconds"] == pytest.approx(7.5)
    assert [d for _, _, d in s.metrics.subtasks] == [pytest.approx(5.0), pytest.approx(2.5)]


async def test_the_durations_learnt_are_the_estimates_of_the_next_plan() -> None:
    task = {"type": "learn", "subtasks": [shell_step("only")]}
    async with scheduler() as s:
        s.shell.takes_s = {"only": 42.0}
        await s.run(task)
        prep = await s.engine.prepare(TaskSpec.model_validate(task), None)

    assert prep.estimate_s == {"only": pytest.approx(42.0)}


async def test_higher_priority_tasks_take_free_slots_first() -> None:
    async with scheduler(replicas=1) as s:
        gate = s.shell.gates["hold"] = asyncio.Event()
        first = await s.submit({"type": "x", "subtasks": [shell_step("hold")]})
        low = await s.submit({"type": "x", "priority": "low", "subtasks": [shell_step("low")]})
        high = await s.submit({"type": "x", "priority": "high", "subtasks": [shell_step("high")]})
        gate.set()
        for run in (first, low, high):
            assert await s.engine.wait(run, 10)

    assert s.shell.started == ["hold", "high", "low"]
