"""reynoldsComment says what actually happened: the speed-up achieved, a loop stopped, a budget
or deadline hit; plainly when the personality is off."""

from __future__ import annotations

import pytest

from reynolds.core.personality import task_comment


@pytest.mark.parametrize("on", [True, False])
def test_each_outcome_is_named(on: bool) -> None:
    fast = task_comment("succeeded", {"speedup": 4.25}, 17, on)
    assert "4.2x" in fast or "4.3x" in fast
    looped = task_comment("loop_blocked", {"subtaskCounts": {"loop_blocked": 2}}, 5, on)
    assert "2 subtask(s)" in looped
    assert "budget" in task_comment("failed", {}, 5, on, "budget_exceeded")
    assert "deadline" in task_comment("failed", {}, 5, on, "deadline_exceeded")


def test_the_voice_is_on_or_off() -> None:
    assert task_comment("loop_blocked", {}, 1, True) != task_comment("loop_blocked", {}, 1, False)
    assert "Loop prevention" in task_comment("loop_blocked", {}, 1, False)
