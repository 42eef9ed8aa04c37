"""Routing in the engine: selection strategies, decisions shown and persisted, plan agreement."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core import planning
from reynolds.core.models import Strategy, TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
POOLS = {"devops", "platform", "code"}


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


def python_task(n: int) -> dict[str, Any]:
    """`n` independent subtasks running the interpreter, a tool of the code pool."""
    action = {"kind": "shell", "argv": [PY, "-c", "pass"]}
    return {"type": "x", "subtasks": [{"id": f"s{i}", "action": action} for i in range(n)]}


async def run(app: Container, task: dict[str, Any], selection: str) -> dict[str, Any]:
    strategy = Strategy(max_concurrency=8, selection=selection)  # type: ignore[arg-type]
    handle = await app.engine.submit(TaskSpec.model_validate(task), strategy)
    assert await app.engine.wait(handle, 30), "task did not finish in time"
    return await app.engine.result(handle.id)


@pytest.mark.parametrize("selection", ["least_busy", "most_capable", "weighted"])
async def test_matching_work_goes_to_the_pool_whose_tools_it_uses(
    app: Container, selection: str
) -> None:
    result = await run(app, python_task(3), selection)
    assert result["status"] == "succeeded", result
    assert {s["agentType"] for s in result["subtasks"]} == {"code"}
    for sub in result["subtasks"]:
        assert sub["routing"]["selection"] == selection
        assert sub["routing"]["pool"] == "code"
        assert sub["routing"]["reason"] == "capability match"
        scores = sub["routing"]["scores"]
        assert scores["code"] == max(scores.values())


async def test_round_robin_spreads_the_same_work_across_every_pool(app: Container) -> None:
    result = await run(app, python_task(3), "round_robin")
    assert result["status"] == "succeeded", result
    assert {s["agentType"] for s in result["subtasks"]} == POOLS


async def test_each_attempts_routing_decision_is_persisted_with_its_scores(
    app: Container,
) -> None:
    result = await run(app, python_task(2), "least_busy")
    await app.store.flush()
    stored = app.store.decisions(result["taskId"])
    assert set(stored) == {"s0", "s1"}
    for sid, row in stored.items():
        view = next(s for s in result["subtasks"] if s["id"] == sid)["routing"]
        assert row["attempt"] == 1
        assert {k: row[k] for k in ("pool", "selection", "scores", "reason")} == view


async def test_a_task_read_back_from_the_store_still_shows_its_routing(app: Container) -> None:
    result = await run(app, python_task(1), "weighted")
    await app.store.flush()
    app.engine.runs.recent.clear()  # force the store path
    again = await app.engine.result(result["taskId"])
    assert again["subtasks"][0]["routing"] == result["subtasks"][0]["routing"]


@pytest.mark.parametrize("selection", ["least_busy", "most_capable", "round_robin", "weighted"])
async def test_the_plan_is_the_simulation_of_the_engines_own_routing(
    app: Container, selection: str
) -> None:
    spec = TaskSpec.model_validate(python_task(5))
    strategy = Strategy(max_concurrency=8, selection=selection)  # type: ignore[arg-type]
    prep = await app.engine.prepare(spec, strategy)
    sim = planning.simulate(
        prep.graph,
        prep.estimate_s,
        strategy,
        app.engine.replicas,
        prep.capability,
        app.engine.pool_stats(),
    )
    assert prep.plan["estimatedParallelSeconds"] == round(sim.makespan_s, 3)
    result = await run(app, python_task(5), selection)
    # Five independent subtasks all start at once, so the engine places them as simulated.
    assert {s["id"]: s["agentType"] for s in result["subtasks"]} == sim.pool
