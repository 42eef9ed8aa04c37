"""Substitution, retries, decomposition patterns and input validation."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from reynolds.core.decomposition import decompose, pattern_for
from reynolds.core.models import OrchestrateRequest, TaskSpec, format_validation_errors
from reynolds.core.pools import PoolSet
from reynolds.core.retry import decide_retry
from reynolds.core.substitution import substitute
from reynolds.errors import ActionDenied, InvalidInput, UnknownDependency
from reynolds.settings import Settings


@pytest.fixture(scope="module")
def pools() -> PoolSet:
    return PoolSet.from_mapping(yaml.safe_load(Settings().agents_file.read_text()))


def test_placeholders_are_replaced_inside_elements_and_never_split() -> None:
    argv = substitute(
        ["echo", "name={component}", "{component}"],
        {"component": "a; rm -rf /"},
        allow_option_values=False,
    )
    assert argv == ["echo", "name=a; rm -rf /", "a; rm -rf /"]


def test_a_value_that_would_become_an_option_is_refused() -> None:
    with pytest.raises(ActionDenied):
        substitute(
            ["cat", "{component}"], {"component": "--output=/etc/x"}, allow_option_values=False
        )
    assert substitute(["cat", "{component}"], {"component": "-v"}, allow_option_values=True) == [
        "cat",
        "-v",
    ]


def test_a_substituted_value_is_not_substituted_again() -> None:
    out = substitute(
        ["{component}"], {"component": "{taskId}", "taskId": "T"}, allow_option_values=False
    )
    assert out == ["{taskId}"]


def test_retries_back_off_exponentially_within_the_cap() -> None:
    delays = [
        decide_retry(a, 5, "exit", base_s=1, cap_s=5, jitter=0.999).delay_s for a in (1, 2, 3, 4)
    ]
    assert delays[0] < delays[1] < delays[2]
    assert delays[3] <= 5
    assert decide_retry(1, 5, "exit", base_s=1, cap_s=5, jitter=0.0).delay_s == 0.5


def test_no_retry_past_the_budget_or_for_a_denial() -> None:
    assert not decide_retry(2, 1, "exit", base_s=1, cap_s=5, jitter=0.5).retry
    assert not decide_retry(1, 3, "denied", base_s=1, cap_s=5, jitter=0.5).retry


@pytest.mark.parametrize(
    ("task_type", "pattern"),
    [
        ("db-migration", "migration"),
        ("release", "deployment"),
        ("audit", "analysis"),
        ("feature-development", "development"),
        ("chores", "default"),
    ],
)
def test_task_types_pick_patterns_by_keyword(task_type: str, pattern: str) -> None:
    assert pattern_for(task_type) == pattern


def test_steps_times_components_link_steps_within_each_component(pools: PoolSet) -> None:
    spec = TaskSpec.model_validate(
        {
            "type": "x",
            "components": ["a", "b"],
            "steps": [
                {"name": "build", "action": {"kind": "shell", "argv": ["true"]}},
                {"name": "test", "after": ["build"], "action": {"kind": "shell", "argv": ["true"]}},
            ],
        }
    )
    graph = decompose(spec, pools).graph
    assert graph.nodes["test:a"].depends_on == ("build:a",)
    assert graph.levels() == [["build:a", "build:b"], ["test:a", "test:b"]]


def test_a_step_after_an_unknown_step_is_refused(pools: PoolSet) -> None:
    spec = TaskSpec.model_validate(
        {
            "type": "x",
            "steps": [
                {"name": "t", "after": ["nope"], "action": {"kind": "shell", "argv": ["true"]}}
            ],
        }
    )
    with pytest.raises(UnknownDependency, match="nope"):
        decompose(spec, pools)


def test_an_unknown_agent_is_refused_naming_the_field(pools: PoolSet) -> None:
    spec = TaskSpec.model_validate(
        {
            "type": "x",
            "steps": [
                {"name": "t", "agent": "wizard", "action": {"kind": "shell", "argv": ["true"]}}
            ],
        }
    )
    with pytest.raises(InvalidInput) as err:
        decompose(spec, pools)
    assert err.value.details["field"] == "task.steps.0.agent"


def test_agent_aliases_resolve_to_their_pool(pools: PoolSet) -> None:
    assert pools.resolve("devops-agent") == pools.resolve("devops-polyglot") == "devops"
    assert pools.resolve("code-intelligence") == "code"


def test_a_migration_without_an_executor_is_planned_with_what_to_add(pools: PoolSet) -> None:
    dec = decompose(TaskSpec.model_validate({"type": "migration", "components": ["a", "b"]}), pools)
    assert dec.message is not None and "executor" in dec.message
    assert dec.graph.levels() == [["migrate:a", "migrate:b"], ["validate"]]


def test_validation_errors_name_the_field_in_camel_case() -> None:
    with pytest.raises(ValidationError) as err:
        OrchestrateRequest.model_validate(
            {
                "task": {
                    "type": "x",
                    "steps": [
                        {"name": "s", "action": {"kind": "shell", "argv": []}, "timeoutSeconds": -1}
                    ],
                }
            }
        )
    fields = {e["field"] for e in format_validation_errors(err.value.errors())}
    assert "task.steps.0.action.shell.argv" in fields
    assert "task.steps.0.timeoutSeconds" in fields


def test_unknown_fields_and_action_kinds_are_refused() -> None:
    with pytest.raises(ValidationError):
        TaskSpec.model_validate({"type": "x", "stepz": []})
    with pytest.raises(ValidationError):
        TaskSpec.model_validate(
            {"type": "x", "steps": [{"name": "s", "action": {"kind": "bash", "argv": ["x"]}}]}
        )


def test_a_step_may_not_set_path_or_loader_variables() -> None:
    for key in ("PATH", "LD_PRELOAD", "PYTHONPATH"):
        with pytest.raises(ValidationError, match=key):
            TaskSpec.model_validate(
                {
                    "type": "x",
                    "steps": [
                        {
                            "name": "s",
                            "action": {"kind": "shell", "argv": ["true"], "env": {key: "x"}},
                        }
                    ],
                }
            )
