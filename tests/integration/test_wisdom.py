"""get_reynolds_wisdom on a real engine: the situation's meaning, a strategy chosen by
simulation on the pools as they stand, the same answer for the same input and state, plain
when the personality is off. Tests assert the meaning, not the wording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core.wisdom import WisdomRequest, charm
from reynolds.services.wisdom import answer
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def container(home: Path, **settings: Any) -> Container:
    return await build(Settings(home=home, **settings))


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    c = await container(tmp_path / "home")
    try:
        yield c
    finally:
        await c.aclose()


def ask(app: Container, situation: str, **context: Any) -> dict[str, Any]:
    request = WisdomRequest.model_validate({"situation": situation, "context": context or None})
    return answer(app.engine, request, 0.0)


async def test_seventeen_independent_tools_get_parallel_work_at_a_concrete_concurrency(
    app: Container,
) -> None:
    wise = ask(app, "I have 17 independent tools to migrate and want to avoid sequential execution")
    assert wise["reading"]["items"] == 17 and wise["reading"]["noun"] == "tools"
    suggested = wise["suggestedStrategy"]
    assert suggested["approach"].startswith("parallel")
    slots = sum(app.engine.planning_replicas().values())
    assert 1 < suggested["maxConcurrency"] <= min(17, slots)
    assert suggested["expectedSpeedup"] > 1.5
    # The simulated candidates back the choice: none finishes sooner.
    best = min(c["makespanSeconds"] for c in suggested["candidates"])
    chosen = next(
        c for c in suggested["candidates"] if c["maxConcurrency"] == suggested["maxConcurrency"]
    )
    assert chosen["makespanSeconds"] == best
    assert any(str(suggested["maxConcurrency"]) in line for line in wise["practicalAdvice"])


async def test_a_step_that_keeps_failing_gets_advice_on_loops_and_breakers(app: Container) -> None:
    wise = ask(app, "the same step keeps failing")
    assert "loop" in wise["reading"]["signals"]
    advice = " ".join(wise["practicalAdvice"]).lower()
    assert "loop prevention" in advice and "circuit breaker" in advice
    assert "suggestedStrategy" not in wise  # no work was counted


async def test_rate_limits_deadlines_and_shared_repositories_are_each_answered(
    app: Container,
) -> None:
    wise = ask(app, "our provider answers 429 and the agents edit the same repository")
    advice = " ".join(wise["practicalAdvice"]).lower()
    assert "adaptive concurrency" in advice and "worktree" in advice
    wise = ask(app, "urgent: it must ship by friday", notes=["deadline is friday"])
    assert any("deadline" in line for line in wise["practicalAdvice"])


async def test_the_same_question_gets_the_same_answer_and_plain_words_when_off(
    app: Container, tmp_path: Path
) -> None:
    question = "9 services to roll out one by one"
    first, again = ask(app, question), ask(app, question)
    assert first == again
    assert first["charmLevel"] > 0 and first["wisdom"].endswith(charm(question))
    plain = await container(tmp_path / "plain", personality="off")
    try:
        off = ask(plain, question)
    finally:
        await plain.aclose()
    assert off["charmLevel"] == 0 and charm(question) not in off["wisdom"]
    assert off["practicalAdvice"] == first["practicalAdvice"]
