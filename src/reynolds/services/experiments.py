"""`run_experiment`: a task under several strategies, compared with statistics a person can
trust, persisted in the `experiments` table.

Simulate mode runs the scheduler's own policy (core/simulator.py) on the current pools, with
each subtask's time drawn from what history measured of it (its mean and spread, and how often
it failed), else its `estimatedSeconds`, else the default estimate. Every variant meets the
same draws in its run number r (common random numbers), so two variants differ only by what
they do, and a recorded seed reproduces the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reynolds.core import experiments as ex
from reynolds.core import simulator
from reynolds.core.graph import Graph
from reynolds.core.reporting import iso
from reynolds.core.statistics import ALPHA
from reynolds.errors import Conflict, InvalidInput, NotFound
from reynolds.services.executed_experiments import (
    MAX_EXECUTED,
    ExecutedExperiment,
    refuse_simulate_only,
)
from reynolds.services.guards import guard_policy
from reynolds.services.replay import Recorded, recorded_run

if TYPE_CHECKING:
    from reynolds.services.engine import Engine
    from reynolds.services.runs import Prepared

LIST_LIMIT = 100
SOURCES = ("recorded", "history", "estimate", "default")  # where a subtask's time came from
# Repetitions × variants × subtasks one simulation may take on (about 10 µs each).
MAX_SIMULATED = 500_000


class Experiments:
    """Runs, stores and reads experiments on `engine`'s planner, pools and store."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.new_id = new_id

    async def run(self, scenario: ex.Scenario) -> dict[str, Any]:
        """Simulate mode: the report. Execute mode: the experiment started, `running`, with
        its progress (it goes on in the background; `GET /experiments/{id}` follows it)."""
        seed = scenario.seed if scenario.seed is not None else secrets.randbelow(2**32)
        recorded: Recorded | None = None
        if scenario.replay is not None:
            recorded = await recorded_run(self.engine, scenario.replay)
            prep = recorded.prepared
        else:
            assert scenario.task is not None  # the scenario has one or the other
            prep = await self.engine.prepare(scenario.task, scenario.strategies[0].strategy())
        if prep.message is not None:
            raise InvalidInput(f"nothing to run: {prep.message}", field="scenario.task")
        if scenario.mode == "execute":
            return await self._execute(scenario, len(prep.graph.nodes), seed)
        work = scenario.runs * len(scenario.strategies) * len(prep.graph.nodes)
        if work > MAX_SIMULATED:
            raise InvalidInput(
                f"{scenario.runs} runs × {len(scenario.strategies)} variants × "
                f"{len(prep.graph.nodes)} subtasks is {work:,} simulated subtasks; at most "
                f"{MAX_SIMULATED:,} (about 5 s of work): ask for fewer repetitions",
                field="scenario.repetitions",
            )
        experiment_id, started = self.new_id(), self.clock()
        row = {
            "id": experiment_id,
            "name": scenario.name,
            "mode": scenario.mode,
            "status": "running",
            "scenario": scenario.model_dump(mode="json", by_alias=True, exclude_none=True),
            "created_at": started,
        }
        self.engine.store.put_experiment(row)
        try:
            models: dict[str, ex.TimeModel] = (
                dict(recorded.models) if recorded is not None else dict(await self._models(prep))
            )
            # Simulating is CPU work: off the event loop, which keeps serving meanwhile.
            report = await asyncio.to_thread(self._simulate, scenario, prep, models, seed)
            if recorded is not None:
                report["recorded"] = recorded.view()
        except BaseException:
            self.engine.store.put_experiment(
                {"id": experiment_id, "status": "failed", "finished_at": self.clock()}
            )
            raise
        report |= {
            "experimentId": experiment_id,
            "name": scenario.name,
            "status": "completed",
            "createdAt": iso(started),
            "finishedAt": iso(self.clock()),
        }
        self.engine.store.put_experiment(
            {
                "id": experiment_id,
                "status": "completed",
                "report": report,
                "finished_at": self.clock(),
            }
        )
        await self.engine.store.flush()
        return report

    async def _execute(self, scenario: ex.Scenario, subtasks: int, seed: int) -> dict[str, Any]:
        refuse_simulate_only(scenario)
        work = scenario.runs * len(scenario.strategies) * subtasks
        if work > MAX_EXECUTED:
            raise InvalidInput(
                f"{scenario.runs} runs × {len(scenario.strategies)} variants × {subtasks} "
                f"subtasks is {work:,} subtasks to run; at most {MAX_EXECUTED:,}",
                field="scenario.repetitions",
            )
        experiment_id, started = self.new_id(), self.clock()
        store = self.engine.store

        def save(row: dict[str, Any]) -> None:
            ended = row["status"] != "running"
            store.put_experiment(
                {"id": experiment_id, **row, **({"finished_at": self.clock()} if ended else {})}
            )

        def finish(results: list[ex.VariantRuns]) -> dict[str, Any]:
            report = ex.compare(results, _rng(seed, "bootstrap"))
            report["report"] = self._details(scenario, seed, report, None)
            return report | {
                "experimentId": experiment_id,
                "name": scenario.name,
                "status": "completed",
                "createdAt": iso(started),
                "finishedAt": iso(self.clock()),
            }

        running = ExecutedExperiment(self.engine, experiment_id, scenario, save=save, finish=finish)
        store.put_experiment(
            {
                "id": experiment_id,
                "name": scenario.name,
                "mode": scenario.mode,
                "status": "running",
                "scenario": scenario.model_dump(mode="json", by_alias=True, exclude_none=True),
                "report": {"progress": running.progress()},
                "created_at": started,
            }
        )
        await store.flush()
        live = self.engine.runs.experiments
        live[experiment_id] = asyncio.get_running_loop().create_task(running.run())
        live[experiment_id].add_done_callback(lambda _: live.pop(experiment_id, None))
        return await self.get(experiment_id)

    async def cancel(self, experiment_id: str) -> dict[str, Any]:
        """Stop an experiment running for real (and the task it is running)."""
        task = self.engine.runs.experiments.get(experiment_id)
        if task is None:
            found = await self.get(experiment_id)  # NotFound when there is none
            raise Conflict(
                f"experiment {experiment_id} is {found['status']}: nothing to cancel",
                status=found["status"],
            )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.engine.store.flush()
        return await self.get(experiment_id)

    async def interrupted(self) -> list[str]:
        """Experiments a stopped server left running end `interrupted` (they are not resumed)."""
        rows = await asyncio.to_thread(self.engine.store.list_experiments, LIST_LIMIT)
        left = [r["id"] for r in rows if r["status"] == "running"]
        for experiment_id in left:
            self.engine.store.put_experiment(
                {"id": experiment_id, "status": "interrupted", "finished_at": self.clock()}
            )
        return left

    async def get(self, experiment_id: str) -> dict[str, Any]:
        row = await asyncio.to_thread(self.engine.store.get_experiment, experiment_id)
        if row is None:
            raise NotFound(f"no experiment {experiment_id}", experimentId=experiment_id)
        return _view(row)

    async def recent(self, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.engine.store.list_experiments, limit)
        return [_summary(row) for row in rows]

    async def _models(self, prep: Prepared) -> dict[str, ex.DurationModel]:
        """Each subtask's time and failure chance: its history (the most specific key that has
        any), else its estimate, else the default."""
        keys = {k for ks in prep.keys.values() for k in ks}
        known = await asyncio.to_thread(self.engine.store.distributions, keys)
        default_s = self.engine.settings.default_estimate_s
        models = {}
        for nid, node in prep.graph.nodes.items():
            found = next((known[k] for k in prep.keys.get(nid, []) if k in known), None)
            if found is not None:
                models[nid] = ex.DurationModel.learned(*found)
            elif node.estimate_s is not None:
                models[nid] = ex.DurationModel(node.estimate_s, source="estimate")
            else:
                models[nid] = ex.DurationModel(default_s, source="default")
        return models

    def _simulate(
        self,
        scenario: ex.Scenario,
        prep: Prepared,
        models: dict[str, ex.TimeModel],
        seed: int,
    ) -> dict[str, Any]:
        engine = self.engine
        results = []
        for variant in scenario.strategies:
            graph = _with_retries(prep.graph, variant.retries)
            capacity = {**engine.planning_replicas(), **(variant.replicas or {})}
            strategy = variant.strategy()
            slots = min(sum(capacity.values()), strategy.max_concurrency)
            runs = [
                simulator.run(
                    graph,
                    strategy,
                    capacity,
                    prep.capability,
                    prep.estimate_s,
                    _sampler(models, seed, r, variant),
                    jitter=_rng(seed, r, "jitter").random,
                    retry=simulator.RetryPolicy(
                        engine.settings.retry_base_s, engine.settings.retry_cap_s
                    ),
                    guards=guard_policy(engine.settings),
                    stats=engine.pool_stats(),
                )
                for r in range(scenario.runs)
            ]
            results.append(ex.VariantRuns.of(variant, runs, slots))
        report = ex.compare(results, _rng(seed, "bootstrap"))
        sources = [m.source for m in models.values()]
        report["report"] = self._details(scenario, seed, report, sources)
        return report

    @staticmethod
    def _details(
        scenario: ex.Scenario, seed: int, report: dict[str, Any], sources: list[str] | None
    ) -> dict[str, Any]:
        """What the report rests on, its conclusion and its Markdown table."""
        return {
            "mode": scenario.mode,
            "repetitions": scenario.runs,
            "alpha": ALPHA,
            "seed": seed,
            "test": "Mann–Whitney U, two-sided; intervals: percentile bootstrap of the mean",
            **(
                {
                    "durations": {
                        s: sources.count(s) for s in SOURCES if s in sources or s != "recorded"
                    }
                }
                if sources is not None
                else {"order": "interleaved: each round runs every variant once, in order"}
            ),
            "conclusion": report.pop("conclusion"),
            "markdown": ex.markdown(report),
        }


