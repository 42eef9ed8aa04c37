"""`decompose: "llm"`: a plan proposed by the local model under the plan's JSON schema, and the
patterns with a warning when the answer is not a plan or no model is configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers.llm_server import LlmServer
from tests.helpers.llm_stub import Answer, LlmStub, serve_stub
from tests.helpers.scheduler import scheduler

from reynolds.adapters.actions.llm import LlmRunner
from reynolds.core.decomposition import decompose
from reynolds.core.llm_plan import plan_schema
from reynolds.core.models import TaskSpec
from reynolds.core.pools import PoolSet

pytestmark = pytest.mark.anyio

TASK = {
    "type": "migration",
    "description": "Move the tools to the SDK",
    "components": ["alpha", "beta"],
    "decompose": "llm",
}


def pools_with_executors() -> PoolSet:
    executor = {"kind": "shell", "argv": ["echo", "{step}", "{component}"]}
    spec = {"replicas": {"min": 1, "max": 4, "initial": 2}, "executor": executor}
    pools = {"code": {"name": "code-pool", **spec}, "devops": {"name": "devops-pool", **spec}}
    return PoolSet.from_mapping({"pools": pools}, source="test")


@pytest.fixture
def stub() -> Iterator[LlmStub]:
    yield from serve_stub(LlmStub())


async def test_the_local_model_plans_the_task_under_the_plan_schema(llm_server: LlmServer) -> None:
    pools = pools_with_executors()
    runner = LlmRunner(base_url=llm_server.base_url, model=llm_server.model)
    settings = {"llm_plan_max_tokens": 3000, "llm_schema_format": "json_object"}
    async with scheduler(pool_set=pools, llm=runner, **settings) as s:
        prepared = await s.engine.planner.prepare(TaskSpec.model_validate(TASK), None)
    await runner.aclose()

    plan = prepared.plan
    assert "warning" not in plan, plan.get("warning")
    assert plan["pattern"] == "llm"
    assert plan["llm"]["completionTokens"] > 0  # the model was asked, and answered
    pattern_ids = set(
        decompose(TaskSpec.model_validate(TASK | {"decompose": "patterns"}), pools).graph.nodes
    )
    assert set(prepared.graph.nodes) != pattern_ids
    assert all(node.agent in ("code", "devops") for node in prepared.graph.nodes.values())
    assert all(node.action is not None for node in prepared.graph.nodes.values())


async def test_a_plan_that_ignores_the_schema_falls_back_to_the_pattern_with_a_warning(
    stub: LlmStub,
) -> None:
    stub.answers = [Answer(content="First migrate everything, then check it.")]
    runner = LlmRunner(base_url=stub.base_url, model="stub")
    async with scheduler(pool_set=pools_with_executors(), llm=runner) as s:
        result = await s.run(TASK)
    await runner.aclose()

    plan = result["plan"]
    assert plan["pattern"] == "migration"
    assert "the LLM plan was not used (the model's answer is not JSON" in plan["warning"]
    assert {sub["id"] for sub in result["subtasks"]} == {
        "migrate:alpha",
        "migrate:beta",
        "validate",
    }
    (request,) = stub.requests
    assert request["response_format"]["json_schema"]["schema"] == plan_schema(
        pools_with_executors()
    )


async def test_a_plan_with_an_unknown_pool_falls_back_with_a_warning(stub: LlmStub) -> None:
    bad = '{"stages": [[{"name": "go", "agent": "nowhere", "perComponent": true}]]}'
    stub.answers = [Answer(content=bad)]
    runner = LlmRunner(base_url=stub.base_url, model="stub")
    async with scheduler(pool_set=pools_with_executors(), llm=runner) as s:
        prepared = await s.engine.planner.prepare(TaskSpec.model_validate(TASK), None)
    await runner.aclose()

    assert prepared.plan["pattern"] == "migration"
    assert "nowhere" in prepared.plan["warning"]


async def test_without_a_model_the_patterns_plan_with_a_warning() -> None:
    async with scheduler(pool_set=pools_with_executors(), llm=LlmRunner(base_url=None)) as s:
        prepared = await s.engine.planner.prepare(TaskSpec.model_validate(TASK), None)

    assert prepared.plan["pattern"] == "migration"
    assert "REYNOLDS_LLM_BASE_URL" in prepared.plan["warning"]


async def test_the_tokens_spent_on_the_plan_count_against_the_task_s_budget(
    llm_server: LlmServer,
) -> None:
    runner = LlmRunner(base_url=llm_server.base_url, model=llm_server.model)
    settings = {"llm_plan_max_tokens": 3000, "llm_schema_format": "json_object"}
    async with scheduler(pool_set=pools_with_executors(), llm=runner, **settings) as s:
        result = await s.run(TASK | {"budget": {"tokens": 1}})
    await runner.aclose()

    assert result["plan"]["pattern"] == "llm", result["plan"].get("warning")
    assert result["status"] == "failed" and result["reason"] == "budget_exceeded"
    assert s.shell.started == []  # the plan alone spent the budget: nothing ran
    spent = result["plan"]["llm"]["promptTokens"] + result["plan"]["llm"]["completionTokens"]
    assert result["metrics"]["tokens"]["total"] == spent
