"""Experiments on the real engine: simulated on the scheduler's own policy, with statistics,
persisted; and the executor and the simulator following one policy."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import Container, build
from reynolds.core import planning, simulator
from reynolds.core.experiments import Scenario
from reynolds.core.models import Strategy, TaskSpec
from reynolds.errors import Conflict, InvalidInput
from reynolds.services.experiments import Experiments
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home"))
    try:
        yield container
    finally:
        await container.aclose()


def seventeen(**step: Any) -> dict[str, Any]:
    return {
        "type": "tool-migration",
        "components": [f"tool{i:02d}" for i in range(17)],
        "steps": [{"name": "migrate", "action": {"kind": "shell", "argv": ["sleep", "1"]}, **step}],
    }


def scenario(task: dict[str, Any], *strategies: dict[str, Any], **extra: Any) -> Scenario:
    return Scenario.model_validate(
        {"name": "trial", "task": task, "strategies": list(strategies), **extra}
    )


async def test_seventeen_one_second_tools_simulated_run_about_17_over_4_faster_at_five(
    app: Container,
) -> None:
    report = await Experiments(app.engine).run(
        scenario(
            seventeen(estimatedSeconds=1),
            {"name": "one at a time", "approach": "direct", "maxConcurrency": 1},
            {"name": "parallel", "approach": "parallel_optimized", "maxConcurrency": 5},
            seed=7,
        )
    )
    one, parallel = report["variants"]
    assert one["makespanSeconds"]["mean"] == pytest.approx(17.0)
    assert parallel["makespanSeconds"]["mean"] == pytest.approx(4.0)
    assert report["speedup"] == pytest.approx(17 / 4)
    assert report["winner"] == "parallel"
    assert parallel["speedupOverBaseline"]["pValue"] < 0.05
    assert report["report"]["repetitions"] == 30 and report["report"]["alpha"] == 0.05
    assert report["report"]["durations"] == {"history": 0, "estimate": 17, "default": 0}
    stored = await Experiments(app.engine).get(report["experimentId"])
    assert stored == report
    listed = await Experiments(app.engine).recent()
    assert [e["experimentId"] for e in listed] == [report["experimentId"]]
    assert listed[0]["winner"] == "parallel" and listed[0]["status"] == "completed"


async def learn(app: Container, spec: TaskSpec, durations: list[float]) -> None:
    """Durations history would have measured for every subtask of `spec`."""
    prep = await app.engine.prepare(spec, None)
    for keys in prep.keys.values():
        for seconds in durations:
            app.store.record_duration(keys, seconds, True)
    await app.store.flush()


async def test_two_identical_variants_show_no_significant_difference_and_a_seed_repeats(
    app: Container,
) -> None:
    task = seventeen()
    await learn(app, TaskSpec.model_validate(task), [0.6, 1.0, 1.4, 0.8, 1.2])
    same = {"approach": "parallel_optimized", "maxConcurrency": 5}
    trial = scenario(task, {"name": "A", **same}, {"name": "B", **same}, seed=42)
    first = await Experiments(app.engine).run(trial)
    again = await Experiments(app.engine).run(trial)
    a, b = first["variants"]
    assert first["winner"] is None
    assert "no significant difference" in first["report"]["conclusion"]
    assert b["speedupOverBaseline"]["pValue"] >= 0.05
    assert first["report"]["durations"]["history"] == 17
    low, high = a["makespanSeconds"]["ci95"]
    assert low < a["makespanSeconds"]["mean"] < high  # the learned spread makes runs vary
    assert again["variants"] == first["variants"] and again["report"]["seed"] == 42


async def test_more_replicas_and_concurrency_are_a_what_if_on_the_same_draws(
    app: Container,
) -> None:
    task = seventeen()
    await learn(app, TaskSpec.model_validate(task), [0.5, 1.0, 1.5])
    report = await Experiments(app.engine).run(
        scenario(
            task,
            {"name": "now", "maxConcurrency": 2},
            {
                "name": "wider",
                "maxConcurrency": 8,
                "replicas": {"devops": 8, "platform": 8, "code": 8},
            },
            seed=3,
        )
    )
    now, wider = report["variants"]
    # 17 one-second subtasks: 9 rounds two at a time, 3 rounds eight at a time.
    assert wider["makespanSeconds"]["mean"] < now["makespanSeconds"]["mean"] / 2.5
    assert report["winner"] == "wider"


async def test_the_executor_and_the_simulator_follow_one_ordering_policy(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    estimates = {"a": 0.05, "b": 0.2, "c": 0.1, "d": 0.15}
    spec = TaskSpec.model_validate(
        {
            "type": "policy",
            "subtasks": [
                {"id": nid, "estimatedSeconds": s, "action": {"kind": "shell", "argv": ["true"]}}
                for nid, s in estimates.items()
            ],
        }
    )
    one = Strategy(approach="parallel_optimized", max_concurrency=1)

    async def executed() -> list[str]:
        run = await app.engine.submit(spec, one, force=True)
        assert await app.engine.wait(run, 30)
        subs = (await app.engine.result(run.id))["subtasks"]
        return [s["id"] for s in sorted(subs, key=lambda s: datetime.fromisoformat(s["startedAt"]))]

    async def simulated() -> list[str]:
        prep = await app.engine.prepare(spec, one)
        done = simulator.run(
            prep.graph, one, app.engine.planning_replicas(), prep.capability, prep.estimate_s,
            lambda nid, n: simulator.Outcome(estimates[nid]), jitter=random.Random(0).random,
        )  # fmt: skip
        return [a.subtask for a in done.attempts]

    assert await executed() == await simulated() == ["b", "d", "c", "a"]  # longest first
    monkeypatch.setattr(
        planning, "order_key", lambda approach, node, bottom, est: (est, float(node.seq))
    )
    assert await executed() == await simulated() == ["a", "c", "d", "b"]  # shortest first


async def test_a_simulation_too_large_to_answer_promptly_is_refused_naming_the_field(
    app: Container,
) -> None:
    big = {
        "type": "big",
        "components": [f"c{i}" for i in range(5000)],
        "steps": [{"name": "s", "action": {"kind": "shell", "argv": ["true"]}}],
    }
    with pytest.raises(InvalidInput) as caught:
        await Experiments(app.engine).run(
            scenario(big, {"name": "a"}, {"name": "b"}, repetitions=100)
        )
    assert caught.value.details["field"] == "scenario.repetitions"
    assert await Experiments(app.engine).recent() == []


def napping(seconds: float, components: int) -> dict[str, Any]:
    return {
        "type": "naps",
        "components": [f"c{i}" for i in range(components)],
        "steps": [{"name": "nap", "action": {"kind": "shell", "argv": ["sleep", str(seconds)]}}],
    }


async def finished_experiment(app: Container, experiment_id: str) -> dict[str, Any]:
    task = app.engine.runs.experiments.get(experiment_id)
    if task is not None:
        await asyncio.wait_for(task, 120)
    return await Experiments(app.engine).get(experiment_id)


async def test_execute_mode_runs_each_variant_for_real_interleaved_with_statistics(
    app: Container,
) -> None:
    started = await Experiments(app.engine).run(
        scenario(
            napping(0.2, 3),
            {"name": "one at a time", "approach": "direct"},
            {"name": "parallel", "maxConcurrency": 3},
            mode="execute",
        )
    )
    assert started["status"] == "running" and started["progress"] == {"done": 0, "total": 10}
    report = await finished_experiment(app, started["experimentId"])
    assert report["status"] == "completed"
    one, parallel = report["variants"]
    assert one["runs"] == parallel["runs"] == 5
    for variant in (one, parallel):
        low, high = variant["makespanSeconds"]["ci95"]
        assert low <= variant["makespanSeconds"]["mean"] <= high
        assert variant["successRate"] == 1.0 and variant["overhead"] is not None
    assert one["makespanSeconds"]["mean"] >= 0.6  # three naps of 0.2 s, one after another
    assert 0 < parallel["speedupOverBaseline"]["pValue"] <= 1
    assert report["winner"] == "parallel"
    tasks = await app.engine.list_tasks(None, 20)
    assert len(tasks) == 10
    # Interleaved: A B A B ... in the order they were submitted.
    order = [t["taskId"] for t in sorted(tasks, key=lambda t: t["createdAt"])]
    strategies = [(await app.engine.result(t))["plan"]["strategy"]["approach"] for t in order]
    assert strategies == ["direct", "parallel_optimized"] * 5
    # Progress went out as events of each run's task, the last saying all ten are done.
    last = await asyncio.to_thread(app.store.events, order[-1])
    progress = [e["data"] for e in last if e["kind"] == "experiment_progress"]
    assert progress == [
        {
            "experimentId": report["experimentId"],
            "variant": "parallel",
            "round": 5,
            "done": 10,
            "total": 10,
        }
    ]
    assert len(parallel["gantt"]) == 3


async def test_an_executed_experiment_can_be_cancelled_and_stops_its_task(
    app: Container,
) -> None:
    experiments = Experiments(app.engine)
    started = await experiments.run(
        scenario(napping(30, 2), {"name": "a"}, {"name": "b"}, mode="execute")
    )
    experiment_id = started["experimentId"]

    def running_task() -> list[Any]:
        return [run for run in app.engine.runs.active if run.running > 0]

    await wait_for_async(running_task, 20, "the experiment's first task did not start")
    (task,) = running_task()
    stopped = await experiments.cancel(experiment_id)
    assert stopped["status"] == "cancelled" and stopped["progress"]["done"] == 0
    assert (await app.engine.result(task.id))["status"] == "cancelled"
    with pytest.raises(Conflict):
        await experiments.cancel(experiment_id)


async def test_replicas_and_injected_failures_are_what_ifs_of_simulate_mode_only(
    app: Container,
) -> None:
    for variant, field in (
        ({"name": "a", "replicas": {"code": 2}}, "scenario.strategies.0.replicas"),
        ({"name": "a", "failureRate": 0.5}, "scenario.strategies.0.failureRate"),
    ):
        with pytest.raises(InvalidInput) as caught:
            await Experiments(app.engine).run(scenario(napping(0, 1), variant, mode="execute"))
        assert caught.value.details["field"] == field


async def test_an_experiment_a_stopped_server_left_running_ends_interrupted(
    app: Container,
) -> None:
    app.store.put_experiment(
        {
            "id": "left",
            "name": "left",
            "mode": "execute",
            "status": "running",
            "scenario": {},
            "created_at": 1.0,
        }
    )
    await app.store.flush()
    assert await Experiments(app.engine).interrupted() == ["left"]
    await app.store.flush()
    assert (await Experiments(app.engine).get("left"))["status"] == "interrupted"


async def test_a_recorded_task_is_replayed_with_the_times_and_failures_it_had(
    app: Container, tmp_path: Path
) -> None:
    mark = tmp_path / "failed-once"
    # c0 fails its first attempt (leaving a mark), then succeeds; every attempt naps 0.2 s.
    flaky = (
        "import os, sys, time\n"
        "time.sleep(0.2)\n"
        "if sys.argv[1] == 'c0' and not os.path.exists(sys.argv[2]):\n"
        "    open(sys.argv[2], 'w').close(); sys.exit(1)\n"
    )
    spec = TaskSpec.model_validate(
        {
            "type": "recorded",
            "components": ["c0", "c1", "c2", "c3"],
            "steps": [
                {
                    "name": "work",
                    "retries": 1,
                    "action": {
                        "kind": "shell",
                        "argv": [sys.executable, "-c", flaky, "{component}", str(mark)],
                    },
                }
            ],
        }
    )
    run = await app.engine.submit(spec, Strategy(max_concurrency=2))
    assert await app.engine.wait(run, 30)
    recorded = await app.engine.result(run.id)
    # Each row keeps the estimate the run was planned with (none learned yet: the default).
    rows = await asyncio.to_thread(app.store.get_subtasks, run.id)
    assert {row["spec"]["plannedSeconds"] for row in rows} == {1.0}
    report = await Experiments(app.engine).run(
        Scenario.model_validate(
            {
                "name": "replay",
                "replay": run.id,
                "strategies": [
                    {"name": "as it ran", "maxConcurrency": 2},
                    {"name": "wider", "maxConcurrency": 4},
                ],
                "repetitions": 3,
            }
        )
    )
    assert report["recorded"]["taskId"] == run.id
    assert report["recorded"]["makespanSeconds"] == recorded["metrics"]["makespanSeconds"]
    assert report["report"]["durations"]["recorded"] == 4
    as_ran = report["variants"][0]
    bars = [b for b in as_ran["gantt"] if b["subtask"] == "work:c0"]
    assert [b["ok"] for b in bars] == [False, True]  # the failure and its retry, replayed
    assert all(b["end"] - b["start"] >= 0.2 for b in as_ran["gantt"])
    # Three rounds of 0.2 s at least (c0 twice, and a retry's backoff), however it is ordered.
    assert as_ran["makespanSeconds"]["mean"] >= 0.6


async def test_a_replay_of_an_unknown_or_unfinished_task_is_refused(app: Container) -> None:
    with pytest.raises(InvalidInput) as caught:
        await Experiments(app.engine).run(
            Scenario.model_validate({"name": "r", "replay": "nope", "strategies": [{"name": "a"}]})
        )
    assert caught.value.details["field"] == "scenario.replay"


async def test_a_task_that_merges_into_a_new_branch_is_not_executed_again_and_again(
    app: Container,
) -> None:
    task = {**napping(0, 1), "workspace": {"repo": ".", "merge": {"into": "once"}}}
    with pytest.raises(InvalidInput) as caught:
        await Experiments(app.engine).run(scenario(task, {"name": "a"}, mode="execute"))
    assert caught.value.details["field"] == "scenario.task.workspace.merge"


async def test_a_replay_holds_work_back_where_the_pools_breaker_held_the_real_run(
    tmp_path: Path,
) -> None:
    """Two timeouts in a row open the code pool's breaker for its cool-down; the run waits it
    out. Replayed, the simulator's breaker (the dispatcher's own code) opens at the same point
    and the replay waits as long."""
    cooldown_s = 1.5
    settings = Settings(home=tmp_path / "home", breaker_failures=2, breaker_cooldown_s=cooldown_s)
    container = await build(settings)
    try:
        hang = {"kind": "shell", "argv": ["sleep", "5"]}
        quick = {"kind": "shell", "argv": ["true"]}
        subtasks = [
            {"id": f"hang{i}", "agent": "code", "timeoutSeconds": 0.2, "estimatedSeconds": 5,
             "action": hang}
            for i in range(2)
        ] + [
            {"id": f"quick{i}", "agent": "code", "estimatedSeconds": 0.1, "action": quick}
            for i in range(3)
        ]  # fmt: skip
        spec = TaskSpec.model_validate({"type": "breaker", "subtasks": subtasks})
        run = await container.engine.submit(spec, Strategy(max_concurrency=1))
        assert await container.engine.wait(run, 30)
        recorded = (await container.engine.result(run.id))["metrics"]["makespanSeconds"]
        assert recorded >= cooldown_s  # the real run waited out the cool-down
        report = await Experiments(container.engine).run(
            Scenario.model_validate(
                {
                    "name": "replay",
                    "replay": run.id,
                    "strategies": [{"name": "as it ran", "maxConcurrency": 1}],
                    "repetitions": 1,
                }
            )
        )
    finally:
        await container.aclose()
    (as_ran,) = report["variants"]
    assert as_ran["breakerOpens"] == 1
    bars = {b["subtask"]: b for b in as_ran["gantt"]}
    probe = min(bars[f"quick{i}"]["start"] for i in range(3))
    # The bars are rounded to 0.1 ms: the probe may start exactly at the cool-down's end.
    assert probe >= max(bars[f"hang{i}"]["end"] for i in range(2)) + cooldown_s - 1e-3
    assert as_ran["makespanSeconds"]["mean"] == pytest.approx(recorded, rel=0.2)
