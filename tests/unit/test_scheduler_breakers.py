"""Circuit breakers and adaptive concurrency on the scheduler: an open pool takes no work but
its probe, work for an open downstream waits, an overloaded downstream gets fewer attempts."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.scheduler import Scheduler, by_id, scheduler, until

from reynolds.core.models import Status
from reynolds.core.pools import PoolSet
from reynolds.services.ports import ActionResult
from reynolds.services.runs import TaskRun

pytestmark = pytest.mark.anyio

COOLDOWN_S = 30.0
REFUSED = ActionResult(False, exit_code=7, error="curl: (7) Failed to connect: Connection refused")
TESTS_FAIL = ActionResult(False, exit_code=1, error="2 tests failed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def two_pools(**extra: Any) -> PoolSet:
    """`a` and `b`, two replicas each, no capabilities: unpinned work may go to either."""

    def spec(name: str) -> dict[str, object]:
        return {"name": name, "replicas": {"min": 1, "max": 4, "initial": 2}, **extra}

    return PoolSet.from_mapping({"pools": {"a": spec("a"), "b": spec("b")}}, source="test")


def step(sid: str, exe: str = "work", **options: Any) -> dict[str, Any]:
    return {"id": sid, "action": {"kind": "shell", "argv": [exe, sid]}, **options}


async def breaker_events(s: Scheduler) -> list[tuple[str, str, str]]:
    await s.store.flush()
    rows = [e for e in s.store.events("") if e["kind"] == "circuit_breaker"]
    return [
        (e["data"].get("agentType") or e["data"]["downstream"], e["data"]["from"], e["data"]["to"])
        for e in rows
    ]


async def run_task(s: Scheduler, steps: list[dict[str, Any]], **strategy: Any) -> TaskRun:
    run = await s.submit({"type": "t", "subtasks": steps}, strategy or None)
    return run


async def test_an_open_pool_sends_its_work_elsewhere_until_a_probe_closes_it() -> None:
    async with scheduler(
        pool_set=two_pools(), breaker_failures=2, breaker_cooldown_s=COOLDOWN_S
    ) as s:
        s.shell.outcomes = {"f1": [REFUSED], "f2": [REFUSED]}
        failing = await run_task(s, [step("f1", agent="a"), step("f2", agent="a")])
        assert await s.engine.wait(failing, 5)
        assert s.engine.control.circuit("a") == "open"
        assert s.metrics.breakers["a"] is True and s.metrics.breakers["b"] is False
        # Every failure came from a: the pool is to blame, not the command.
        assert s.engine.dispatch.guards.downstreams.get("exec:work") is None
        assert s.engine.control.healthy("a") == 0 and s.engine.control.healthy("b") == 2

        # Unpinned work goes to b only while a is open.
        spread = await run_task(s, [step(f"u{i}") for i in range(4)])
        assert await s.engine.wait(spread, 5)
        result = by_id(await s.engine.result(spread.id))
        assert {sub["agentType"] for sub in result.values()} == {"b"}

        # Past the cool-down, the next subtask is a's probe; its success closes the breaker.
        s.clock.advance(COOLDOWN_S)
        probe = await run_task(s, [step("p")])
        assert await s.engine.wait(probe, 5)
        assert by_id(await s.engine.result(probe.id))["p"]["agentType"] == "a"
        assert s.engine.control.circuit("a") == "closed"
        assert s.metrics.breakers["a"] is False
        assert (await breaker_events(s)) == [
            ("a", "closed", "open"),
            ("a", "open", "half_open"),
            ("a", "half_open", "closed"),
        ]
        await s.store.flush()
        audit = [r for r in s.store.audit(limit=100) if r["kind"] == "breaker"]
        assert [(r["pool"], r["outcome"], r["decision"]) for r in audit][-3:] == [
            ("a", "closed", "open"),
            ("a", "open", "half_open"),
            ("a", "half_open", "closed"),
        ]


async def test_work_pinned_to_an_open_pool_waits_for_the_probe_instead_of_failing() -> None:
    async with scheduler(
        pool_set=two_pools(), breaker_failures=2, breaker_cooldown_s=COOLDOWN_S
    ) as s:
        s.shell.outcomes = {"f1": [REFUSED], "f2": [REFUSED]}
        assert await s.engine.wait(
            await run_task(s, [step("f1", agent="a"), step("f2", agent="a")]), 5
        )
        pinned = await run_task(s, [step("w", agent="a")])
        assert not await until(
            lambda: pinned.subs["w"].status is not Status.READY, turns=50, patience_s=0
        )
        s.clock.advance(COOLDOWN_S)
        s.engine.dispatch.pump()  # what the cool-down's timer does
        assert await s.engine.wait(pinned, 5)
        assert pinned.subs["w"].status is Status.SUCCEEDED


async def test_a_failed_probe_opens_the_pool_again_for_twice_as_long() -> None:
    async with scheduler(
        pool_set=two_pools(), breaker_failures=2, breaker_cooldown_s=COOLDOWN_S
    ) as s:
        s.shell.outcomes = {"f1": [REFUSED], "f2": [REFUSED], "w": [REFUSED]}
        assert await s.engine.wait(
            await run_task(s, [step("f1", agent="a"), step("f2", agent="a")]), 5
        )
        s.clock.advance(COOLDOWN_S)
        assert await s.engine.wait(await run_task(s, [step("w", agent="a")]), 5)
        view = s.engine.control.guards
        assert view is not None
        assert s.engine.control.circuit("a") == "open"
        assert view.pool_view("a", view.clock())["reopensInSeconds"] == 2 * COOLDOWN_S


async def test_work_that_fails_on_its_own_terms_never_opens_a_breaker() -> None:
    async with scheduler(pool_set=two_pools(), breaker_failures=2) as s:
        s.shell.outcomes = {f"t{i}": [TESTS_FAIL] for i in range(6)}
        run = await run_task(s, [step(f"t{i}", agent="a") for i in range(6)])
        assert await s.engine.wait(run, 5)
        assert {sub.status for sub in run.subs.values()} == {Status.FAILED}
        assert s.engine.control.circuit("a") == "closed"
        assert s.engine.dispatch.guards.downstream_views(s.engine.clock()) == []
        assert (await breaker_events(s)) == []


async def test_an_open_downstream_holds_its_own_work_and_lets_other_work_run() -> None:
    async with scheduler(
        pool_set=two_pools(), breaker_failures=2, breaker_cooldown_s=COOLDOWN_S
    ) as s:
        s.shell.outcomes = {"c1": [REFUSED], "c2": [REFUSED]}
        first = await run_task(s, [step("c1", "curl", agent="a"), step("c2", "curl", agent="b")])
        assert await s.engine.wait(first, 5)
        # It failed from both pools: curl's fault, not theirs.
        assert (await breaker_events(s)) == [("exec:curl", "closed", "open")]
        assert s.engine.control.circuit("a") == s.engine.control.circuit("b") == "closed"

        later = await run_task(s, [step("c3", "curl"), step("other", "make")])
        assert await until(lambda: later.subs["other"].status is Status.SUCCEEDED)
        assert later.subs["c3"].status is Status.READY  # waiting, not failed
        (view,) = s.engine.dispatch.guards.downstream_views(s.engine.clock())
        assert view["downstream"] == "exec:curl"
        assert view["breaker"]["state"] == "open"  # type: ignore[index]

        s.clock.advance(COOLDOWN_S)
        s.engine.dispatch.pump()
        assert await s.engine.wait(later, 5)
        assert later.subs["c3"].status is Status.SUCCEEDED
        assert (await breaker_events(s))[-1] == ("exec:curl", "half_open", "closed")
        assert s.metrics.breakers["exec:curl"] is False


async def test_an_overload_answer_lowers_the_downstreams_concurrency_and_is_no_loop() -> None:
    rules = {"overload": {"tool": {"exitCodes": [75]}}}
    busy = ActionResult(False, exit_code=75, error="server busy")
    async with scheduler(pool_set=two_pools(**rules)) as s:
        # Eight calls at once; the first answers "busy" three times (identical: a loop if
        # it were judged as one), then succeeds.
        s.shell.outcomes = {"t0": [busy, busy, busy]}
        steps = [step(f"t{i}", "tool", retries=5) for i in range(8)]
        run = await run_task(s, steps, maxConcurrency=8)
        assert await s.engine.wait(run, 5)
        assert {sub.status for sub in run.subs.values()} == {Status.SUCCEEDED}
        assert run.subs["t0"].attempts == 4
        assert run.subs["t0"].detail is not None
        assert run.subs["t0"].detail["overload"] == "exit code 75"
        limits = [v for k, v in s.metrics.limits.items() if k == "exec:tool"]
        assert limits, "no limit was set for the overloaded downstream"
        assert s.metrics.loops == []


async def test_with_adaptive_concurrency_off_an_overload_sets_no_limit() -> None:
    rules = {"overload": {"tool": {"exitCodes": [75]}}}
    busy = ActionResult(False, exit_code=75, error="server busy")
    async with scheduler(pool_set=two_pools(**rules), adaptive_concurrency=False) as s:
        s.shell.outcomes = {"t0": [busy]}
        run = await run_task(s, [step("t0", "tool", retries=1)])
        assert await s.engine.wait(run, 5)
        assert s.metrics.limits == {}
        assert s.engine.dispatch.guards.limiters == {}
