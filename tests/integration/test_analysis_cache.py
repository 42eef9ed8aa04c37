"""`analyze_orchestration_potential` answers a repeated question from the cache until the
planner learns something, on either cache."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reynolds.adapters.cache.memory import MemoryCache
from reynolds.adapters.cache.redis import RedisCache
from reynolds.adapters.redis_link import RedisLink
from reynolds.bootstrap import Container, build
from reynolds.core.models import TaskSpec
from reynolds.services.analysis import CachedAnalysis
from reynolds.services.ports import Cache
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
NAP = [sys.executable, "-c", "import time; time.sleep(0.2)"]
TASK = {
    "type": "cache-check",
    "components": ["a", "b", "c"],
    "steps": [{"name": "nap", "action": {"kind": "shell", "argv": NAP}}],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home"))
    assert container.analyses is not None
    if request.param == "memory":
        cache: Cache = MemoryCache()
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        cache = RedisCache(RedisLink.from_url(url, "cache"), prefix=prefix)
    await container.analyses.cache.aclose()
    container.analyses = CachedAnalysis(
        container.engine, cache, container.analyses.version, ttl_s=300
    )
    try:
        yield container
    finally:
        await container.aclose()


async def analyze(app: Container, task: dict[str, Any]) -> dict[str, Any]:
    return await call_tool(
        app.engine,
        "analyze_orchestration_potential",
        {"task": task},
        CallContext(None, app.analyses),
    )


def analyses(app: Container) -> CachedAnalysis:
    assert app.analyses is not None
    return app.analyses


async def test_the_same_question_twice_is_computed_once(app: Container) -> None:
    first = await analyze(app, TASK)
    # The same task spelled differently: defaults written out, keys in another order.
    again = await analyze(app, {"priority": "medium", **dict(reversed(list(TASK.items())))})
    assert again == first
    assert (analyses(app).computed, analyses(app).hits) == (1, 1)
    other = await analyze(app, {**TASK, "components": ["a", "b"]})
    assert other["independentComponents"] == 2
    assert analyses(app).computed == 2


async def test_a_run_that_teaches_the_planner_durations_invalidates_the_answer(
    app: Container,
) -> None:
    before = await analyze(app, TASK)
    assert before["estimatedSequentialSeconds"] == pytest.approx(3.0)  # 1 s each, defaulted
    version = analyses(app).version.current()

    run = await app.engine.submit(TaskSpec.model_validate(TASK))
    assert await app.engine.wait(run, 30)
    await app.store.flush()

    assert analyses(app).version.current() != version
    after = await analyze(app, TASK)
    assert analyses(app).computed == 2 and analyses(app).hits == 0
    assert after["estimatedSequentialSeconds"] < 2.0  # three ~0.2 s naps, learned
    assert await analyze(app, TASK) == after
    assert analyses(app).hits == 1


async def test_scaling_a_pool_invalidates_the_answer(app: Container) -> None:
    await analyze(app, TASK)
    pool = next(iter(app.engine.replicas))
    app.engine.scale(pool, app.engine.replicas[pool] - 1, "test", "manual")
    await analyze(app, TASK)
    assert analyses(app).computed == 2
