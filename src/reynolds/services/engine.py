"""The scheduler: starts every ready subtask as soon as its task and a pool have room.

State lives in memory while a task runs and is written through the store's batched writer;
anything reported to a client has been flushed first. A restarted engine resumes every
unfinished task of the store that no live server owns (its own included).

`Engine` is the façade the rest of the server uses; its parts, one job each:
`Planner` (decompose, estimate, plan), `Dispatcher` (the pump and settling of attempts),
`Attempts` (one attempt's action, local or distributed), `PoolControl` (slots, status, scaling),
`TaskReads` (results and lists), `Resumption` (tasks a stopped server left), `LiveRuns`
(the tasks held in memory) and `Recorder` (their writes).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from reynolds.core.fingerprints import task_fingerprint
from reynolds.core.graph import Graph
from reynolds.core.models import Status, Strategy, TaskSpec
from reynolds.core.pools import PoolSet
from reynolds.errors import Conflict, InvalidInput
from reynolds.services.actions import LocalActions, Runners
from reynolds.services.attempts import Attempts
from reynolds.services.dispatch import Dispatcher
from reynolds.services.lineage import Lineage, Parent
from reynolds.services.live_runs import LiveRuns
from reynolds.services.planner import Planner
from reynolds.services.pool_control import PoolControl
from reynolds.services.ports import (
    DistributedExecutor,
    HttpActionRunner,
    IdFactory,
    LlmActionRunner,
    McpActionRunner,
    OrphanKiller,
    PythonActionRunner,
    SchedulerMetrics,
    ShellActionRunner,
    Store,
    SystemSampler,
    WorktreeGit,
)
from reynolds.services.recording import Recorder
from reynolds.services.resubmissions import Refused
from reynolds.services.resumption import Resumption
from reynolds.services.runs import Prepared, TaskRun
from reynolds.services.scaling import AutoScaler
from reynolds.services.takeover import Takeover
from reynolds.services.task_reads import TaskReads, check_task_id
from reynolds.services.workspaces import Workspaces
from reynolds.settings import Settings

# Finished tasks read at start for the resubmissions they may show.
RESUBMISSIONS_SEEN = 500

# Retry jitter from a generator of its own: drawing from the global one would move the state
# that code sharing the process (a test framework, a caller's simulation) relies on.
_JITTER = random.Random()  # noqa: S311  (jitter, not secrets)
__all__ = ["Engine", "Prepared"]


def _planner(
    settings: Settings,
    store: Store,
    pools: PoolSet,
    control: PoolControl,
    llm: LlmActionRunner | None,
) -> Planner:
    return Planner(
        store=store,
        pools=pools,
        control=control,
        default_estimate_s=settings.default_estimate_s,
        llm=llm,
        llm_plan_max_tokens=settings.llm_plan_max_tokens,
        llm_plan_timeout_s=settings.llm_plan_timeout_s,
        llm_schema_format=settings.llm_schema_format,
    )


class Engine:
    """Runs tasks on the pools (local slots or distributed workers). One per process, on one
    event loop."""

    # With a store other servers share: what takes their tasks over (`start_takeover`).
    takeover: Takeover | None = None

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pools: PoolSet,
        metrics: SchedulerMetrics,
        shell: ShellActionRunner,
        sampler: SystemSampler,
        orphans: OrphanKiller,
        new_id: IdFactory,
        workspace: str,
        python: PythonActionRunner | None = None,
        secrets: Callable[[Mapping[str, str]], dict[str, str]] | None = None,
        http: HttpActionRunner | None = None,
        mcp: McpActionRunner | None = None,
        llm: LlmActionRunner | None = None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = _JITTER.random,
        distributed: DistributedExecutor | None = None,
        git: WorktreeGit | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pools = pools
        self.metrics = metrics
        self.runners = Runners(shell, python, http, mcp, llm)
        self.workspace = workspace
        self.clock = clock
        self.distributed = distributed
        self._new_id = new_id
        self.runs = LiveRuns()
        self.lineage = Lineage(settings.loop_confidence, store, self.runs)
        self.control = PoolControl(
            settings=settings,
            pools=pools,
            store=store,
            metrics=metrics,
            distributed=distributed,
            clock=clock,
            runs=self.runs,
        )
        self.planner = _planner(settings, store, pools, self.control, llm)
        self.record = Recorder(store, clock)
        self.workspaces = Workspaces(
            git, root=settings.worktrees_dir, allowed=settings.allowed_repos, project=workspace
        )
        attempts = Attempts(
            settings=settings,
            pools=pools,
            actions=LocalActions(self.runners, workspace, secrets),
            distributed=distributed,
            recorder=self.record,
            workspaces=self.workspaces,
        )
        self.dispatch = Dispatcher(
            settings=settings,
            store=store,
            metrics=metrics,
            runs=self.runs,
            control=self.control,
            planner=self.planner,
            attempts=attempts,
            recorder=self.record,
            clock=clock,
            jitter=jitter,
        )
        self.reads = TaskReads(
            store=store, runs=self.runs, control=self.control, clock=clock, settings=settings
        )
        self.resumption = Resumption(
            store=store,
            runs=self.runs,
            planner=self.planner,
            dispatcher=self.dispatch,
            recorder=self.record,
            orphans=orphans,
            clock=clock,
        )
        self.autoscaler = AutoScaler(self.control, sampler.sample)

    # -- the pools' slots (PoolControl's) -------------------------------------------------

    @property
    def replicas(self) -> dict[str, int]:
        return self.control.replicas

    @property
    def free(self) -> dict[str, int]:
        return self.control.free

    def planning_replicas(self) -> dict[str, int]:
        return self.control.planning_replicas()

    def pool_stats(self) -> dict[str, tuple[float | None, float | None]]:
        return self.control.pool_stats()

    def queue_depths(self) -> dict[str, int]:
        return self.control.queue_depths()

    def observe_capacity(self) -> None:
        self.control.observe_capacity()

    def scale(self, pool: str, replicas: int, reason: str, source: str) -> dict[str, Any]:
        return self.control.scale(pool, replicas, reason, source)

    async def scaled(self) -> None:
        await self.control.scaled()

    def pool_status(self) -> list[dict[str, Any]]:
        return self.control.pool_status()

    def counts(self) -> dict[str, int]:
        return self.control.counts()

    # -- submitting -----------------------------------------------------------------------

    def default_strategy(self, spec: TaskSpec, graph: Graph) -> Strategy:
        return self.planner.default_strategy(spec, graph)

    async def prepare(self, spec: TaskSpec, strategy: Strategy | None) -> Prepared:
        """Decompose and plan without running."""
        return await self.planner.prepare(spec, strategy)

    async def submit(
        self,
        spec: TaskSpec,
        strategy: Strategy | None = None,
        token_name: str | None = None,
        *,
        force: bool = False,
        parent: Parent | None = None,
        durable: bool = True,
        start: bool = True,
    ) -> TaskRun:
        """Accept a task: persist it and, once it is durable, start what is ready (unless
        `start` is False: the caller starts it with `start`). `Refused` (nothing persisted)
        when it is a resubmission loop or runaway orchestration (submitted by `parent`'s
        action), unless `force`.

        With `durable=False` it starts the task once its rows are queued, for a caller that
        tells nobody of the task before a later read of its result, which waits for the
        commit (a client waiting for the end hears of it once, then: one commit, not two)."""
        depth = 0
        if parent is not None:
            # A parent this server's store does not know counts as submitted by hand.
            depth = (await self.lineage.depth_of(parent.task_id) or 0) + 1
            verdict = None if force else self.lineage.judge(parent, depth)
            if verdict is not None:
                self.dispatch.loops.resubmission_refused(verdict)
                raise Refused(verdict)
        prep = await self.planner.prepare(spec, strategy)
        task_id = self._new_id()
        workspace = await self._workspace(spec, prep, task_id)
        run = TaskRun.new(
            task_id,
            self.runs.next_seq(),
            spec,
            prep,
            created_at=self.clock(),
            token_name=token_name,
        )
        if workspace is not None:
            run.plan["workspace"] = workspace
        if parent is not None:
            run.parent_id, run.depth = parent.task_id, depth
        row = run.task_row()
        run.fingerprint = row["fingerprint"] = task_fingerprint(row["spec"])
        if not force:
            verdict = self.dispatch.resubmissions.judge(run.fingerprint)
            if verdict is not None:
                self.dispatch.loops.resubmission_refused(verdict)
                raise Refused(verdict)
        await self.workspaces.reserve(workspace)
        if parent is not None:
            self.lineage.started(parent)
        if prep.message is not None:
            self.runs.remember(run)
        self.store.put_task(row)
        planned = run.estimate_s
        for row in run.subtask_rows():
            # The estimate it was planned with, so that a replay orders work as this run did.
            row["spec"]["plannedSeconds"] = round(planned[row["id"]], 4)
            self.store.put_subtask(row)
        self.record.event(
            run, None, "task_submitted", {"subtasks": len(run.subs), "status": run.status}
        )
        if durable:
            # Committed before anything runs: the commit does not wait behind what the
            # running task writes, and nothing runs of a task the store does not hold.
            await self.store.flush()
        if start:
            self.start(run)
        return run

    def start(self, run: TaskRun) -> None:
        """Start what is ready of a task `submit` accepted with `start=False`."""
        if run.status is not Status.PLANNED:
            self.dispatch.activate(run)

    async def _workspace(
        self, spec: TaskSpec, prep: Prepared, task_id: str
    ) -> dict[str, Any] | None:
        """The task's `plan.workspace` (InvalidInput when it cannot have it)."""
        if spec.workspace is None:
            return None
        if self.distributed is not None:
            raise InvalidInput(
                "task workspaces are not available under the Celery backend: its workers do "
                "not share this server's disk",
                field="task.workspace",
            )
        if prep.message is not None:
            return None  # planned only: nothing will run in it
        return await self.workspaces.open(spec, prep.graph, task_id)

    # -- queries and control --------------------------------------------------------------

    def find(self, task_id: str) -> TaskRun | None:
        return self.runs.find(task_id)

    async def result(self, task_id: str, limit: int | None = None) -> dict[str, Any]:
        """The contract's result for a task, from memory or the store, its lists cut after
        `limit` entries (REYNOLDS_RESULT_SUBTASKS by default)."""
        return await self.reads.result(task_id, limit)

    async def subtasks(
        self, task_id: str, start: int, limit: int, status: str | None = None
    ) -> dict[str, Any]:
        """A page of a task's subtasks from position `start` (see TaskReads.subtasks)."""
        return await self.reads.subtasks(task_id, start, limit, status)

    async def wait(self, run: TaskRun, timeout_s: float) -> bool:
        """True when the task ended within the timeout."""
        try:
            await asyncio.wait_for(run.done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def list_tasks(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        return await self.reads.list_tasks(status, limit)

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Stop a task: nothing new starts, running processes are killed."""
        check_task_id(task_id)
        run = self.runs.running(task_id)
        # Another server sharing the store may run it: that one is asked through the store.
        takeover = self.takeover
        if run is None and takeover is not None and await takeover.cancel_elsewhere(task_id):
            return await self.reads.result(task_id)
        if run is None:
            status = await self.reads.status_of(task_id)
            raise Conflict(f"task {task_id} has already ended ({status})", status=status)
        await self.dispatch.cancel(run)
        return await self.reads.result(task_id)

    def runs_elsewhere(self, task_id: str) -> bool:
        """Whether another server sharing the store may run the task (this one does not), so
        its live events are only in the store."""
        return self.shares_store and self.runs.running(task_id) is None

    @property
    def shares_store(self) -> bool:
        """Whether other servers may write to this store (their events are only in it)."""
        return self.takeover is not None

    async def last_event_seq(self, task_id: str) -> int:
        return await asyncio.to_thread(self.store.last_event_seq, task_id)

    async def event_cursors(self) -> tuple[dict[str, int], int]:
        return await asyncio.to_thread(self.store.event_cursors)

    async def events_elsewhere(self, after: Mapping[str, int], start: int) -> list[dict[str, Any]]:
        """Events other servers sharing the store committed (see `Store.events_elsewhere`)."""
        return await asyncio.to_thread(self.store.events_elsewhere, after, start)

    async def stored_events(self, task_id: str, after_seq: int) -> list[dict[str, Any]]:
        """A task's committed events after `after_seq`, oldest first (at most 1,000)."""
        return await asyncio.to_thread(self.store.events, task_id, after_seq)

    # -- life cycle -----------------------------------------------------------------------

    async def resume(self) -> list[str]:
        """Claim and pick up the unfinished tasks this server left, nobody's, or a dead
        server's; returns their ids. What earlier servers learned of the pools, and how
        recent tasks ended, come first."""
        await self.control.load_outcomes()
        recent = await asyncio.to_thread(self.store.list_tasks, None, RESUBMISSIONS_SEEN)
        self.dispatch.resubmissions.seed(reversed(recent))
        resumed = await self.resumption.resume(self.settings.takeover_interval_s)
        # Worktrees of tasks that ended (or were lost) while no server ran are removed.
        await self.workspaces.sweep({run.id for run in self.runs.active})
        return resumed

    def start_takeover(self) -> None:
        """From now on, take over the unfinished tasks of servers sharing the store that are
        found dead, and stop this server's own run of a task another server has taken."""
        self.takeover = Takeover(
            store=self.store,
            runs=self.runs,
            dispatch=self.dispatch,
            resumption=self.resumption,
            interval_s=self.settings.takeover_interval_s,
        )
        self.takeover.start()
        self.autoscaler.share_with(self.store, self.settings.takeover_interval_s)

    async def close(self) -> None:
        """Stop: kill running actions; their subtasks stay `running` in the store, so the
        next start runs them again (or fails them as interrupted when not idempotent).
        Experiments running for real stop first, as cancelled."""
        if self.takeover is not None:
            await self.takeover.stop()
        experiments = list(self.runs.experiments.values())
        for running in experiments:
            running.cancel()
        if experiments:
            await asyncio.gather(*experiments, return_exceptions=True)
        await self.dispatch.close()
        await self.store.flush()
