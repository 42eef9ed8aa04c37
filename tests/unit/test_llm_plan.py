"""The LLM planner's answers: stages become a graph, and what is not a plan is refused."""

from __future__ import annotations

import json

import pytest

from reynolds.core.llm_plan import parse_plan
from reynolds.core.models import TaskSpec
from reynolds.core.pools import PoolSet
from reynolds.errors import PlanError

POOLS = PoolSet.from_mapping(
    {
        "pools": {
            "code": {
                "name": "code-pool",
                "executor": {"kind": "shell", "argv": ["echo", "{step}", "{component}"]},
            },
            "devops": {"name": "devops-pool"},
        }
    },
    source="test",
)
SPEC = TaskSpec.model_validate({"type": "port", "components": ["a", "b"], "decompose": "llm"})


def step(name: str, agent: str = "code", per_component: bool = True) -> dict[str, object]:
    return {"name": name, "agent": agent, "perComponent": per_component}


def test_stages_link_each_component_to_its_own_upstream_and_a_single_step_to_all() -> None:
    answer = {"stages": [[step("port")], [step("test")], [step("merge", per_component=False)]]}

    graph = parse_plan(json.dumps(answer), SPEC, POOLS).graph

    deps = {nid: set(node.depends_on) for nid, node in graph.nodes.items()}
    assert deps == {
        "port:a": set(),
        "port:b": set(),
        "test:a": {"port:a"},
        "test:b": {"port:b"},
        "merge": {"test:a", "test:b"},
    }
    assert graph.nodes["merge"].action is not None


def test_a_pool_without_an_executor_leaves_the_task_planned_saying_what_to_add() -> None:
    answer = {"stages": [[step("ship", agent="devops")]]}

    dec = parse_plan(json.dumps(answer), SPEC, POOLS)

    assert dec.message is not None and "devops" in dec.message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("migrate it all", "not JSON"),
        (json.dumps({"stages": []}), "stages"),
        (json.dumps({"stages": [[step("Bad Name")]]}), "name"),
        (json.dumps({"stages": [[step("x")], [step("x")]]}), "twice"),
        (json.dumps({"stages": [[step("x", agent="elsewhere")]]}), "elsewhere"),
    ],
)
def test_what_is_not_a_plan_is_refused_naming_the_problem(text: str, why: str) -> None:
    with pytest.raises(PlanError, match=why):
        parse_plan(text, SPEC, POOLS)
