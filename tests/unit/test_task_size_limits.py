"""A task's size is refused at validation when it would expand past what the engine holds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reynolds.core.models import MAX_SUBTASKS, TaskSpec


def steps_task(steps: int, components: int) -> dict[str, Any]:
    return {
        "type": "x",
        "components": [f"c{i}" for i in range(components)],
        "steps": [
            {"name": f"s{j}", "action": {"kind": "shell", "argv": ["true"]}} for j in range(steps)
        ],
    }


def test_steps_times_components_up_to_the_subtask_limit_are_accepted() -> None:
    spec = TaskSpec.model_validate(steps_task(10, MAX_SUBTASKS // 10))
    assert spec.steps is not None and len(spec.steps) * len(spec.components) == MAX_SUBTASKS


def test_steps_times_components_past_the_subtask_limit_are_refused_saying_why() -> None:
    # 100 steps and 10,000 components fit in well under a mebibyte of JSON.
    with pytest.raises(ValidationError) as raised:
        TaskSpec.model_validate(steps_task(100, MAX_SUBTASKS))
    assert f"would make {100 * MAX_SUBTASKS} subtasks; at most {MAX_SUBTASKS}" in str(raised.value)


def subtasks_task(count: int) -> dict[str, Any]:
    return {
        "type": "x",
        "subtasks": [
            {"id": f"t{i}", "action": {"kind": "shell", "argv": ["true"]}} for i in range(count)
        ],
    }


def test_the_limit_given_to_validation_applies_to_steps_and_to_explicit_subtasks() -> None:
    limit = {"max_subtasks": 50}
    TaskSpec.model_validate(steps_task(5, 10), context=limit)
    TaskSpec.model_validate(subtasks_task(50), context=limit)

    with pytest.raises(ValidationError) as steps:
        TaskSpec.model_validate(steps_task(5, 11), context=limit)
    with pytest.raises(ValidationError) as explicit:
        TaskSpec.model_validate(subtasks_task(51), context=limit)

    assert "would make 55 subtasks; at most 50 (REYNOLDS_MAX_SUBTASKS)" in str(steps.value)
    assert "51 subtasks; at most 50 (REYNOLDS_MAX_SUBTASKS)" in str(explicit.value)


def test_a_limit_above_the_default_lets_a_larger_task_through() -> None:
    TaskSpec.model_validate(subtasks_task(MAX_SUBTASKS + 1), context={"max_subtasks": 20_000})

    with pytest.raises(ValidationError):
        TaskSpec.model_validate(subtasks_task(MAX_SUBTASKS + 1))
