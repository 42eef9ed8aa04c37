"""Workers' claims, heartbeats and results through the dispatching server's inbox on a real
Redis: the worker's side (`WorkerChannel`, as `celery_agent` uses it) against the server's
(`Inbox` drained into a `CeleryExecutor`), with no Celery worker and no HTTP in between."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from tests.helpers.redis_server import RedisServer
from tests.integration.test_celery_executor import LEASE_S, job

from reynolds.adapters.executors.celery import CeleryExecutor
from reynolds.adapters.executors.celery_app import make_app
from reynolds.adapters.executors.celery_channel import (
    STARTED_PREFIX,
    Inbox,
    Stale,
    Unanswered,
    WorkerChannel,
    channel_client,
    inbox_key,
)
from reynolds.services.actions import Job, JobResult

pytestmark = pytest.mark.anyio

OK = JobResult(ok=True, exit_code=0, output="done\n").model_dump(mode="json", by_alias=True)


@pytest.fixture
async def executor(redis_broker: RedisServer) -> AsyncIterator[CeleryExecutor]:
    app = make_app(redis_broker.url, ["devops", "platform", "code"])
    inbox = Inbox(channel_client(redis_broker.url), inbox_key("server-1"))
    ex = CeleryExecutor(app, lease_s=LEASE_S, inbox=inbox, monitor_interval_s=60.0)
    ex.start(lambda: None)
    yield ex
    await ex.aclose()


@pytest.fixture
def channel(redis_broker: RedisServer) -> Iterator[Callable[[str], WorkerChannel]]:
    made: list[WorkerChannel] = []

    def make(worker: str) -> WorkerChannel:
        made.append(WorkerChannel(channel_client(redis_broker.url), worker))
        return made[-1]

    yield make
    for one in made:
        one.client.close()


async def dispatched(ex: CeleryExecutor) -> Job:
    for _ in range(500):
        current = ex.current("t1", "s1")
        if current is not None and ex.counters.dispatched:
            return current
        await asyncio.sleep(0.01)
    raise AssertionError("the job was not sent")


async def blocking(call: Callable[[], Any]) -> Any:
    """A worker's call waits for the server's answer: off the loop that gives it."""
    return await asyncio.to_thread(call)


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_an_idempotent_job_is_claimed_without_waiting_and_its_result_ends_the_run(
    executor: CeleryExecutor, channel: Callable[[str], WorkerChannel]
) -> None:
    claimed: list[bool] = []
    running = asyncio.create_task(
        executor.run(job(), idempotent=True, on_claim=lambda: claimed.append(True))
    )
    current = await dispatched(executor)
    assert current.inbox == executor.inbox.key  # type: ignore[union-attr]
    assert current.idempotent is True
    worker = channel("devops-1@host/100")
    lease = worker.claim(current.inbox, current.dispatch_id, wait=False, ttl_s=60)
    assert lease is None  # pushed, not waited for
    await until(lambda: claimed == [True], "the server never saw the claim")
    worker.report(current.inbox, current.dispatch_id, OK)  # type: ignore[arg-type]
    result = await running
    assert (result.ok, result.exit_code, result.output) == (True, 0, "done\n")
    # The report forgets the start marker.
    assert not worker.client.exists(STARTED_PREFIX + current.dispatch_id)


async def test_a_non_idempotent_claim_waits_for_the_answer_and_a_stale_one_is_refused(
    executor: CeleryExecutor, channel: Callable[[str], WorkerChannel]
) -> None:
    running = asyncio.create_task(executor.run(job(), idempotent=False))
    current = await dispatched(executor)
    assert current.inbox is not None and current.idempotent is False
    worker = channel("devops-1@host/100")
    lease = await blocking(
        lambda: worker.claim(current.inbox, current.dispatch_id, wait=True, ttl_s=10)
    )
    assert lease == LEASE_S
    assert (
        await blocking(
            lambda: worker.ask(current.inbox, "heartbeat", current.dispatch_id, deadline_s=10)
        )
        == LEASE_S
    )
    # Another worker may not take it; nor may anyone once the run is cancelled.
    other = channel("devops-2@other/300")
    with pytest.raises(Stale, match="another worker"):
        await blocking(lambda: other.claim(current.inbox, current.dispatch_id, wait=True, ttl_s=10))
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(Stale, match="no longer current"):
        await blocking(
            lambda: worker.ask(current.inbox, "heartbeat", current.dispatch_id, deadline_s=10)
        )
    assert executor.counters.fenced == 2


async def test_a_redelivered_idempotent_job_asks_and_a_poison_is_refused_after_one_loss(
    executor: CeleryExecutor, channel: Callable[[str], WorkerChannel]
) -> None:
    running = asyncio.create_task(executor.run(job(), idempotent=True))
    current = await dispatched(executor)
    inbox, dispatch_id = current.inbox, current.dispatch_id
    assert inbox is not None
    # The first process claims without waiting, then dies; Celery hands the message to the
    # next process of the same worker, whose claim finds the marker and waits: taken over.
    first = channel("devops-1@host/100")
    assert first.claim(inbox, dispatch_id, wait=False, ttl_s=60) is None
    second = channel("devops-1@host/200")
    assert await blocking(lambda: second.claim(inbox, dispatch_id, wait=False, ttl_s=60)) == LEASE_S
    assert executor.counters.taken_over == 1
    # It dies too: the third process is told to drop it, and the attempt has failed.
    third = channel("devops-1@host/300")
    with pytest.raises(Stale):
        await blocking(lambda: third.claim(inbox, dispatch_id, wait=False, ttl_s=60))
    result = await running
    assert (result.ok, result.reason) == (False, "worker_died")


async def test_a_malformed_message_is_dropped_and_the_inbox_reads_on(
    executor: CeleryExecutor, channel: Callable[[str], WorkerChannel], redis_broker: RedisServer
) -> None:
    running = asyncio.create_task(executor.run(job(), idempotent=True))
    current = await dispatched(executor)
    assert current.inbox is not None
    client = redis.Redis.from_url(redis_broker.url)
    try:
        for junk in (b"not json", b"[1, 2]", json.dumps({"k": "result", "d": 5}).encode()):
            client.rpush(current.inbox, junk)
        bad = {"k": "result", "d": current.dispatch_id, "w": "x", "result": {"ok": "yes"}}
        client.rpush(current.inbox, json.dumps(bad))
    finally:
        client.close()
    worker = channel("devops-1@host/100")
    worker.report(current.inbox, current.dispatch_id, OK)
    assert (await running).ok


async def test_a_claim_nobody_answers_gives_up_at_its_deadline(
    channel: Callable[[str], WorkerChannel],
) -> None:
    worker = channel("devops-1@host/100")
    with pytest.raises(Unanswered):
        await blocking(lambda: worker.ask(inbox_key("gone"), "claim", "d-1", deadline_s=1.0))


def test_a_worker_that_cannot_renew_its_lease_stops_its_action() -> None:
    """A heartbeat nobody answers for longer than the lease (the server restarted with a new
    inbox, or died): the server has dispatched the job again, so the action is stopped."""
    from reynolds.entrypoints import celery_agent

    class Silent:
        calls = 0

        def heartbeat(self, job: Job, within_s: float) -> float:
            Silent.calls += 1
            raise Unanswered("nobody reads this inbox")

    agent = celery_agent.Agent.__new__(celery_agent.Agent)
    agent.orchestrator = Silent()  # type: ignore[assignment]
    agent.loop = asyncio.new_event_loop()
    try:
        action = agent.loop.create_task(asyncio.sleep(30))
        stop = threading.Event()
        beats = threading.Thread(target=agent._heartbeats, args=(job(), 0.3, stop, action))
        started = time.monotonic()
        beats.start()
        with pytest.raises(asyncio.CancelledError):
            agent.loop.run_until_complete(action)
        took = time.monotonic() - started
        stop.set()
        beats.join(5)
    finally:
        agent.loop.close()
    assert took < 5  # not the action's 30 s
    assert Silent.calls >= 2  # it tried again before giving the lease up