def _sampler(
    models: dict[str, ex.TimeModel], seed: int, run: int, variant: ex.Variant
) -> simulator.Sampler:
    """Draws that depend on the run, subtask and attempt only: every variant meets the same."""
    fails = ex.Failing(variant.failure_rate, variant.failure_class)

    def sample(nid: str, attempt: int) -> simulator.Outcome:
        rng = _rng(seed, run, nid, attempt)
        return models[nid].sample(rng, fails, attempt)

    return sample


def _rng(*parts: object) -> random.Random:
    """A generator seeded by `parts`: simulation draws, never secrets."""
    return random.Random(":".join(map(str, parts)))  # noqa: S311


def _with_retries(graph: Graph, retries: int | None) -> Graph:
    if retries is None:
        return graph
    nodes = {nid: dataclasses.replace(n, retries=retries) for nid, n in graph.nodes.items()}
    return Graph(nodes, graph.dependents)


def _view(row: dict[str, Any]) -> dict[str, Any]:
    report = row.get("report")
    if row["status"] == "completed" and isinstance(report, dict):
        return report
    # Still running, or stopped: what is known, in the result's shape.
    extra = report if isinstance(report, dict) else {}
    return {
        **_summary(row),
        "variants": [],
        "report": None,
        "scenario": row.get("scenario"),
        **{k: extra[k] for k in ("progress", "error") if k in extra},
    }


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    stored = row.get("report")
    report: dict[str, Any] = stored if isinstance(stored, dict) else {}
    return {
        "experimentId": row["id"],
        "name": row["name"],
        "mode": row["mode"],
        "status": row["status"],
        "winner": report.get("winner"),
        "speedup": report.get("speedup"),
        "createdAt": iso(row.get("created_at")),
        "finishedAt": iso(row.get("finished_at")),
    }
