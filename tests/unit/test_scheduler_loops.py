"""Loop prevention on the scheduler (fake clock, scripted actions): what it stops, what it
never stops, and what it says when it does."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.scheduler import by_id, scheduler, shell_step

from reynolds.core.loops import confidence
from reynolds.services.ports import ActionResult

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def failed(error: str, output: str = "", exit_code: int = 1) -> ActionResult:
    return ActionResult(False, exit_code=exit_code, output=output, error=error, reason="exit")


def ok() -> ActionResult:
    return ActionResult(True, exit_code=0, output="done")


def chain(**options: Any) -> dict[str, Any]:
    return {"type": "loops", "subtasks": [shell_step("s", **options), shell_step("after", "s")]}


async def test_the_same_failure_with_ten_retries_is_stopped_at_the_third_attempt() -> None:
    async with scheduler() as s:
        # The same failure each time, but for what varies between identical failures.
        s.shell.outcomes["s"] = [
            failed(f"connection refused at 2026-12-04T10:00:0{i}Z (pid 4242{i})") for i in range(11)
        ]
        result = await s.run(chain(retries=10))

    sub = by_id(result)["s"]
    assert result["status"] == "loop_blocked"
    assert sub["status"] == "loop_blocked" and sub["attempts"] == 3
    assert s.shell.started.count("s") == 3
    assert sub["loop"]["detector"] == "repeated"
    assert sub["loop"]["confidence"] == pytest.approx(0.999)
    assert sub["loop"]["evidence"]["count"] == 3
    assert sub["loop"]["evidence"]["fingerprint"]
    assert sub["reason"] == "loop_detected"
    assert "stopped by loop prevention: repeated" in sub["error"]
    assert by_id(result)["after"]["status"] == "skipped"
    assert s.metrics.loops == ["repeated"]
    assert [d["subtaskId"] for d in s.engine.dispatch.loops.recent] == ["s"]


async def test_two_identical_failures_then_a_success_are_never_stopped() -> None:
    async with scheduler() as s:
        s.shell.outcomes["s"] = [failed("boom"), failed("boom"), ok()]
        result = await s.run(chain(retries=5))

    assert result["status"] == "succeeded"
    assert by_id(result)["s"]["attempts"] == 3
    assert s.metrics.loops == []


async def test_flaky_work_whose_output_changes_then_succeeds_is_never_stopped() -> None:
    async with scheduler() as s:
        s.shell.outcomes["s"] = [
            failed("tests failed", output="3 of 40 failed: test_a test_b test_c"),
            failed("tests failed", output="1 of 40 failed: test_q"),
            failed("tests failed", output="2 of 40 failed: test_b test_x"),
            ok(),
        ]
        result = await s.run(chain(retries=5))

    assert result["status"] == "succeeded"
    assert s.metrics.loops == []


async def test_an_oscillation_between_two_failures_is_stopped() -> None:
    async with scheduler() as s:
        s.shell.outcomes["s"] = [
            failed("lock held by migration A"),
            failed("schema version mismatch: expected 7"),
        ] * 5
        result = await s.run(chain(retries=10))

    sub = by_id(result)["s"]
    assert sub["status"] == "loop_blocked"
    assert sub["loop"]["detector"] == "oscillation"
    assert sub["loop"]["evidence"]["period"] == 2
    assert sub["attempts"] < 11


async def test_a_step_that_may_repeat_its_failure_is_never_stopped() -> None:
    async with scheduler() as s:
        s.shell.outcomes["s"] = [failed("not ready yet")] * 8 + [ok()]
        result = await s.run(chain(retries=10, loopPrevention=False))

    assert result["status"] == "succeeded"
    assert by_id(result)["s"]["attempts"] == 9
    assert s.metrics.loops == []


async def test_the_confidence_rises_with_each_identical_failure_and_stops_at_the_level() -> None:
    # At 0.9999 the detector needs a fourth identical failure: 0.9, 0.99, 0.999, 0.9999.
    async with scheduler(loop_confidence=0.9999) as s:
        s.shell.outcomes["s"] = [failed("same")] * 10
        result = await s.run(chain(retries=10))

    sub = by_id(result)["s"]
    assert [confidence("repeated", n) for n in (1, 2, 3, 4)] == pytest.approx(
        [0.9, 0.99, 0.999, 0.9999]
    )
    assert sub["attempts"] == 4
    assert sub["loop"]["confidence"] == pytest.approx(0.9999)
    assert sub["loop"]["evidence"]["count"] == 4


async def test_a_failure_with_no_retry_left_fails_without_a_loop_verdict() -> None:
    async with scheduler() as s:
        s.shell.outcomes["s"] = [failed("same")] * 3
        result = await s.run(chain(retries=2))

    sub = by_id(result)["s"]
    assert result["status"] == "failed"
    assert sub["status"] == "failed" and sub["attempts"] == 3
    assert "loop" not in sub


async def test_fifty_healthy_tasks_with_retries_have_no_false_positive() -> None:
    async with scheduler(replicas=8) as s:
        for i in range(50):
            # Every third task is flaky: a failure whose output changes, then success.
            if i % 3 == 0:
                s.shell.outcomes[f"t{i}"] = [failed("flaky", output=f"attempt {i} run 1"), ok()]
        result = await s.run(
            {"type": "many", "subtasks": [shell_step(f"t{i}", retries=3) for i in range(50)]},
            {"maxConcurrency": 8},
        )

    assert result["status"] == "succeeded"
    assert s.metrics.loops == []


async def test_a_retry_storm_stops_the_tasks_retries_and_counts_once() -> None:
    """Twenty subtasks failing differently on every attempt: no single subtask repeats
    itself, but across the task the retries keep failing."""
    async with scheduler(replicas=4) as s:
        for i in range(20):
            s.shell.outcomes[f"t{i}"] = [
                failed(f"t{i} error {n}", output=f"t{i} step {n}") for n in range(1, 4)
            ]
        result = await s.run(
            {"type": "storm", "subtasks": [shell_step(f"t{i}", retries=2) for i in range(20)]},
            {"maxConcurrency": 4},
        )

    subs = by_id(result)
    blocked = [sub for sub in subs.values() if sub["status"] == "loop_blocked"]
    assert result["status"] == "loop_blocked"
    assert blocked and {sub["loop"]["detector"] for sub in blocked} == {"retry_storm"}
    assert all(sub["loop"]["confidence"] >= 0.999 for sub in blocked)
    assert blocked[0]["loop"]["evidence"]["failedRetries"] >= 15
    # Without the storm, 20 subtasks × 3 attempts would have run.
    assert len(s.shell.started) < 60
    assert s.metrics.loops == ["retry_storm"]


async def test_retries_that_keep_succeeding_are_no_storm() -> None:
    async with scheduler(replicas=4) as s:
        for i in range(40):
            s.shell.outcomes[f"t{i}"] = [failed(f"t{i} transient", output=f"t{i}"), ok()]
        result = await s.run(
            {"type": "calm", "subtasks": [shell_step(f"t{i}", retries=2) for i in range(40)]},
            {"maxConcurrency": 4},
        )
    assert result["status"] == "succeeded"
    assert s.metrics.loops == []
