"""The Celery backend, orchestrator side: dispatch with leases, reap, fence, watch the workers.

Every dispatch of a subtask gets a fresh `dispatch_id` (its fencing token) and a lease of
`lease_s` seconds. The worker claims the dispatch before it starts the action and renews the
lease with heartbeats while it runs; only the newest dispatch of a subtask may do either, or
report a result, so a late result of an older dispatch is rejected. The reaper ends a lease
that ran out: the subtask is dispatched again at once, unless a worker had claimed it and it
is not idempotent (it may have run: it ends `interrupted`, as after a crash).

Workers claim, renew and report through the server's inbox on the broker's Redis
(`celery_channel.py`), drained in batches by a thread of its own; an idempotent job's claim is
not waited for. The methods `claim`, `heartbeat` and `report` are what each message does.

Capacity comes from Celery's inspect API (each worker's queues and pool size); scaling uses
Celery's pool control (`pool_grow` / `pool_shrink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from celery import Celery
from pydantic import ValidationError

from reynolds.adapters.executors.celery_app import TASK_NAME
from reynolds.adapters.executors.celery_channel import Inbox, Message, Reply
from reynolds.errors import Conflict, InvalidInput
from reynolds.services.actions import Job, JobResult
from reynolds.services.ports import ActionResult

log = logging.getLogger("reynolds.celery")

# A broadcast waits this long for every worker's answer (0.5 s missed answers here).
INSPECT_TIMEOUT_S = 1.0
SEND_THREADS = 4
# How long a scaling command may take to show in the workers' pools.
SCALE_SETTLE_S = 5.0
# Worker processes an attempt may lose (taken over by the next, or its lease run out) before
# it fails as `worker_died`: one, for a process that died of something else.
MAX_WORKER_LOSSES = 1


@dataclass(slots=True)
class WorkerInfo:
    """One Celery worker as inspect saw it."""

    name: str
    pools: list[str]
    concurrency: int
    active: int = 0


@dataclass(slots=True)
class _Dispatch:
    job: Job
    lease_until: float
    future: asyncio.Future[ActionResult | None]
    on_claim: Callable[[], None] | None
    idempotent: bool
    claimed: bool = False
    worker: str | None = None
    # Workers lost by this attempt so far: its earlier dispatches' (a lease that ran out after
    # a claim) and this one's (a process of the same worker taking it over from a dead one).
    losses: int = 0


def _workers_lost(losses: int) -> ActionResult:
    return ActionResult(
        False,
        reason="worker_died",
        error=f"the worker process running it died {losses} times (a job that kills its "
        "worker?); this attempt has failed",
    )


@dataclass(slots=True)
class _Counters:
    dispatched: int = 0
    expired: int = 0
    taken_over: int = 0
    fenced: int = 0
    send_failures: int = 0


class CeleryExecutor:
    """Sends jobs to one Celery queue per pool and waits for their workers' reports."""

    def __init__(
        self,
        app: Celery,
        *,
        lease_s: float,
        monitor_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        inbox: Inbox | None = None,
    ) -> None:
        self.app = app
        self.inbox = inbox
        self.lease_s = lease_s
        self.monitor_interval_s = monitor_interval_s
        self.clock = clock
        self.workers: dict[str, WorkerInfo] = {}
        self.counters = _Counters()
        self._current: dict[tuple[str, str], _Dispatch] = {}
        self._by_id: dict[str, _Dispatch] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._on_capacity: Callable[[], None] | None = None
        self.broker_error: str | None = None
        self._threads = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="celery")
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, on_capacity: Callable[[], None]) -> None:
        """Start the reaper and the worker monitor; `on_capacity` runs after each look at the
        workers (read `capacity` there)."""
        self._on_capacity = on_capacity
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reap_loop()), loop.create_task(self._monitor_loop())]
        if self.inbox is not None:

            def handle(batch: list[Message]) -> list[Reply]:
                future = asyncio.run_coroutine_threadsafe(self._receive(batch), loop)
                return future.result()

            self.inbox.start(handle)

    async def aclose(self) -> None:
        # Revocations still being sent may finish; the reaper and the monitor stop.
        if self._background:
            await asyncio.wait(set(self._background), timeout=INSPECT_TIMEOUT_S)
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.inbox is not None:  # in a thread of its own: its reader may wait for this loop
            await asyncio.get_running_loop().run_in_executor(None, self.inbox.stop)
        await self._blocking(self.app.close)
        self._threads.shutdown(wait=False, cancel_futures=True)

    # -- running a job --------------------------------------------------------------------

    async def run(
        self,
        job: Job,
        *,
        idempotent: bool,
        on_claim: Callable[[], None] | None = None,
    ) -> ActionResult:
        """Dispatch `job` until a worker reports its end; see the module's docstring."""
        loop = asyncio.get_running_loop()
        # Past this, nobody is running it any more: its own timeout would have ended it.
        give_up_at = self.clock() + job.timeout_s + 4 * self.lease_s
        number = job.dispatch
        losses = 0
        while True:
            current = job.model_copy(
                update={
                    "dispatch_id": uuid.uuid4().hex,
                    "dispatch": number,
                    "inbox": self.inbox.key if self.inbox is not None else None,
                    "idempotent": idempotent,
                }
            )
            dispatch = _Dispatch(
                current,
                self.clock() + self.lease_s,
                loop.create_future(),
                on_claim,
                idempotent,
                losses=losses,
            )
            key = (job.task_id, job.subtask_id)
            self._current[key] = dispatch
            self._by_id[current.dispatch_id] = dispatch
            try:
                await self._send(current)
                outcome = await dispatch.future
            except asyncio.CancelledError:
                self._forget(key, dispatch)
                self._revoke_soon(current.dispatch_id)
                raise
            self._forget(key, dispatch)
            if outcome is not None:
                return outcome
            # The lease ran out.
            self.counters.expired += 1
            self._revoke_soon(current.dispatch_id)
            who = f" on {dispatch.worker}" if dispatch.worker else ""
            losses = dispatch.losses + (1 if dispatch.claimed else 0)
            if losses > MAX_WORKER_LOSSES:
                return _workers_lost(losses)
            if dispatch.claimed and not idempotent:
                return ActionResult(
                    False,
                    reason="interrupted",
                    error=f"the worker running it{who} stopped answering (lease expired); "
                    "not run again because the step is not idempotent",
                )
            if self.clock() > give_up_at:
                return ActionResult(
                    False,
                    reason="timeout",
                    error="no worker finished it before its timeout (leases kept expiring)",
                )
            log.warning(
                "lease of %s/%s dispatch %d expired%s; dispatching again",
                job.task_id,
                job.subtask_id,
                number,
                who,
            )
            number += 1

    async def _send(self, job: Job) -> None:
        self.counters.dispatched += 1
        payload = job.model_dump(mode="json", by_alias=True)
        try:
            await self._blocking(
                self.app.send_task,
                TASK_NAME,
                args=[payload],
                queue=job.pool,
                task_id=job.dispatch_id,
                # What monitors show for the arguments (Celery would repr the whole payload).
                argsrepr=f"{job.task_id}/{job.subtask_id} attempt {job.attempt}",
                kwargsrepr="",
            )
            self.broker_error = None
        except Exception as exc:  # the broker is away: the lease's expiry sends it again
            self.counters.send_failures += 1
            self.broker_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not send %s/%s: %s", job.task_id, job.subtask_id, exc)

    def _forget(self, key: tuple[str, str], dispatch: _Dispatch) -> None:
        self._by_id.pop(dispatch.job.dispatch_id, None)
        if self._current.get(key) is dispatch:
            del self._current[key]

    def _revoke_soon(self, dispatch_id: str) -> None:
        """Keep a dispatch that has not started from starting. One that runs is stopped by
        fencing: its next heartbeat is refused and the worker kills the action's process
        group (Celery's `terminate` would kill the worker process and orphan the action)."""

        async def revoke() -> None:
            try:
                await self._blocking(self.app.control.revoke, dispatch_id)
            except Exception as exc:
                log.debug("revoke of %s failed: %s", dispatch_id, exc)

        task = asyncio.get_running_loop().create_task(revoke())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _blocking(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking Celery call on the executor's own threads: while Redis is away its
        calls wait, and they must not hold the threads the rest of the server reads with."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(call, *args, **kwargs))

    def current(self, task_id: str, subtask_id: str) -> Job | None:
        """The dispatch of a subtask that workers may act on now, if any."""
        dispatch = self._current.get((task_id, subtask_id))
        return dispatch.job if dispatch is not None else None

    def describe(self) -> dict[str, Any]:
        """Workers last seen and what the leases did, for `/status`."""
        c = self.counters
        return {
            "workers": [
                {"name": w.name, "pools": w.pools, "concurrency": w.concurrency}
                for w in sorted(self.workers.values(), key=lambda w: w.name)
            ],
            "inflight": len(self._by_id),
            "claimed": sum(1 for d in self._by_id.values() if d.claimed),
            "dispatched": c.dispatched,
            "expiredLeases": c.expired,
            "takenOver": c.taken_over,
            "staleReports": c.fenced,
            "sendFailures": c.send_failures,
            "leaseSeconds": self.lease_s,
            "brokerError": self.broker_error or (self.inbox.error if self.inbox else None),
            "received": self.inbox.received if self.inbox is not None else 0,
        }

    # -- what workers report (through the inbox) -------------------------------------------

    async def _receive(self, batch: list[Message]) -> list[Reply]:
        """Apply a batch of worker messages in order; the answers the workers wait for."""
        replies: list[Reply] = []
        for message in batch:
            answer = self._apply(message)
            reply_to = message.get("r")
            if answer is not None and isinstance(reply_to, str) and reply_to:
                replies.append((reply_to, answer))
        return replies

    def _apply(self, message: Message) -> dict[str, Any] | None:
        kind, dispatch_id, worker = message.get("k"), message.get("d"), message.get("w")
        if not isinstance(dispatch_id, str) or not isinstance(worker, str):
            log.warning("dropped a worker message without a dispatch or a worker")
            return None
        try:
            if kind == "result":
                self.report(dispatch_id, worker, JobResult.model_validate(message.get("result")))
                return None
            if kind == "claim":
                return {"leaseSeconds": self.claim(dispatch_id, worker)}
            if kind == "heartbeat":
                return {"leaseSeconds": self.heartbeat(dispatch_id, worker)}
        except Conflict as exc:
            if kind == "result":  # nobody waits for the answer: the refusal is logged here
                log.info(
                    "dropped a stale result",
                    extra={
                        "fields": {"dispatchId": dispatch_id, "worker": worker, "why": exc.message}
                    },
                )
            return {"stale": exc.message}
        except ValidationError as exc:
            # The fields only: the values may be an action's output.
            where = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            log.warning("dropped the malformed result of %s (%s)", dispatch_id, ", ".join(where))
            return None
        log.warning("dropped a worker message of unknown kind %.50r", kind)
        return None

    def _live(self, dispatch_id: str) -> _Dispatch:
        dispatch = self._by_id.get(dispatch_id)
        if dispatch is None or dispatch.future.done():
            self.counters.fenced += 1
            raise Conflict(
                "this dispatch is no longer current (a newer attempt or dispatch replaced it, "
                "or the task ended); stop and drop it",
                dispatchId=dispatch_id,
            )
        return dispatch

    def claim(self, dispatch_id: str, worker: str) -> float:
        """A worker takes a dispatch before it starts; returns the lease in seconds."""
        dispatch = self._live(dispatch_id)
        if dispatch.claimed and dispatch.worker != worker:
            if not (dispatch.idempotent and _node(dispatch.worker) == _node(worker)):
                self.counters.fenced += 1
                raise Conflict("another worker has claimed this dispatch", dispatchId=dispatch_id)
            # The same Celery worker hands a message back at once when the pool process that
            # claimed it dies (reject_on_worker_lost): its next process takes over, rather
            # than waiting for the lease. The old one, were it alive, is refused from now on.
            # A job that kills every process that takes it is not taken over without end:
            # past a few losses its attempt fails, and its retries and breaker apply.
            dispatch.losses += 1
            self.counters.taken_over += 1  # the dead process's lease ended without a result
            if dispatch.losses > MAX_WORKER_LOSSES:
                dispatch.future.set_result(_workers_lost(dispatch.losses))
                self.counters.fenced += 1
                raise Conflict(
                    "this job's workers keep dying; its attempt has failed", dispatchId=dispatch_id
                )
            log.info("%s takes over %s from %s", worker, dispatch_id, dispatch.worker)
        first = not dispatch.claimed
        dispatch.claimed = True
        dispatch.worker = worker
        dispatch.lease_until = self.clock() + self.lease_s
        if first and dispatch.on_claim is not None:
            dispatch.on_claim()
        return self.lease_s

    def heartbeat(self, dispatch_id: str, worker: str) -> float:
        """A worker renews the lease of the dispatch it runs."""
        dispatch = self._live(dispatch_id)
        if dispatch.worker is not None and dispatch.worker != worker:
            self.counters.fenced += 1
            raise Conflict("another worker holds this dispatch", dispatchId=dispatch_id)
        return self.claim(dispatch_id, worker)

    def report(self, dispatch_id: str, worker: str, result: JobResult) -> None:
        """A worker's result; accepted only from the current dispatch."""
        dispatch = self._live(dispatch_id)
        if dispatch.worker is not None and dispatch.worker != worker:
            self.counters.fenced += 1
            raise Conflict("another worker holds this dispatch", dispatchId=dispatch_id)
        dispatch.future.set_result(result.to_result())

    # -- the reaper -----------------------------------------------------------------------

    def reap(self) -> int:
        """End every dispatch whose lease ran out; how many."""
        now = self.clock()
        expired = [d for d in self._by_id.values() if d.lease_until < now and not d.future.done()]
        for dispatch in expired:
            dispatch.future.set_result(None)
        return len(expired)

    async def _reap_loop(self) -> None:
        interval_s = min(1.0, self.lease_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            self.reap()

    # -- workers, capacity and scaling ----------------------------------------------------

    def inspect_workers(self) -> dict[str, WorkerInfo]:
        """Ask every worker for its queues and pool size (blocking: call from a thread)."""
        inspect = self.app.control.inspect(timeout=INSPECT_TIMEOUT_S)
        queues: dict[str, Any] = inspect.active_queues() or {}
        stats: dict[str, Any] = inspect.stats() or {}
        workers = {}
        for name, answer in queues.items():
            pools = [q.get("name", "") for q in answer or [] if isinstance(q, dict)]
            pool = (stats.get(name) or {}).get("pool") or {}
            # The prefork pool's process list follows pool_grow / pool_shrink; its
            # `max-concurrency` stays at the start value.
            processes = pool.get("processes")
            concurrency = pool.get("max-concurrency")
            if isinstance(processes, list):
                concurrency = len(processes)
            elif not isinstance(concurrency, int):
                concurrency = 0
            workers[name] = WorkerInfo(name, pools, concurrency)
        return workers

    def capacity(self, pools: list[str]) -> dict[str, int]:
        """Slots per pool from the workers last seen."""
        slots = dict.fromkeys(pools, 0)
        for worker in self.workers.values():
            for pool in worker.pools:
                if pool in slots:
                    slots[pool] += worker.concurrency
        return slots

    async def refresh(self, *, notify: bool = True) -> None:
        """Look at the workers again; `notify` runs the capacity callback after."""
        try:
            self.workers = await self._blocking(self.inspect_workers)
            self.broker_error = None
        except Exception as exc:
            self.broker_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not inspect the Celery workers: %s", exc)
            self.workers = {}
        if notify and self._on_capacity is not None:
            self._on_capacity()

    async def _monitor_loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.monitor_interval_s)

    async def scale(self, pool: str, target: int, current: int) -> None:
        """Grow or shrink the pool processes of `pool`'s workers by `target - current`."""
        workers = sorted(
            (w for w in self.workers.values() if pool in w.pools), key=lambda w: w.concurrency
        )
        if not workers:
            raise InvalidInput(
                f"no Celery worker serves the {pool} queue; start one with "
                f"`reynolds agent --type {pool}`",
                field="agentType",
            )
        delta = target - current
        control = self.app.control
        # Spread the change: grow the smallest workers first, shrink the largest first.
        order = workers if delta > 0 else list(reversed(workers))
        steps: dict[str, int] = {}
        for i in range(abs(delta)):
            worker = order[i % len(order)]
            if delta < 0 and worker.concurrency - steps.get(worker.name, 0) <= 1:
                continue  # a worker keeps one process; stop the worker to go lower
            steps[worker.name] = steps.get(worker.name, 0) + 1
        for name, n in steps.items():
            command = control.pool_grow if delta > 0 else control.pool_shrink
            await self._blocking(command, n, destination=[name], reply=True, timeout=1.0)
        # The pools answer "will grow" and change a moment later: watch for the new size.
        deadline = self.clock() + SCALE_SETTLE_S
        while True:
            await self.refresh(notify=False)  # the caller records the change with its reason
            if self.capacity([pool])[pool] == target or self.clock() > deadline:
                return


def _node(worker: str | None) -> str | None:
    """The Celery worker (node) of a worker process id `node/pid`; an id of another form
    is a node of its own."""
    if worker is None:
        return None
    node, slash, _ = worker.rpartition("/")
    return node if slash else worker
