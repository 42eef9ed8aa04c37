"""The scheduler: starts every ready subtask as soon as its task and a pool have room.

State lives in memory while a task runs and is written through the store's batched writer;
anything reported to a client has been flushed first. A restarted engine resumes every
unfinished task of the store that no live server owns (its own included).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reynolds.adapters.actions.shell import ShellRunner, is_our_orphan, kill_group
from reynolds.adapters.metrics import Metrics
from reynolds.adapters.system import SystemSampler
from reynolds.core import planning
from reynolds.core.audit import redact_text
from reynolds.core.decomposition import decompose
from reynolds.core.graph import Graph, Node, bottom_levels
from reynolds.core.models import (
    FINISHED,
    Action,
    Approach,
    ShellAction,
    Status,
    Strategy,
    TaskSpec,
    format_validation_errors,
)
from reynolds.core.personality import task_comment
from reynolds.core.pools import (
    PoolSet,
    action_executable,
    capability_scores,
    resource_limits,
)
from reynolds.core.reporting import run_metrics, task_result, task_summary
from reynolds.core.retry import decide_retry
from reynolds.core.routing import RoutingDecision
from reynolds.core.substitution import substitute
from reynolds.core.wire_values import clean_text, encodable, printable
from reynolds.errors import ActionDenied, Conflict, NotFound
from reynolds.services.actions import Job, Runners, execute
from reynolds.services.audit import record_attempt
from reynolds.services.pool_control import PoolControl
from reynolds.services.ports import (
    SERVER_STALE_AFTER_S,
    ActionContext,
    ActionResult,
    ActionRunner,
    RemoteExecutor,
    Store,
)
from reynolds.services.runs import SubState, TaskRun, refused_writes
from reynolds.services.scaling import AutoScaler
from reynolds.settings import Settings

log = logging.getLogger("reynolds.engine")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A task decomposed and planned, not yet running."""

    graph: Graph
    strategy: Strategy
    keys: dict[str, list[str]]  # duration-history keys per node
    estimate_s: dict[str, float]
    capability: dict[str, dict[str, float]]  # per node: capability score per pool
    plan: dict[str, Any]
    message: str | None  # set when nothing is runnable: what to add


_ACTION = TypeAdapter(Action)
# Finished runs kept in memory, so polls of recent tasks are answered without the store:
# at most this many, holding at most this many subtasks in all.
_RECENT_RUNS = 2_000
_RECENT_SUBTASKS = 100_000


