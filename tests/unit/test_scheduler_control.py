"""The scheduler on the in-memory store and scripted actions: timeouts and cancellation as
it sees them, and resuming what a stopped scheduler left."""

from __future__ import annotations

import asyncio

import pytest
from tests.helpers.scheduler import FakeClock, by_id, scheduler, shell_step, until

from reynolds.adapters.store.memory import MemoryStore
from reynolds.errors import Conflict, NotFound
from reynolds.services.ports import ActionResult

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def timed_out(after_s: float) -> ActionResult:
    return ActionResult(False, error=f"timed out after {after_s:g} s", reason="timeout")


async def test_a_subtask_is_given_its_own_timeout_else_the_default() -> None:
    async with scheduler(default_timeout_s=90.0) as s:
        await s.run(
            {"type": "t", "subtasks": [shell_step("own", timeoutSeconds=7), shell_step("plain")]}
        )

    assert s.shell.contexts["own"].timeout_s == 7
    assert s.shell.contexts["plain"].timeout_s == 90.0


async def test_a_timed_out_attempt_is_retried_and_then_fails_with_reason_timeout() -> None:
    async with scheduler() as s:
        s.shell.outcomes["slow"] = [timed_out(7), timed_out(7)]
        steps = [shell_step("slow", retries=1, timeoutSeconds=7), shell_step("next", "slow")]
        result = await s.run({"type": "t", "subtasks": steps})

    subs = by_id(result)
    assert (subs["slow"]["status"], subs["slow"]["reason"]) == ("failed", "timeout")
    assert subs["slow"]["attempts"] == 2
    assert subs["next"]["status"] == "skipped"
    assert result["status"] == "failed"


async def test_cancelling_stops_running_attempts_and_cancels_what_waits() -> None:
    async with scheduler() as s:
        s.shell.gates["long"] = asyncio.Event()  # never set: only cancellation ends it
        steps = [shell_step("long"), shell_step("later", "long"), shell_step("quick")]
        run = await s.submit({"type": "c", "subtasks": steps})
        assert await until(lambda: "end quick" in s.shell.log and "long" in s.shell.started)

        result = await s.engine.cancel(run.id)

        subs = by_id(result)
        assert result["status"] == "cancelled"
        assert s.shell.cancelled == ["long"]
        assert (subs["long"]["status"], subs["long"]["reason"]) == ("cancelled", "cancelled")
        assert (subs["later"]["status"], subs["later"]["reason"]) == ("cancelled", "cancelled")
        assert subs["quick"]["status"] == "succeeded"
        assert "later" not in s.shell.started
        assert s.engine.free == {"work": 4}
        with pytest.raises(Conflict):
            await s.engine.cancel(run.id)
        with pytest.raises(NotFound):
            await s.engine.cancel("no-such-task")


async def test_a_cancelled_retry_waiting_for_its_backoff_does_not_run_again() -> None:
    async with scheduler(retry_base_s=30.0, retry_cap_s=30.0) as s:
        s.shell.outcomes["flaky"] = [ActionResult(False, exit_code=1, reason="exit")]
        run = await s.submit({"type": "c", "subtasks": [shell_step("flaky", retries=3)]})
        assert await until(lambda: "end flaky" in s.shell.log)

        result = await s.engine.cancel(run.id)
        await until(lambda: False, turns=20, patience_s=0)

    assert result["status"] == "cancelled"
    assert s.shell.started == ["flaky"]


async def test_a_restarted_scheduler_resumes_what_a_stopped_one_left() -> None:
    clock = FakeClock()
    store = MemoryStore(batch_interval_s=0.0, clock=clock)
    steps = [
        shell_step("setup"),
        shell_step("migrate", "setup", idempotent=False),
        shell_step("build", "setup"),
        shell_step("deploy", "migrate"),
        shell_step("report", "build"),
    ]
    try:
        async with scheduler(store=store, clock=clock) as first:
            first.shell.gates = {"migrate": asyncio.Event(), "build": asyncio.Event()}
            run = await first.submit({"type": "r", "subtasks": steps}, {"maxConcurrency": 4})
            assert await until(lambda: {"migrate", "build"} <= set(first.shell.started))
        # Stopped mid-run: migrate and build were running.
        assert sorted(first.shell.cancelled) == ["build", "migrate"]

        async with scheduler(store=store, clock=clock) as second:
            assert await second.engine.resume() == [run.id]
            resumed = second.engine.find(run.id)
            assert resumed is not None and await second.engine.wait(resumed, 10)
            result = await second.engine.result(run.id)
    finally:
        store.close()

    subs = by_id(result)
    assert second.orphans.sweeps == 1
    assert sorted(second.orphans.asked) == sorted(first.shell.pids[n] for n in ("migrate", "build"))
    assert sorted(second.shell.started) == ["build", "report"]
    assert (subs["setup"]["status"], subs["setup"]["attempts"]) == ("succeeded", 1)
    assert (subs["migrate"]["status"], subs["migrate"]["reason"]) == ("failed", "interrupted")
    assert subs["deploy"]["status"] == "skipped"
    assert (subs["build"]["status"], subs["build"]["attempts"]) == ("succeeded", 2)
    assert subs["report"]["status"] == "succeeded"
    assert result["status"] == "failed"


async def test_a_stored_task_today_s_rules_refuse_fails_instead_of_running() -> None:
    clock = FakeClock()
    store = MemoryStore(batch_interval_s=0.0, clock=clock)
    try:
        async with scheduler(store=store, clock=clock) as first:
            first.shell.gates["a"] = asyncio.Event()
            run = await first.submit({"type": "r", "subtasks": [shell_step("a")]})
            assert await until(lambda: "a" in first.shell.started)
        store.put_task({"id": run.id, "strategy": {"approach": "no-such-approach"}})
        store.flush_sync()

        async with scheduler(store=store, clock=clock) as second:
            assert await second.engine.resume() == []
            result = await second.engine.result(run.id)
    finally:
        store.close()

    assert result["status"] == "failed"
    assert by_id(result)["a"]["reason"] == "invalid"
    assert second.shell.started == []
