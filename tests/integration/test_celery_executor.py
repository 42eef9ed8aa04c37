"""The Celery backend's leases and fencing, orchestrator side, against a real Redis broker.

No worker consumes here: the test plays the worker's part through claim, heartbeat and
report, and drives time with its own clock so that leases run out without waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.helpers.redis_server import RedisServer

from reynolds.adapters.executors.celery import CeleryExecutor
from reynolds.adapters.executors.celery_app import make_app
from reynolds.core.models import ShellAction
from reynolds.errors import Conflict
from reynolds.services.actions import Job, JobResult
from reynolds.services.ports import ActionResult

pytestmark = pytest.mark.anyio

LEASE_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def executor(redis_broker: RedisServer) -> AsyncIterator[tuple[CeleryExecutor, Clock]]:
    clock = Clock()
    app = make_app(redis_broker.url, ["devops", "platform", "code"])
    ex = CeleryExecutor(app, lease_s=LEASE_S, clock=clock)
    yield ex, clock
    await ex.aclose()


def job(subtask: str = "s1") -> Job:
    return Job(
        dispatch_id="-",
        task_id="t1",
        subtask_id=subtask,
        attempt=1,
        dispatch=1,
        pool="devops",
        action=ShellAction(kind="shell", argv=["true"]),
        argv=["true"],
        timeout_s=60,
        output_cap_bytes=1024,
        lease_s=LEASE_S,
    )


async def dispatched(ex: CeleryExecutor, number: int, subtask: str = "s1") -> Job:
    """The current dispatch once its number is `number` (sending runs in a thread)."""
    for _ in range(500):
        current = ex.current("t1", subtask)
        if current is not None and current.dispatch == number and ex.counters.dispatched >= number:
            return current
        await asyncio.sleep(0.01)
    raise AssertionError(f"dispatch {number} was not sent")


OK = JobResult(ok=True, exit_code=0, output="done\n")


async def test_a_reported_result_ends_the_run(executor: tuple[CeleryExecutor, Clock]) -> None:
    ex, _ = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    current = await dispatched(ex, 1)
    assert ex.claim(current.dispatch_id, "w1") == LEASE_S
    ex.report(current.dispatch_id, "w1", OK)
    result = await running
    assert (result.ok, result.exit_code, result.output) == (True, 0, "done\n")
    assert ex.current("t1", "s1") is None


async def test_an_expired_lease_dispatches_again_and_fences_the_old_dispatch(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, clock = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    first = await dispatched(ex, 1)
    ex.claim(first.dispatch_id, "w1")
    clock.now += LEASE_S + 0.1
    assert ex.reap() == 1
    second = await dispatched(ex, 2)
    assert second.dispatch_id != first.dispatch_id
    # The first worker comes back late: its heartbeat and its result are refused.
    with pytest.raises(Conflict):
        ex.heartbeat(first.dispatch_id, "w1")
    with pytest.raises(Conflict):
        ex.report(first.dispatch_id, "w1", JobResult(ok=False, exit_code=1))
    ex.claim(second.dispatch_id, "w2")
    ex.report(second.dispatch_id, "w2", OK)
    assert (await running).ok
    assert ex.counters.expired == 1
    assert ex.counters.fenced == 2


async def test_heartbeats_keep_a_lease_alive(executor: tuple[CeleryExecutor, Clock]) -> None:
    ex, clock = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    current = await dispatched(ex, 1)
    ex.claim(current.dispatch_id, "w1")
    for _ in range(4):
        clock.now += LEASE_S * 0.6
        ex.heartbeat(current.dispatch_id, "w1")
        assert ex.reap() == 0
    ex.report(current.dispatch_id, "w1", OK)
    assert (await running).ok
    assert ex.counters.dispatched == 1


async def test_a_claimed_non_idempotent_job_whose_worker_vanished_is_interrupted(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, clock = executor
    claimed: list[bool] = []
    running = asyncio.create_task(
        ex.run(job(), idempotent=False, on_claim=lambda: claimed.append(True))
    )
    current = await dispatched(ex, 1)
    ex.claim(current.dispatch_id, "w1")
    assert claimed == [True]
    clock.now += LEASE_S + 0.1
    ex.reap()
    result: ActionResult = await running
    assert (result.ok, result.reason) == (False, "interrupted")
    assert "not idempotent" in result.error


async def test_an_unclaimed_non_idempotent_job_is_dispatched_again(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, clock = executor
    running = asyncio.create_task(ex.run(job(), idempotent=False))
    await dispatched(ex, 1)
    clock.now += LEASE_S + 0.1
    ex.reap()
    second = await dispatched(ex, 2)
    ex.claim(second.dispatch_id, "w1")
    ex.report(second.dispatch_id, "w1", OK)
    assert (await running).ok


async def test_a_second_worker_cannot_take_a_claimed_dispatch(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, _ = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    current = await dispatched(ex, 1)
    ex.claim(current.dispatch_id, "w1")
    with pytest.raises(Conflict):
        ex.claim(current.dispatch_id, "w2")
    with pytest.raises(Conflict):
        ex.report(current.dispatch_id, "w2", OK)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # Cancelled: the dispatch is no longer current, so its worker is told to stop.
    with pytest.raises(Conflict):
        ex.heartbeat(current.dispatch_id, "w1")


async def test_the_message_reaches_the_pool_queue(
    executor: tuple[CeleryExecutor, Clock], redis_broker: RedisServer
) -> None:
    import redis

    ex, _ = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    current = await dispatched(ex, 1)
    client = redis.Redis.from_url(redis_broker.url)
    try:
        for _ in range(500):  # sending runs on the executor's thread
            if client.llen("devops"):
                break
            await asyncio.sleep(0.01)
        assert client.llen("devops") == 1
        assert client.llen("code") == 0
        assert current.dispatch_id.encode() in client.lindex("devops", 0)  # type: ignore[operator]
    finally:
        client.close()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_new_process_of_the_same_worker_takes_over_an_idempotent_dispatch(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, _ = executor
    running = asyncio.create_task(ex.run(job(), idempotent=True))
    current = await dispatched(ex, 1)
    ex.claim(current.dispatch_id, "devops-1@host/100")
    # Its pool process died; Celery redelivered the message to another process of that worker.
    ex.claim(current.dispatch_id, "devops-1@host/200")
    with pytest.raises(Conflict):
        ex.heartbeat(current.dispatch_id, "devops-1@host/100")
    with pytest.raises(Conflict):
        ex.claim(current.dispatch_id, "devops-2@other/300")
    ex.report(current.dispatch_id, "devops-1@host/200", OK)
    assert (await running).ok
    assert ex.counters.dispatched == 1


async def test_a_non_idempotent_dispatch_is_never_taken_over(
    executor: tuple[CeleryExecutor, Clock],
) -> None:
    ex, _ = executor
    running = asyncio.create_task(ex.run(job(), idempotent=False))
    current = await dispatched(ex, 1)
    ex.claim(current.dispatch_id, "devops-1@host/100")
    with pytest.raises(Conflict):
        ex.claim(current.dispatch_id, "devops-1@host/200")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