class Engine(PoolControl):
    """Runs tasks on the pools (local slots or remote workers). One per process, on one
    event loop. The pools' slots, status and scaling are in `PoolControl`."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pools: PoolSet,
        metrics: Metrics,
        shell: ShellRunner,
        python: ActionRunner | None = None,
        http: ActionRunner | None = None,
        workspace: str | None = None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        sample: Callable[[], tuple[float, float]] | None = None,
        remote: RemoteExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pools = pools
        self.metrics = metrics
        self.shell = shell
        self.python = python
        self.http = http
        self.workspace = workspace or os.getcwd()
        self.clock = clock
        self.jitter = jitter
        self.remote = remote
        self.runners = Runners(shell, python, http)
        # Remote pools have the slots their connected workers offer, none until one is seen.
        self.configured = pools.capacity()
        self.replicas = dict.fromkeys(self.configured, 0) if remote else dict(self.configured)
        self.limits = {
            key: resource_limits(
                pool.limits, settings.agent_memory_limit_soft, settings.agent_memory_limit_hard
            )
            for key, pool in pools.pools.items()
        }
        self.free = dict(self.replicas)
        self._active: list[TaskRun] = []
        self._recent: OrderedDict[str, TaskRun] = OrderedDict()
        self._recent_subtasks = 0
        self._evicted_mark = 0
        self._history: dict[str, float | None] = {}
        # Per pool, from finished attempts: [attempts, successes, mean seconds].
        self._outcomes: dict[str, list[float]] = {p: [0, 0, 0.0] for p in self.replicas}
        self._seq = 0
        self._closing = False
        self._pumping = False
        self._background: set[asyncio.Task[None]] = set()
        self._rescaling: set[str] = set()
        for pool, n in self.replicas.items():
            metrics.replicas.labels(pool).set(n)
        self.autoscaler = AutoScaler(self, sample or SystemSampler().sample)

    # -- submitting -----------------------------------------------------------------------

    def default_strategy(self, spec: TaskSpec, graph: Graph) -> Strategy:
        """When the caller leaves it open: urgent for critical work, else critical-path
        first, as wide as the graph and the pools allow."""
        width = planning.max_width(graph.levels())
        approach: Approach = (
            "parallel_urgent" if spec.priority == "critical" else "parallel_optimized"
        )
        return Strategy(
            approach=approach,
            max_concurrency=max(1, min(width, sum(self.planning_replicas().values()))),
        )

    async def prepare(self, spec: TaskSpec, strategy: Strategy | None) -> Prepared:
        """Decompose and plan without running."""
        dec = decompose(spec, self.pools)
        strategy = strategy or self.default_strategy(spec, dec.graph)
        keys = {nid: planning.history_keys(spec.type, n) for nid, n in dec.graph.nodes.items()}
        history = await self._history_for(keys)
        est = planning.estimates(dec.graph, keys, history, self.settings.default_estimate_s)
        capability = self._capabilities(dec.graph)
        plan = planning.plan_summary(
            dec.graph, est, strategy, self.planning_replicas(), capability, self.pool_stats()
        )
        if dec.pattern:
            plan["pattern"] = dec.pattern
        return Prepared(dec.graph, strategy, keys, est, capability, plan, dec.message)

    async def submit(
        self, spec: TaskSpec, strategy: Strategy | None = None, token_name: str | None = None
    ) -> TaskRun:
        """Accept a task: persist it, start what is ready, return once it is durable."""
        prep = await self.prepare(spec, strategy)
        graph, est, capability = prep.graph, prep.estimate_s, prep.capability
        strategy, plan, message = prep.strategy, prep.plan, prep.message
        self._seq += 1
        run = TaskRun(
            id=uuid.uuid4().hex,
            seq=self._seq,
            spec=spec,
            strategy=strategy,
            graph=graph,
            estimate_s=est,
            bottom_s=bottom_levels(graph, est),
            plan=plan,
            created_at=self.clock(),
            token_name=token_name,
            history_keys=prep.keys,
        )
        for nid, node in graph.nodes.items():
            status = Status.READY if not node.depends_on else Status.PENDING
            run.subs[nid] = SubState(node, status, len(node.depends_on), capability[nid])
        run.unfinished = len(run.subs)
        if message is not None:
            run.status = Status.PLANNED
            run.message = message
            for sub in run.subs.values():
                sub.status = Status.PENDING
            run.done.set()
            self._remember(run)
        self.store.put_task(run.task_row())
        for row in run.subtask_rows():
            self.store.put_subtask(row)
        self._event(run, None, "task_submitted", {"subtasks": len(run.subs), "status": run.status})
        if message is None:
            self._activate(run)
        await self.store.flush()
        return run

    def _activate(self, run: TaskRun) -> None:
        for nid, sub in run.subs.items():
            if sub.status is Status.READY:
                heapq.heappush(run.ready, (run.key(nid), nid))
        self._active.append(run)
        self._active.sort(key=lambda r: r.rank)
        if run.unfinished == 0:
            self._finish_run(run)
        self._pump()

    def _capabilities(self, graph: Graph) -> dict[str, dict[str, float]]:
        """How well each node's words match each pool (empty: explicit agent or no action).
        Nodes of one step share their words, so each distinct (text, executable) is scored once."""
        seen: dict[tuple[str, str | None], dict[str, float]] = {}
        out: dict[str, dict[str, float]] = {}
        for nid, node in graph.nodes.items():
            if node.agent is not None or node.action is None:
                out[nid] = {}
                continue
            key = (f"{node.step or ''} {node.description}", action_executable(node.action))
            if key not in seen:
                seen[key] = capability_scores(self.pools, *key)
            out[nid] = seen[key]
        return out

    async def _history_for(self, keys_by_node: dict[str, list[str]]) -> dict[str, float]:
        keys = {k for ks in keys_by_node.values() for k in ks}
        missing = [k for k in keys if k not in self._history]
        if missing:
            found = await asyncio.to_thread(self.store.durations, missing)
            for k in missing:
                self._history[k] = found.get(k)
        return {k: v for k in keys if (v := self._history.get(k)) is not None}

    # -- scheduling -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Start whatever can start now, in priority order across tasks."""
        if self._pumping or self._closing:
            return
        self._pumping = True
        stats: planning.PoolStats | None = None  # computed once per pump, when needed
        try:
            for run in self._active:
                if not any(v > 0 for v in self.free.values()):
                    break
                room = run.limit - run.running
                if room <= 0 or not run.ready or run.cancelling:
                    continue
                if stats is None:
                    stats = self.pool_stats()

                def place(
                    nid: str, run: TaskRun = run, stats: planning.PoolStats = stats
                ) -> str | None:
                    sub = run.subs[nid]
                    decision = planning.place(
                        sub.node.agent,
                        sub.capability,
                        self.free,
                        self.replicas,
                        run.strategy.selection,
                        run.turn,
                        stats,
                    )
                    if decision.pool is not None:
                        self.free[decision.pool] -= 1
                        run.turn += 1
                        sub.routing = decision
                    return decision.pool

                for nid, pool in planning.take_startable(run.ready, place, room):
                    self._start(run, run.subs[nid], pool)
        finally:
            self._pumping = False

    def _start(self, run: TaskRun, sub: SubState, pool: str) -> None:
        now = self.clock()
        sub.status = Status.RUNNING
        sub.attempts += 1
        sub.agent_type = pool
        sub.started_at = now
        sub.finished_at = None
        sub.argv = None
        run.running += 1
        if run.status is Status.PENDING:
            run.status = Status.RUNNING
            run.started_at = now
            self.store.put_task({"id": run.id, "status": "running", "started_at": now})
        # The `running` row is written with the pid once the process exists (one write, not
        # two); a non-idempotent subtask also has it committed before it starts (_execute).
        self._event(run, sub, "subtask_started", {"attempt": sub.attempts, "agentType": pool})
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

    async def _execute(self, run: TaskRun, sub: SubState, pool: str) -> None:
        try:
            if not sub.node.idempotent:
                # "Never run twice" needs the running mark durable before the action starts.
                self._persist_running(run, sub, None)
                await self.store.flush()
            result = await self._run_action(run, sub, pool)
        except asyncio.CancelledError:
            self._release(run, pool)
            if not self._closing:
                self._settle(
                    run, sub, pool, ActionResult(False, reason="cancelled", error="cancelled")
                )
            else:
                # Not settled: the next start runs it again. The audit still sees it end.
                self._audit(run, sub, pool, ActionResult(False, reason="interrupted"), self.clock())
            return
        except Exception as exc:  # a runner's bug must not take the scheduler down
            log.exception("action runner failed for %s/%s", run.id, sub.node.id)
            result = ActionResult(False, reason="error", error=f"internal error: {exc!r}")
        self._release(run, pool)
        self._settle(run, sub, pool, result)

    def _release(self, run: TaskRun, pool: str) -> None:
        self.free[pool] += 1
        run.running -= 1

    async def _run_action(self, run: TaskRun, sub: SubState, pool: str) -> ActionResult:
        node = sub.node
        action = node.action
        spec = self.pools.pools[pool]
        if action is None or action.kind not in spec.action_kinds:
            kind = getattr(action, "kind", "none")
            return ActionResult(
                False, reason="denied", error=f"{kind} actions are not permitted in the {pool} pool"
            )
        timeout_s = node.timeout_s or (
            self.settings.urgent_timeout_s
            if run.strategy.approach == "parallel_urgent"
            else self.settings.default_timeout_s
        )
        argv = None
        if isinstance(action, ShellAction):
            values = {
                "component": node.component or "",
                "taskId": run.id,
                "subtaskId": node.id,
                "step": node.step or "",
                "taskType": run.spec.type,
                "attempt": str(sub.attempts),
            }
            try:
                argv = substitute(action.argv, values, allow_option_values=node.allow_option_values)
            except ActionDenied as exc:
                return ActionResult(False, reason="denied", error=exc.message)
            sub.argv = argv
        if self.remote is not None:
            job = Job(
                dispatch_id="-",
                task_id=run.id,
                subtask_id=node.id,
                attempt=sub.attempts,
                dispatch=1,
                pool=pool,
                action=action,
                argv=argv,
                timeout_s=timeout_s,
                output_cap_bytes=self.settings.output_cap_bytes,
                lease_s=self.remote.lease_s,
            )
            return await self.remote.run(
                job,
                idempotent=node.idempotent,
                on_claim=lambda: self._persist_running(run, sub, None),
            )
        ctx = ActionContext(
            task_id=run.id,
            subtask_id=node.id,
            attempt=sub.attempts,
            timeout_s=timeout_s,
            output_cap_bytes=self.settings.output_cap_bytes,
            workspace=self.workspace,
            on_spawn=lambda pid, start: self._persist_running(run, sub, pid, start),
        )
        return await execute(
            self.runners, action, ctx, spec, pool, argv=argv, limits=self.limits[pool]
        )

    def _settle(self, run: TaskRun, sub: SubState, pool: str, result: ActionResult) -> None:
        """Record how an attempt ended and decide what follows."""
        now = self.clock()
        duration = now - sub.started_at if sub.started_at is not None else None
        sub.exit_code = result.exit_code
        # Any runner's text (an http answer in a charset the server chose) goes to the store.
        sub.output = encodable(result.output)
        sub.error = encodable(result.error)
        sub.reason = result.reason
        sub.handle = None
        delay_s = 0.0
        if result.ok:
            sub.status = Status.SUCCEEDED
        elif result.reason == "cancelled" or run.cancelling:
            sub.status = Status.CANCELLED
        else:
            decision = decide_retry(
                sub.attempts,
                sub.node.retries,
                result.reason,
                base_s=self.settings.retry_base_s,
                cap_s=self.settings.retry_cap_s,
                jitter=self.jitter(),
            )
            sub.status = Status.PENDING if decision.retry else Status.FAILED
            delay_s = decision.delay_s
        attempt_status = (
            "succeeded"
            if result.ok
            else ("cancelled" if sub.status is Status.CANCELLED else "failed")
        )
        self.store.put_attempt(
            {
                "task_id": run.id,
                "subtask_id": sub.node.id,
                "attempt": sub.attempts,
                "agent_type": pool,
                "status": attempt_status,
                "started_at": sub.started_at,
                "exit_code": result.exit_code,
                "reason": result.reason,
                "error": result.error[-2000:],
                "finished_at": now,
            }
        )
        self._audit(run, sub, pool, result, now)
        self.metrics.subtask_ended(pool, attempt_status, duration)
        if duration is not None and attempt_status != "cancelled" and result.reason != "denied":
            outcome = self._outcomes.setdefault(pool, [0, 0, 0.0])
            outcome[0] += 1
            outcome[1] += 1 if result.ok else 0
            outcome[2] += (duration - outcome[2]) / outcome[0]
        if duration is not None and result.reason not in ("denied", "cancelled"):
            self._learn(run, sub.node, duration, result.ok)
        if sub.status is Status.PENDING:  # a retry after a backoff
            self._persist_sub(run, sub, None)
            self._event(
                run,
                sub,
                "subtask_retry",
                {"attempt": sub.attempts, "delaySeconds": delay_s, "reason": result.reason},
            )
            sub.retry_timer = asyncio.get_running_loop().call_later(
                delay_s, self._requeue, run, sub
            )
            return
        sub.finished_at = now
        self._persist_sub(run, sub, now)
        self._event(
            run,
            sub,
            "subtask_finished",
            {"status": str(sub.status), "exitCode": result.exit_code, "reason": result.reason},
        )
        self._after_finish(run, sub)

    def _audit(
        self, run: TaskRun, sub: SubState, pool: str, result: ActionResult, now: float
    ) -> None:
        """One audit record per attempt, small: no output text, argv redacted and bounded."""
        denied = result.reason == "denied"
        started = sub.started_at if sub.started_at is not None else now
        fields = {
            "at": started,
            "kind": "action",
            "token_name": run.token_name,
            "action": getattr(sub.node.action, "kind", None),
            "pool": pool,
            "task_id": run.id,
            "subtask_id": sub.node.id,
            "attempt": sub.attempts,
            "decision": "denied" if denied else "allowed",
            "outcome": "succeeded" if result.ok else (result.reason or "failed"),
            "detail": redact_text(result.error) if denied else None,
            "exit_code": result.exit_code,
            "duration_s": now - started,
            "output_bytes": result.output_bytes,
        }
        record_attempt(self.store, fields, sub.node.action, sub.argv)

    def _persist_running(
        self, run: TaskRun, sub: SubState, pid: int | None, pid_start: int | None = None
    ) -> None:
        self.store.put_subtask(
            {
                "task_id": run.id,
                "id": sub.node.id,
                "status": "running",
                "attempts": sub.attempts,
                "agent_type": sub.agent_type,
                "started_at": sub.started_at,
                "finished_at": None,
                "pid": pid,
                "pid_start": pid_start,
            }
        )
        run.mark = self.store.write_mark()

    def _requeue(self, run: TaskRun, sub: SubState) -> None:
        sub.retry_timer = None
        if run.cancelling or sub.status is not Status.PENDING:
            return
        sub.status = Status.READY
        heapq.heappush(run.ready, (run.key(sub.node.id), sub.node.id))
        self._pump()

    def _after_finish(self, run: TaskRun, sub: SubState) -> None:
        run.unfinished -= 1
        if sub.status is Status.SUCCEEDED:
            for child_id in run.graph.dependents[sub.node.id]:
                child = run.subs[child_id]
                child.remaining -= 1
                if child.remaining == 0 and child.status is Status.PENDING:
                    child.status = Status.READY
                    self.store.put_subtask({"task_id": run.id, "id": child_id, "status": "ready"})
                    heapq.heappush(run.ready, (run.key(child_id), child_id))
        elif sub.status is not Status.CANCELLED:
            self._skip_downstream(run, sub.node.id, f"upstream {sub.node.id} {sub.status}")
        run.mark = self.store.write_mark()
        if run.unfinished == 0:
            self._finish_run(run)
        self._pump()

    def _skip_downstream(self, run: TaskRun, nid: str, why: str) -> None:
        now = self.clock()
        for child_id in run.graph.descendants(nid):
            child = run.subs[child_id]
            if child.status in FINISHED or child.status is Status.RUNNING:
                continue
            child.status = Status.SKIPPED
            child.reason = "upstream_failed"
            child.error = why
            child.finished_at = now
            run.unfinished -= 1
            self._persist_sub(run, child, now)

    def _persist_sub(self, run: TaskRun, sub: SubState, finished_at: float | None) -> None:
        self.store.put_subtask(
            {
                "task_id": run.id,
                "id": sub.node.id,
                "status": str(sub.status),
                "attempts": sub.attempts,
                "exit_code": sub.exit_code,
                "output": sub.output,
                "error": sub.error,
                "reason": sub.reason,
                "finished_at": finished_at,
                "pid": None,
                "pid_start": None,
            }
        )
        run.mark = self.store.write_mark()

    def _learn(self, run: TaskRun, node: Node, duration_s: float, ok: bool) -> None:
        keys = run.history_keys.get(node.id) or planning.history_keys(run.spec.type, node)
        self.store.record_duration(keys, duration_s, ok)
        for key in keys:
            old = self._history.get(key)
            # The store keeps the exact running mean; this mirror only needs to be close.
            self._history[key] = duration_s if old is None else old + (duration_s - old) * 0.5

    def _finish_run(self, run: TaskRun) -> None:
        now = self.clock()
        statuses = {s.status for s in run.subs.values()}
        if run.cancelling or Status.CANCELLED in statuses:
            run.status = Status.CANCELLED
        elif statuses <= {Status.SUCCEEDED}:
            run.status = Status.SUCCEEDED
        else:
            run.status = Status.FAILED
        run.finished_at = now
        rows = run.subtask_rows()
        run.metrics = run_metrics(run.created_at, now, rows, self._usable(run), self._ideal(run))
        self.store.put_task(
            {"id": run.id, "status": str(run.status), "finished_at": now, "metrics": run.metrics}
        )
        self._event(run, None, "task_finished", {"status": str(run.status)})
        self.metrics.tasks.labels(str(run.status)).inc()
        self.metrics.parallel_ratio.set(run.metrics["parallelExecutionRatio"])
        self.metrics.overhead_ratio.set(run.metrics["orchestrationOverhead"])
        with contextlib.suppress(ValueError):
            self._active.remove(run)
        self._remember(run)
        run.done.set()

    def _usable(self, run: TaskRun) -> int:
        width = planning.max_width(run.graph.levels())
        return max(1, min(run.limit, width, sum(self.planning_replicas().values())))

    def _ideal(self, run: TaskRun) -> float | None:
        """What a perfect list scheduler would need with the measured durations."""
        actual: dict[str, float] = {}
        for nid, sub in run.subs.items():
            if sub.started_at is None or sub.finished_at is None:
                actual[nid] = 0.0
            else:
                actual[nid] = sub.finished_at - sub.started_at
        capability = {nid: s.capability for nid, s in run.subs.items()}
        return planning.simulate(
            run.graph, actual, run.strategy, self.planning_replicas(), capability, self.pool_stats()
        ).makespan_s

    def _remember(self, run: TaskRun) -> None:
        self._recent[run.id] = run
        self._recent_subtasks += len(run.subs)
        while len(self._recent) > _RECENT_RUNS or (
            self._recent_subtasks > _RECENT_SUBTASKS and len(self._recent) > 1
        ):
            _, old = self._recent.popitem(last=False)
            self._recent_subtasks -= len(old.subs)
            # What a read of a task no longer in memory must see committed.
            self._evicted_mark = max(self._evicted_mark, old.mark)

    def _event(self, run: TaskRun, sub: SubState | None, kind: str, data: dict[str, Any]) -> None:
        self.store.add_event(
            {
                "task_id": run.id,
                "subtask_id": sub.node.id if sub else None,
                "kind": kind,
                "data": data,
                "at": self.clock(),
            }
        )
        run.mark = self.store.write_mark()

    # -- queries and control --------------------------------------------------------------

    def find(self, task_id: str) -> TaskRun | None:
        for run in self._active:
            if run.id == task_id:
                return run
        return self._recent.get(task_id)

    async def result(self, task_id: str) -> dict[str, Any]:
        """The contract's result for a task, from memory or the store. Whatever it reports
        has been committed: it waits for the writer only when the task has writes pending."""
        _check_task_id(task_id)
        run = self.find(task_id)
        # A task not in memory ended before the last run evicted (or before this server
        # started): only the writes of evicted runs can still be pending for it.
        if not self.store.durable(run.mark if run is not None else self._evicted_mark):
            await self.store.flush()
        on = self.settings.personality == "on"
        if run is not None:
            rows = run.subtask_rows()
            metrics = run.metrics or run_metrics(
                run.created_at, None, rows, self._usable(run), None
            )
            comment = task_comment(str(run.status), metrics, len(rows), on)
            for row in rows:
                routing = run.subs[row["id"]].routing
                row["routing"] = routing_view(routing) if routing is not None else None
            return task_result(run.task_row(), rows, comment, self.clock(), metrics)
        task = await asyncio.to_thread(self.store.get_task, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}", taskId=task_id)
        subs = await asyncio.to_thread(self.store.get_subtasks, task_id)
        latest = await asyncio.to_thread(self.store.decisions, task_id)
        for row in subs:
            decision = latest.get(row["id"])
            row["routing"] = decision and {
                "pool": decision["pool"],
                "scores": decision["scores"],
                "selection": decision["selection"],
                "reason": decision["reason"],
            }
        comment = task_comment(task["status"], task.get("metrics") or {}, len(subs), on)
        return task_result(task, subs, comment, self.clock())

    async def wait(self, run: TaskRun, timeout_s: float) -> bool:
        """True when the task ended within the timeout."""
        try:
            await asyncio.wait_for(run.done.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def list_tasks(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        if not self.store.durable(self.store.write_mark()):
            await self.store.flush()
        rows = await asyncio.to_thread(self.store.list_tasks, status, limit)
        out = []
        for row in rows:
            run = self.find(row["id"])
            out.append(task_summary(run.task_row() if run else row, run.counts() if run else None))
        return out

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Stop a task: nothing new starts, running processes are killed."""
        _check_task_id(task_id)
        run = next((r for r in self._active if r.id == task_id), None)
        if run is None:
            known = self.find(task_id)
            if known is not None:
                status = str(known.status)
            else:
                row = await asyncio.to_thread(self.store.get_task, task_id)
                if row is None:
                    raise NotFound(f"no task {task_id!r}", taskId=task_id)
                status = str(row["status"])
            raise Conflict(f"task {task_id} has already ended ({status})", status=status)
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
                self._persist_sub(run, sub, now)
        run.ready.clear()
        if handles:
            await asyncio.gather(*handles, return_exceptions=True)
        if run.unfinished == 0 and not run.done.is_set():
            self._finish_run(run)
        return await self.result(task_id)

    # -- life cycle -----------------------------------------------------------------------

    async def resume(self) -> list[str]:
        """Claim and pick up the unfinished tasks this server left (in an earlier run on the
        same home), nobody's, or a dead server's; returns their ids. Servers sharing a
        database never resume the same task."""
        # Whatever a dead server's actions left (escaped processes now belong to init) goes
        # first, whether or not its task is resumed here.
        await asyncio.to_thread(self.shell.kill_orphans)
        tasks = await asyncio.to_thread(self.store.claim_unfinished, SERVER_STALE_AFTER_S)
        resumed = []
        for task in sorted(tasks, key=lambda t: t["created_at"]):
            rows = await asyncio.to_thread(self.store.get_subtasks, task["id"])
            for row in rows:
                if row.get("pid"):
                    _kill_orphan(int(row["pid"]), row.get("pid_start"), row.get("started_at"))
            try:
                run = self._rebuild(task, rows)
            except ValidationError as exc:  # stored by an earlier version with looser rules
                self._fail_refused(task["id"], rows, exc)
                continue
            self._event(run, None, "task_resumed", {"unfinished": run.unfinished})
            self._activate(run)
            resumed.append(run.id)
        await self.store.flush()
        return resumed

    def _fail_refused(self, task_id: str, rows: list[dict[str, Any]], exc: ValidationError) -> None:
        """A stored task today's input rules refuse fails, saying why, rather than run."""
        fields = [f"{e['field']}: {e['reason']}" for e in format_validation_errors(exc.errors())]
        why = printable(f"not resumed: today's input rules refuse it ({'; '.join(fields[:3])})")
        log.warning("task %s %s", task_id, why)
        writes = refused_writes(task_id, rows, why, self.clock())
        self.store.put_task(writes.task)
        for row in writes.subtasks:
            self.store.put_subtask(row)
        self.store.add_event(writes.event)

    def _rebuild(self, task: dict[str, Any], rows: list[dict[str, Any]]) -> TaskRun:
        spec = TaskSpec.model_validate(task["spec"])
        strategy = Strategy.model_validate(task["strategy"])
        nodes = [_node_from_row(r) for r in rows]
        graph = Graph(
            {n.id: n for n in nodes},
            {n.id: [] for n in nodes},
        )
        for n in nodes:
            for dep in n.depends_on:
                graph.dependents[dep].append(n.id)
        keys = {nid: planning.history_keys(spec.type, n) for nid, n in graph.nodes.items()}
        est = planning.estimates(graph, keys, {}, self.settings.default_estimate_s)
        self._seq += 1
        run = TaskRun(
            id=task["id"],
            seq=self._seq,
            spec=spec,
            strategy=strategy,
            graph=graph,
            estimate_s=est,
            bottom_s=bottom_levels(graph, est),
            plan=task.get("plan") or {},
            created_at=task["created_at"],
            token_name=task.get("token_name"),
            status=Status(task["status"]),
            started_at=task.get("started_at"),
        )
        run.history_keys = keys
        capability = self._capabilities(graph)
        now = self.clock()
        for row, node in zip(rows, nodes, strict=True):
            status = Status(row["status"])
            sub = SubState(
                node,
                status,
                0,
                capability.get(node.id, {}),
                attempts=row["attempts"] or 0,
                exit_code=row.get("exit_code"),
                output=row.get("output") or "",
                error=row.get("error") or "",
                reason=row.get("reason"),
                agent_type=row.get("agent_type"),
                started_at=row.get("started_at"),
                finished_at=row.get("finished_at"),
            )
            if status is Status.RUNNING and not node.idempotent:
                sub.status, sub.reason, sub.finished_at = Status.FAILED, "interrupted", now
                sub.error = "the server stopped while this non-idempotent subtask ran"
                self._persist_sub(run, sub, now)
            elif status not in FINISHED:
                sub.status = Status.PENDING
            run.subs[node.id] = sub
        for sub in run.subs.values():
            sub.remaining = sum(
                1 for d in sub.node.depends_on if run.subs[d].status is not Status.SUCCEEDED
            )
        run.unfinished = sum(1 for s in run.subs.values() if s.status not in FINISHED)
        for nid, sub in run.subs.items():
            if sub.status in (Status.FAILED, Status.SKIPPED, Status.LOOP_BLOCKED):
                self._skip_downstream(run, nid, f"upstream {nid} {sub.status}")
        for sub in run.subs.values():
            if sub.status is Status.PENDING and sub.remaining == 0:
                sub.status = Status.READY
                self._persist_sub(run, sub, None)
        return run

    async def close(self) -> None:
        """Stop: kill running actions; their subtasks stay `running` in the store, so the
        next start runs them again (or fails them as interrupted when not idempotent)."""
        self._closing = True
        handles = [s.handle for r in self._active for s in r.subs.values() if s.handle is not None]
        for h in handles:
            h.cancel()
        if handles:
            await asyncio.gather(*handles, return_exceptions=True)
        await self.store.flush()


def _node_from_row(row: dict[str, Any]) -> Node:
    spec = row["spec"]
    action = _ACTION.validate_python(spec["action"]) if spec.get("action") else None
    return Node(
        id=row["id"],
        seq=row["seq"],
        action=action,
        depends_on=tuple(row["depends_on"]),
        component=row.get("component"),
        step=row.get("step"),
        agent=row.get("requested_agent"),
        description=spec.get("description") or "",
        timeout_s=spec.get("timeoutSeconds"),
        retries=spec.get("retries") or 0,
        estimate_s=spec.get("estimatedSeconds"),
        idempotent=spec.get("idempotent", True),
        allow_option_values=spec.get("allowOptionValues", False),
    )


def _check_task_id(task_id: str) -> None:
    """NotFound for an id no task can have, before the store is asked (PostgreSQL would fail
    on a NUL, not answer that there is no such task)."""
    if not clean_text(task_id):
        raise NotFound(f"no task {printable(task_id)!r}", taskId=printable(task_id))


def _kill_orphan(pid: int, start_ticks: int | None, started_at: float | None) -> None:
    """Kill the process group a dead server left, if that pid is still the same process."""
    if is_our_orphan(pid, start_ticks, started_at):
        log.warning("killing process group %d left by a previous server", pid)
        kill_group(pid)


def routing_view(decision: RoutingDecision) -> dict[str, Any]:
    """A routing decision as the task detail shows it."""
    return {
        "pool": decision.pool,
        "scores": decision.scores,
        "selection": decision.selection,
        "reason": decision.reason,
    }
