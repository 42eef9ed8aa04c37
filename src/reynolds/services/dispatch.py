"""The dispatch loop: start every ready subtask as soon as its task and a pool have room
(`pump`), and settle each attempt when it ends (retry, unblock, skip, finish the task)."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable

from reynolds.core import planning
from reynolds.core.downstreams import downstream_of, overload
from reynolds.core.failures import classify
from reynolds.core.guarding import judge
from reynolds.core.loops import LoopVerdict
from reynolds.core.models import FINISHED, Status
from reynolds.core.pricing import Usage
from reynolds.core.reporting import TaskSeconds, run_metrics
from reynolds.core.retry import next_attempt
from reynolds.core.wire_values import encodable
from reynolds.services.agent_log import AgentLog
from reynolds.services.attempts import Attempts
from reynolds.services.budget_keeper import BudgetKeeper
from reynolds.services.guards import ANSWERED, Guards, Verdict
from reynolds.services.live_runs import LiveRuns
from reynolds.services.log_context import LOG_CONTEXT, NOTHING, bind
from reynolds.services.loop_guard import LoopGuard
from reynolds.services.planner import Planner
from reynolds.services.pool_control import PoolControl
from reynolds.services.ports import ActionResult, SchedulerMetrics, Store
from reynolds.services.recording import Recorder
from reynolds.services.resubmissions import Resubmissions
from reynolds.services.runs import SubState, TaskRun
from reynolds.settings import Settings

log = logging.getLogger("reynolds.engine")


class Dispatcher:
    """Runs the active tasks' subtasks on the pools' free slots, in priority order."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        metrics: SchedulerMetrics,
        runs: LiveRuns,
        control: PoolControl,
        planner: Planner,
        attempts: Attempts,
        recorder: Recorder,
        clock: Callable[[], float],
        jitter: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.runs = runs
        self.control = control
        self.planner = planner
        self.attempts = attempts
        self.record = recorder
        self.agent_log = AgentLog()
        self.loops = LoopGuard(settings.loop_confidence, metrics, recorder)
        self.resubmissions = Resubmissions(settings.loop_confidence)
        self.guards = Guards(
            settings=settings,
            pools=list(control.pools.pools),
            store=store,
            metrics=metrics,
            clock=clock,
        )
        control.guards = self.guards
        self.overload_rules = {
            key: spec.overload_rules() for key, spec in control.pools.pools.items()
        }
        self.budgets = BudgetKeeper(recorder, clock, self._budget_stopped)
        self.clock = clock
        self.jitter = jitter
        self.closing = False
        self._pumping = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        control.on_room = self.pump

    def activate(self, run: TaskRun) -> None:
        """Take `run` in: its ready subtasks start as room allows."""
        self.budgets.open(run)
        for nid, sub in run.subs.items():
            if sub.status is Status.READY:
                heapq.heappush(run.ready, (run.key(nid), nid))
        self.runs.activate(run)
        if run.unfinished == 0:
            self.finish_run(run)
        self.pump()

    def pump(self) -> None:
        """Start whatever can start now, in priority order across tasks."""
        if self._pumping or self.closing:
            return
        self._pumping = True
        control, guards = self.control, self.guards
        free, replicas = control.free, control.replicas
        stats: planning.PoolStats | None = None  # computed once per pump, when needed
        guarded = guards.active
        now = self.clock() if guarded else 0.0
        # What starts here is about other subtasks than an attempt whose end called this.
        about = LOG_CONTEXT.set(NOTHING)
        try:
            for run in self.runs.active:
                if not any(v > 0 for v in free.values()):
                    break
                room = run.limit - run.running
                if room <= 0 or not run.ready or run.cancelling or run.stopped is not None:
                    continue
                if stats is None:
                    stats = control.pool_stats()

                def place(
                    nid: str, run: TaskRun = run, stats: planning.PoolStats = stats
                ) -> str | None:
                    sub = run.subs[nid]
                    if guarded:
                        decision = guards.route(
                            sub.node.agent,
                            sub.capability,
                            self._downstream(sub),
                            free,
                            replicas,
                            run.strategy,
                            run.turn,
                            stats,
                            now,
                        )
                    else:
                        decision = planning.place(
                            sub.node.agent,
                            sub.capability,
                            free,
                            replicas,
                            run.strategy,
                            run.turn,
                            stats,
                        )
                    if decision is None or decision.pool is None:
                        return None
                    if run.ledger is not None and not self.budgets.reserve(run, sub):
                        return None
                    free[decision.pool] -= 1
                    guards.placed(self._downstream(sub))
                    run.turn += 1
                    sub.routing = decision
                    return decision.pool

                for nid, pool in planning.take_startable(run.ready, place, room):
                    self._start(run, run.subs[nid], pool)
        finally:
            self._pumping = False
            LOG_CONTEXT.reset(about)
        if guarded:
            self._wake_later(now)

    def _wake_later(self, now: float) -> None:
        """Pump again when a cool-down or a Retry-After that holds work back is over."""
        at = self.guards.next_wake(now)
        if at is None or (self._wake is not None and self._wake_at <= at):
            return
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = at
        self._wake = asyncio.get_running_loop().call_later(max(0.0, at - now), self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.pump()

    def _secret_names(self, pool: str) -> list[str]:
        """The credentials (names only) `pool`'s actions are given, for the audit."""
        spec = self.control.pools.pools.get(pool)
        return list(spec.secrets) if spec is not None else []

    @staticmethod
    def _downstream(sub: SubState) -> str | None:
        if not sub.downstream_known:
            sub.downstream = downstream_of(sub.node.action)
            sub.downstream_known = True
        return sub.downstream

    def _start(self, run: TaskRun, sub: SubState, pool: str) -> None:
        now = self.clock()
        sub.status = Status.RUNNING
        sub.attempts += 1
        sub.agent_type = pool
        sub.started_at = now
        sub.finished_at = None
        sub.argv = None
        run.running += 1
        self.guards.started(pool, self._downstream(sub), now)
        if run.status is Status.PENDING:
            run.status = Status.RUNNING
            run.started_at = now
            self.store.put_task({"id": run.id, "status": "running", "started_at": now})
        # The `running` row is written with the pid once the process exists (one write, not
        # two); a non-idempotent subtask also has it committed before it starts (_execute).
        self.record.event(run, sub, "subtask_started", {"attempt": sub.attempts, "agentType": pool})
        if sub.routing is not None:
            self.store.add_decision(
                {
                    "task_id": run.id,
                    "subtask_id": sub.node.id,
                    "attempt": sub.attempts,
                    "pool": pool,
                    "selection": sub.routing.selection,
                    "scores": sub.routing.scores,
                    "reason": sub.routing.reason,
                    "at": now,
                }
            )
        sub.handle = asyncio.get_running_loop().create_task(self._execute(run, sub, pool))
        self.control.slots_changed(pool, now)

    async def _execute(self, run: TaskRun, sub: SubState, pool: str) -> None:
        # Every line logged while this attempt runs is about it (its own copy of the context).
        bind(taskId=run.id, subtaskId=sub.node.id, agentType=pool)
        try:
            if not sub.node.idempotent:
                # "Never run twice" needs the running mark durable before the action starts.
                self.record.running(run, sub, None)
                await self.store.flush()
            result = await self.attempts.run(run, sub, pool)
        except asyncio.CancelledError:
            self._release(run, pool)
            if not self.closing:
                self.settle(
                    run, sub, pool, ActionResult(False, reason="cancelled", error="cancelled")
                )
            else:
                # Not settled: the subtask stays running in the store, and the next start
                # (or a server taking over) records this attempt as interrupted and runs the
                # subtask again, or fails it when it is not idempotent.
                self.guards.ended(
                    pool,
                    sub.downstream,
                    Verdict(untold=True),
                    now=self.clock(),
                    started_at=None,
                    ceiling=1,
                )
            return
        except Exception as exc:  # a runner's bug must not take the scheduler down
            log.exception("action runner failed for %s/%s", run.id, sub.node.id)
            result = ActionResult(False, reason="error", error=f"internal error: {exc!r}")
        self._release(run, pool)
        self.settle(run, sub, pool, result)

    def _release(self, run: TaskRun, pool: str) -> None:
        self.control.free[pool] += 1
        self.control.slots_changed(pool, self.clock())
        run.running -= 1

    def settle(self, run: TaskRun, sub: SubState, pool: str, result: ActionResult) -> None:
        """Record how an attempt ended and decide what follows."""
        now = self.clock()
        duration = now - sub.started_at if sub.started_at is not None else None
        sub.exit_code = result.exit_code
        # Any runner's text (an http answer in a charset the server chose) goes to the store.
        sub.output = encodable(result.output)
        sub.error = encodable(result.error)
        sub.reason = result.reason
        sub.handle = None
        self._spend(run, sub, result)
        failure_class, verdict = self._judge(run, sub, pool, result)
        self.guards.ended(
            pool, sub.downstream, verdict, now=now, started_at=sub.started_at, ceiling=run.limit
        )
        storm_before = run.storm
        if verdict.overload is None and not verdict.untold:
            self.loops.storm(run, sub, result.ok)
        delay_s = self._next_status(run, sub, result, failure_class, verdict)
        if run.stopped is not None and sub.status in (Status.PENDING, Status.CANCELLED):
            # Stopped by its budget: no retry, and an attempt cut short by the clock failed.
            sub.status = Status.FAILED
            self.budgets.mark(sub, run.stopped)
        attempt_status = (
            "succeeded"
            if result.ok
            else ("cancelled" if sub.status is Status.CANCELLED else "failed")
        )
        self.record.attempt(run, sub, pool, attempt_status, result, now)
        decision = self.record.audit(run, sub, pool, result, now, self._secret_names(pool))
        self.metrics.audited("action", decision)
        self.metrics.subtask_ended(pool, attempt_status, duration)
        self.agent_log.ended(run, sub, pool, attempt_status, result, duration)
        if attempt_status != "cancelled":
            self.runs.outcomes.ended(result.ok, now)
        if duration is not None and attempt_status != "cancelled" and result.reason != "denied":
            self.control.record_outcome(pool, result.ok, duration)
        if duration is not None and result.reason not in ("denied", "cancelled"):
            self.planner.learn(run, sub.node, duration, result.ok, pool)
        if sub.status is Status.PENDING:  # a retry after a backoff
            self.record.subtask(run, sub, None)
            self.record.event(
                run,
                sub,
                "subtask_retry",
                {"attempt": sub.attempts, "delaySeconds": delay_s, "reason": result.reason},
            )
            sub.retry_timer = asyncio.get_running_loop().call_later(
                delay_s, self._requeue, run, sub
            )
            self.pump()  # its slot is free for other work meanwhile
            return
        self._finished(run, sub, result.exit_code, now)
        if run.storm is not None and storm_before is None:
            self._stop_retries(run, run.storm, now)

    @staticmethod
    def _spend(run: TaskRun, sub: SubState, result: ActionResult) -> None:
        """Book the tokens and cost of an llm attempt on the subtask (its stored detail, which
        a resumed task adds up again), the task and its budget, which stops further work once
        they are spent."""
        if result.prompt_tokens is None and result.completion_tokens is None:
            return
        tokens = (result.prompt_tokens, result.completion_tokens, result.cost)
        own = Usage.from_details([sub.detail]).add(*tokens)
        sub.detail = {**(sub.detail or {}), "usage": own.detail()}
        run.usage = run.usage.add(*tokens)
        if run.ledger is not None:
            run.ledger = run.ledger.settle(result.tokens, result.cost or 0.0)

    def _finished(self, run: TaskRun, sub: SubState, exit_code: int | None, now: float) -> None:
        sub.finished_at = now
        self.record.subtask(run, sub, now)
        self.record.event(
            run,
            sub,
            "subtask_finished",
            {"status": str(sub.status), "exitCode": exit_code, "reason": sub.reason},
        )
        self._after_finish(run, sub)

    def _stop_retries(self, run: TaskRun, storm: LoopVerdict, now: float) -> None:
        """A retry storm: every subtask of `run` waiting for a retry is stopped too."""
        for other in run.subs.values():
            if other.status is Status.PENDING and other.retry_timer is not None:
                other.retry_timer.cancel()
                other.retry_timer = None
                self.loops.block(run, other, storm, now, count=False)
                self._finished(run, other, other.exit_code, now)

    def _judge(
        self, run: TaskRun, sub: SubState, pool: str, result: ActionResult
    ) -> tuple[str | None, Verdict]:
        """A failed attempt's class, and what the attempt says of its pool and downstream."""
        if result.ok:
            return None, ANSWERED
        if result.reason == "cancelled" or run.cancelling:
            return None, Verdict(untold=True)
        failure_class = self._classify(sub, result)
        signal = None
        if result.reason != "denied":  # refused before it ran: it tells nothing of either
            signal = overload(
                sub.node.action,
                exit_code=result.exit_code,
                output=result.output,
                error=result.error,
                retry_after_s=result.retry_after_s,
                rules=self.overload_rules.get(pool),
            )
        if signal is not None:
            sub.detail = {**(sub.detail or {}), "overload": signal.signal}
        # Under Celery, `interrupted` is a worker that stopped answering mid-attempt: the pool's.
        lost = result.reason == "interrupted" and self.attempts.distributed is not None
        return failure_class, judge(False, result.reason, failure_class, signal, lost=lost)

    def _next_status(
        self,
        run: TaskRun,
        sub: SubState,
        result: ActionResult,
        failure_class: str | None,
        verdict: Verdict,
    ) -> float:
        """Set the subtask's status after an attempt; the backoff before a retry, in seconds."""
        if result.ok:
            sub.status = Status.SUCCEEDED
        elif result.reason == "cancelled" or run.cancelling:
            sub.status = Status.CANCELLED
        else:
            decision = next_attempt(
                sub.attempts,
                sub.node.retries,
                result.reason,
                failure_class,
                base_s=self.settings.retry_base_s,
                cap_s=self.settings.retry_cap_s,
                jitter=self.jitter(),
            )
            # An overloaded downstream is adaptive concurrency's to answer, not a loop.
            if decision.retry and sub.node.loop_prevention and verdict.overload is None:
                loop = self.loops.judge(sub, result)
                if loop is not None:
                    self.loops.block(run, sub, loop, self.clock())
                    return 0.0
                if run.storm is not None:  # the task's retries keep failing: no more
                    self.loops.block(run, sub, run.storm, self.clock(), count=False)
                    return 0.0
            sub.status = Status.PENDING if decision.retry else Status.FAILED
            return decision.delay_s
        return 0.0

    @staticmethod
    def _classify(sub: SubState, result: ActionResult) -> str:
        """The failed attempt's class, kept in the subtask's detail."""
        # An http or llm action's exit code is the HTTP status of the answer.
        http = getattr(sub.node.action, "kind", None) in ("http", "llm")
        failure_class = classify(
            result.reason,
            None if http else result.exit_code,
            result.error,
            result.exit_code if http else None,
        )
        sub.detail = {**(sub.detail or {}), "failureClass": failure_class}
        return failure_class

    def _requeue(self, run: TaskRun, sub: SubState) -> None:
        sub.retry_timer = None
        if run.cancelling or sub.status is not Status.PENDING:
            return
        sub.status = Status.READY
        heapq.heappush(run.ready, (run.key(sub.node.id), sub.node.id))
        self.pump()

    def _after_finish(self, run: TaskRun, sub: SubState) -> None:
        run.unfinished -= 1
        succeeded = sub.status is Status.SUCCEEDED
        for child_id in run.graph.dependents[sub.node.id]:
            if succeeded or run.subs[child_id].node.always:
                self._upstream_ended(run, child_id)
        if not succeeded and sub.status is not Status.CANCELLED:
            self.skip_downstream(run, sub.node.id, f"upstream {sub.node.id} {sub.status}")
        if run.stopped is not None:
            self.budgets.sweep(run)  # what its end would have let start
        run.mark = self.store.write_mark()
        if run.unfinished == 0:
            self.finish_run(run)
        self.pump()

    def _upstream_ended(self, run: TaskRun, child_id: str) -> None:
        child = run.subs[child_id]
        child.remaining -= 1
        if child.remaining == 0 and child.status is Status.PENDING:
            child.status = Status.READY
            self.store.put_subtask({"task_id": run.id, "id": child_id, "status": "ready"})
            heapq.heappush(run.ready, (run.key(child_id), child_id))

    def skip_downstream(self, run: TaskRun, nid: str, why: str) -> None:
        """Every subtask below `nid` that has not run is skipped: it never can. One that runs
        whatever its upstream did (`always`) is not, and counts each skipped upstream as ended."""
        now = self.clock()
        for child_id in run.graph.descendants(nid):
            child = run.subs[child_id]
            if child.status in FINISHED or child.status is Status.RUNNING or child.node.always:
                continue
            child.status = Status.SKIPPED
            child.reason = "upstream_failed"
            child.error = why
            child.finished_at = now
            run.unfinished -= 1
            self.record.subtask(run, child, now)
            for after in run.graph.dependents[child_id]:
                if run.subs[after].node.always:
                    self._upstream_ended(run, after)

    def finish_run(self, run: TaskRun) -> None:
        workspaces = self.attempts.workspaces
        if workspaces is not None and workspaces.close_before_end(run, self.finish_run):
            return  # its worktrees go first: nothing of it is left once its end is told
        now = self.clock()
        statuses = {s.status for s in run.subs.values()}
        self.budgets.close(run)
        if run.stopped is not None:
            run.status = Status.FAILED
            run.message = run.stopped.message()
        elif run.cancelling or Status.CANCELLED in statuses:
            run.status = Status.CANCELLED
        elif statuses <= {Status.SUCCEEDED}:
            run.status = Status.SUCCEEDED
        elif Status.LOOP_BLOCKED in statuses:
            run.status = Status.LOOP_BLOCKED
        else:
            run.status = Status.FAILED
        run.finished_at = now
        rows = run.subtask_rows()
        replicas = self.control.planning_replicas()
        concurrency = run.usable(sum(replicas.values()))
        run.metrics = run_metrics(
            run.created_at,
            now,
            rows,
            concurrency,
            run.ideal_makespan(replicas, self.control.pool_stats()),
        )
        if run.usage.calls:
            run.metrics |= run.usage.view()
        if run.ledger is not None:
            run.metrics["budget"] = self.budgets.view(run)
        ended = {"id": run.id, "status": str(run.status), "finished_at": now}
        if run.stopped is not None:
            ended |= {"reason": run.stopped.reason, "message": run.message}
        how = self.resubmissions.ended(run)
        self.store.put_task(
            {**ended, "metrics": run.metrics, **({"outcome": how} if how is not None else {})}
        )
        self.record.event(run, None, "task_finished", {"status": str(run.status)})
        self.metrics.task_ended(str(run.status), TaskSeconds.of(run.metrics, concurrency))
        self.runs.finished(run)
        run.done.set()

    def _budget_stopped(self, run: TaskRun, time_up: bool) -> None:
        """A budget stopped `run`: soon (not inside the pass that found it), cut what runs
        when time ran out, and end the task once nothing is left."""
        asyncio.get_running_loop().call_soon(self._after_stop, run, time_up)

    def _after_stop(self, run: TaskRun, time_up: bool) -> None:
        if run.done.is_set():
            return
        if time_up:
            for sub in run.subs.values():
                if sub.status is Status.RUNNING and sub.handle is not None:
                    sub.handle.cancel()
        if run.unfinished == 0:
            self.finish_run(run)
        self.pump()

    async def cancel(self, run: TaskRun) -> None:
        """Stop an active task: nothing new starts, running attempts are cancelled."""
        run.cancelling = True
        now = self.clock()
        handles = []
        for sub in run.subs.values():
            if sub.status is Status.RUNNING and sub.handle is not None:
                handles.append(sub.handle)
                sub.handle.cancel()
            elif sub.status in (Status.PENDING, Status.READY):
                if sub.retry_timer is not None:
                    sub.retry_timer.cancel()
                sub.status = Status.CANCELLED
                sub.reason = "cancelled"
                sub.finished_at = now
                run.unfinished -= 1
                self.record.subtask(run, sub, now)
        run.ready.clear()
        if handles:
            await asyncio.gather(*handles, return_exceptions=True)
        if run.unfinished == 0 and not run.done.is_set():
            self.finish_run(run)
            await run.done.wait()  # its worktrees removed first, when it has any

    async def close(self) -> None:
        """Stop: cancel running attempts without settling them (the next start runs them
        again, or fails them as interrupted when not idempotent)."""
        self.closing = True
        handles = [
            s.handle for r in self.runs.active for s in r.subs.values() if s.handle is not None
        ]
        for h in handles:
            h.cancel()
        if handles:
            await asyncio.gather(*handles, return_exceptions=True)
        if self.attempts.workspaces is not None:  # ended tasks' worktrees being removed
            await self.attempts.workspaces.drain()
