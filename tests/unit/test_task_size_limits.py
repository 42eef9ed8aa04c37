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
