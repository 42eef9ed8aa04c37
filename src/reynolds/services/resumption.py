"""Picking up the unfinished tasks a stopped server left: what its actions left running is
killed, each task is rebuilt from its rows under the resume rules and handed to dispatch."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from reynolds.core.models import FINISHED, Status, format_validation_errors
from reynolds.core.wire_values import printable
from reynolds.services.dispatch import Dispatcher
from reynolds.services.live_runs import LiveRuns
from reynolds.services.planner import Planner
from reynolds.services.ports import SERVER_STALE_AFTER_S, ActionResult, OrphanKiller, Store
from reynolds.services.recording import Recorder
from reynolds.services.runs import TaskRun, refused_writes

log = logging.getLogger("reynolds.engine")

INTERRUPTED = ActionResult(
    ok=False, reason="interrupted", error="the server stopped while this attempt ran"
)


class Resumption:
    """Claims unfinished tasks (this home's, nobody's, or a dead server's) and resumes them."""

    def __init__(
        self,
        *,
        store: Store,
        runs: LiveRuns,
        planner: Planner,
        dispatcher: Dispatcher,
        recorder: Recorder,
        orphans: OrphanKiller,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.runs = runs
        self.planner = planner
        self.dispatcher = dispatcher
        self.record = recorder
        self.orphans = orphans
        self.clock = clock

    async def resume(self, stale_after_s: float = SERVER_STALE_AFTER_S) -> list[str]:
        """Claim and pick up the unfinished tasks this server left (in an earlier run on the
        same home), nobody's, or a dead server's; returns their ids. Servers sharing a
        database never resume the same task."""
        # Whatever a dead server's actions left (escaped processes now belong to init) goes
        # first, whether or not its task is resumed here.
        await asyncio.to_thread(self.orphans.kill_orphans)
        tasks = await asyncio.to_thread(self.store.claim_unfinished, stale_after_s)
        return await self._resume_claimed(tasks)

    async def take_over(self, stale_after_s: float) -> list[str]:
        """Claim and pick up the unfinished tasks of servers found dead since (no heartbeat
        for `stale_after_s`) and nobody's; returns their ids."""
        tasks = await asyncio.to_thread(
            functools.partial(self.store.claim_unfinished, stale_after_s, others_only=True)
        )
        if not tasks:
            return []
        await asyncio.to_thread(self.orphans.kill_orphans)
        taken = await self._resume_claimed(tasks)
        log.warning("took over %d task(s) of a server found dead: %s", len(taken), ", ".join(taken))
        return taken

    async def _resume_claimed(self, tasks: list[dict[str, Any]]) -> list[str]:
        resumed = []
        for task in sorted(tasks, key=lambda t: t["created_at"]):
            rows = await asyncio.to_thread(self.store.get_subtasks, task["id"])
            for row in rows:
                if row.get("pid"):
                    self._kill_orphan(int(row["pid"]), row.get("pid_start"), row.get("started_at"))
            try:
                run = TaskRun.from_rows(
                    task,
                    rows,
                    seq=self.runs.next_seq(),
                    default_estimate_s=self.planner.default_estimate_s,
                    capabilities=self.planner.capabilities,
                )
            except ValidationError as exc:  # stored by an earlier version with looser rules
                self._fail_refused(task["id"], rows, exc)
                continue
            self._apply_resume_rules(run)
            self.record.event(run, None, "task_resumed", {"unfinished": run.unfinished})
            self.dispatcher.activate(run)
            resumed.append(run.id)
        await self.store.flush()
        return resumed

    def _apply_resume_rules(self, run: TaskRun) -> None:
        """A non-idempotent subtask that was running fails as interrupted (it must never run
        twice); every other unfinished one runs again once its upstream has succeeded."""
        now = self.clock()
        for sub in run.subs.values():
            if sub.status is Status.RUNNING:
                # The attempt the stop cut short ended here: it goes in the ledger as such,
                # whether the subtask now fails or runs again as its next attempt.
                pool = sub.agent_type or "unknown"
                self.record.attempt(run, sub, pool, "failed", INTERRUPTED, now)
                self.record.audit(run, sub, pool, INTERRUPTED, now)
            if sub.status is Status.RUNNING and not sub.node.idempotent:
                sub.status, sub.reason, sub.finished_at = Status.FAILED, "interrupted", now
                sub.error = "the server stopped while this non-idempotent subtask ran"
                self.record.subtask(run, sub, now)
            elif sub.status not in FINISHED:
                sub.status = Status.PENDING
        for sub in run.subs.values():
            # An `always` subtask waits for its upstream to end, the others for it to succeed.
            done = FINISHED if sub.node.always else {Status.SUCCEEDED}
            sub.remaining = sum(1 for d in sub.node.depends_on if run.subs[d].status not in done)
        run.unfinished = sum(1 for s in run.subs.values() if s.status not in FINISHED)
        for nid, sub in run.subs.items():
            if sub.status in (Status.FAILED, Status.SKIPPED, Status.LOOP_BLOCKED):
                self.dispatcher.skip_downstream(run, nid, f"upstream {nid} {sub.status}")
        for sub in run.subs.values():
            if sub.status is Status.PENDING and sub.remaining == 0:
                sub.status = Status.READY
                self.record.subtask(run, sub, None)

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

    def _kill_orphan(self, pid: int, start_ticks: int | None, started_at: float | None) -> None:
        """Kill the process group a dead server left, if that pid is still the same process."""
        if self.orphans.is_our_orphan(pid, start_ticks, started_at):
            log.warning("killing process group %d left by a previous server", pid)
            self.orphans.kill_group(pid)
