"""Servers sharing a store: each takes over the unfinished tasks of servers found dead, every
third of the takeover interval, and stops its own run of a task another server has taken (it
was found dead itself: the store's fence leaves out whatever it writes of that task).

A cancel that reaches a server not running the task (behind a load balancer, say) marks the
task's row; its owner looks for such marks every `CANCEL_POLL_S` and cancels, and the server
asked waits for the task to end (at most `CANCEL_WAIT_S`) before it answers. A task whose
owner died is cancelled by whichever server takes it over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from reynolds.core.models import FINISHED
from reynolds.services.dispatch import Dispatcher
from reynolds.services.live_runs import LiveRuns
from reynolds.services.ports import Store
from reynolds.services.resumption import Resumption
from reynolds.services.runs import TaskRun

log = logging.getLogger("reynolds.engine")

CANCEL_POLL_S = 0.5
CANCEL_WAIT_S = 10.0


class Takeover:
    """The takeover loop of one engine, and what it does with the tasks it lost."""

    def __init__(
        self,
        *,
        store: Store,
        runs: LiveRuns,
        dispatch: Dispatcher,
        resumption: Resumption,
        interval_s: float,
    ) -> None:
        self.store = store
        self.runs = runs
        self.dispatch = dispatch
        self.resumption = resumption
        self.interval_s = interval_s
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def lost(task_ids: set[str]) -> None:  # in the store's writer thread
            loop.call_soon_threadsafe(self._lost, task_ids)

        self.store.on_lost(lost)
        self._spawn(self._every())
        self._spawn(self._cancels())

    async def stop(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s / 3)
            try:
                await self.resumption.take_over(self.interval_s)
            except Exception:  # the next round tries again
                log.exception("taking over a dead server's tasks failed")

    async def _cancels(self) -> None:
        """Cancel this server's tasks that another server was asked to cancel."""
        failing = False
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            try:
                asked = await asyncio.to_thread(self.store.cancel_requests)
            except Exception as exc:  # the next round asks again; said once, not twice a second
                if not failing:
                    log.warning("could not read the cancels asked through other servers: %s", exc)
                failing = True
                continue
            failing = False
            for task_id in asked:
                run = self.runs.running(task_id)
                if run is not None and not run.cancelling:
                    log.info("cancelling task %s, as asked through another server", task_id)
                    self._spawn(self.dispatch.cancel(run))

    async def cancel_elsewhere(self, task_id: str) -> bool:
        """Ask the server that runs `task_id` to cancel it, and wait a while for it to end;
        False when the task is not unfinished (it has ended, or does not exist)."""
        if not await asyncio.to_thread(self.store.request_cancel, task_id):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT_S
        while loop.time() < deadline:
            await asyncio.sleep(CANCEL_POLL_S / 5)
            row = await asyncio.to_thread(self.store.get_task, task_id)
            if row is None or row["status"] in FINISHED:
                break
        return True

    def _lost(self, task_ids: set[str]) -> None:
        """Stop the runs of tasks another server has claimed: their processes are killed,
        and nothing of them is kept in memory (reads go to the store, the new owner's)."""
        for task_id in task_ids:
            run = self.runs.find(task_id)
            if run is None:
                continue
            log.warning(
                "task %s was taken over by another server: this server stops its run", task_id
            )
            self._spawn(self._abandon(run))

    async def _abandon(self, run: TaskRun) -> None:
        if self.runs.running(run.id) is not None:
            await self.dispatch.cancel(run)
        self.runs.forget(run.id)
