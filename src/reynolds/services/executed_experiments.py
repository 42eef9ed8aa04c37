"""`run_experiment` in execute mode: each variant run for real, as tasks on the pools,
interleaved (A B A B …) so that drift in the machine's load falls on every variant alike.

It runs in the background: `run_experiment` answers at once with the experiment `running`
and its progress, which `GET /experiments/{id}` follows; `cancel` stops it (the task running
then is cancelled too). Each run is a task of its own (submitted with `force`, as the same
task again and again is what an experiment is); what one run teaches the planner (durations)
is used by the next, as it would be in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reynolds.core import experiments as ex
from reynolds.core.models import SUBTASKS_CEILING, TaskSpec
from reynolds.core.simulator import Attempt
from reynolds.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from reynolds.services.engine import Engine

log = logging.getLogger("reynolds.experiments")
# Subtasks one executed experiment may run in all (runs × variants × subtasks).
MAX_EXECUTED = 10_000
# A run that has not ended by then is cancelled and counted as failed.
RUN_TIMEOUT_S = 3600.0


def refuse_simulate_only(scenario: ex.Scenario) -> None:
    """What only a simulation can vary: replicas (real pools are scaled by scale_agents) and
    injected failures; and a merge into one new branch, which a second run could not take."""
    workspace = scenario.task.workspace if scenario.task is not None else None
    if workspace is not None and workspace.merge is not None:
        raise InvalidInput(
            "workspace.merge creates its branch once: a task that merges can be simulated, "
            "not run again and again",
            field="scenario.task.workspace.merge",
        )
    for i, variant in enumerate(scenario.strategies):
        what_ifs = (
            ("replicas", variant.replicas),
            ("failureRate", variant.failure_rate),
            ("failureClass", variant.failure_class),
        )
        for name, value in what_ifs:
            if value is not None:
                raise InvalidInput(
                    f"{name} is a what-if of simulate mode; execute mode runs on the pools as "
                    "they are",
                    field=f"scenario.strategies.{i}.{name}",
                )


class ExecutedExperiment:
    """One experiment running for real; `progress` is read by `GET /experiments/{id}`."""

    def __init__(
        self,
        engine: Engine,
        experiment_id: str,
        scenario: ex.Scenario,
        *,
        save: Callable[[dict[str, Any]], None],
        finish: Callable[[list[ex.VariantRuns]], dict[str, Any]],
    ) -> None:
        self.engine = engine
        self.id = experiment_id
        self.scenario = scenario
        self.save = save
        self.finish = finish
        self.done = 0
        self.total = scenario.runs * len(scenario.strategies)
        self.current: str | None = None  # the task running now

    async def run(self) -> None:
        scenario = self.scenario
        measured: dict[str, dict[str, list[Any]]] = {
            v.name: {"makespans": [], "success": [], "use": [], "overhead": [], "gantt": []}
            for v in scenario.strategies
        }
        try:
            for r in range(scenario.runs):
                for variant in scenario.strategies:
                    result = await self._one(variant)
                    m = measured[variant.name]
                    metrics = result.get("metrics") or {}
                    m["makespans"].append(float(metrics.get("makespanSeconds", 0.0)))
                    m["success"].append(float(metrics.get("successRate", 0.0)))
                    m["use"].append(float(metrics.get("parallelExecutionRatio", 0.0)))
                    m["overhead"].append(float(metrics.get("orchestrationOverhead", 0.0)))
                    if r == 0:
                        m["gantt"] = _gantt(result)
                    self.done += 1
                    self.save({"status": "running", "report": {"progress": self.progress()}})
                    # On the event stream (/mcp/events, the run's own events) as it happens.
                    self.engine.store.add_event(
                        {
                            "task_id": result["taskId"],
                            "kind": "experiment_progress",
                            "data": {
                                "experimentId": self.id,
                                "variant": variant.name,
                                "round": r + 1,
                                **self.progress(),
                            },
                        }
                    )
                    await self.engine.store.flush()  # a poll sees the progress
        except asyncio.CancelledError:
            await self._stop_current()
            self.save({"status": "cancelled", "report": {"progress": self.progress()}})
            raise
        except Exception as exc:
            log.exception("experiment %s failed", self.id)
            error = getattr(exc, "message", None) or repr(exc)
            self.save({"status": "failed", "report": {"progress": self.progress(), "error": error}})
            await self.engine.store.flush()
            return
        results = [
            ex.VariantRuns(
                v, m["makespans"], m["success"], m["use"], m["overhead"], gantt=m["gantt"]
            )
            for v in scenario.strategies
            for m in [measured[v.name]]
        ]
        self.save({"status": "completed", "report": self.finish(results)})
        await self.engine.store.flush()

    def progress(self) -> dict[str, int]:
        return {"done": self.done, "total": self.total}

    async def _one(self, variant: ex.Variant) -> dict[str, Any]:
        assert self.scenario.task is not None  # a replay is never executed (Scenario's rule)
        spec = _with_retries(self.scenario.task, variant.retries)
        submitting = asyncio.ensure_future(self.engine.submit(spec, variant.strategy(), force=True))
        try:
            run = await asyncio.shield(submitting)
        except asyncio.CancelledError:
            # Cancelled while the task was being accepted: it exists, and is to be stopped.
            self.current = (await submitting).id
            raise
        self.current = run.id
        if not await self.engine.wait(run, RUN_TIMEOUT_S):
            await self.engine.cancel(run.id)
        self.current = None
        return await self.engine.result(run.id, limit=SUBTASKS_CEILING)  # every bar

    async def _stop_current(self) -> None:
        if self.current is None:
            return
        with contextlib.suppress(Conflict):  # it had just ended
            await asyncio.shield(self.engine.cancel(self.current))


def _with_retries(spec: TaskSpec, retries: int | None) -> TaskSpec:
    """The task with every step's or subtask's `retries` set (None: as it is)."""
    if retries is None:
        return spec
    if spec.steps is not None:
        steps = [s.model_copy(update={"retries": retries}) for s in spec.steps]
        return spec.model_copy(update={"steps": steps})
    if spec.subtasks is not None:
        subs = [s.model_copy(update={"retries": retries}) for s in spec.subtasks]
        return spec.model_copy(update={"subtasks": subs})
    return spec


def _gantt(result: dict[str, Any]) -> list[Attempt]:
    """The subtasks of a finished task as bars from its acceptance (the latest attempt of each)."""
    created = _at(result.get("createdAt"))
    bars = []
    for sub in result.get("subtasks") or []:
        start, end = _at(sub.get("startedAt")), _at(sub.get("finishedAt"))
        if created is None or start is None or end is None:
            continue
        bars.append(
            Attempt(
                str(sub["id"]),
                int(sub.get("attempts") or 1),
                str(sub.get("agentType") or ""),
                start - created,
                end - created,
                sub.get("status") == "succeeded",
            )
        )
    return sorted(bars, key=lambda a: a.start_s)[: ex.GANTT_MAX]


def _at(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
