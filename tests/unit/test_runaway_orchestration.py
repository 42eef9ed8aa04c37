"""Runaway orchestration on the scheduler: tasks submitted by tasks' actions, refused when
nested too deep or when one subtask keeps starting more, unless forced."""

from __future__ import annotations

import pytest
from tests.helpers.scheduler import scheduler, shell_step

from reynolds.core.models import TaskSpec
from reynolds.services.lineage import Parent
from reynolds.services.resubmissions import Refused

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spec(name: str) -> TaskSpec:
    return TaskSpec.model_validate({"type": name, "subtasks": [shell_step("s")]})


async def test_the_fifth_generation_of_tasks_started_by_tasks_is_refused() -> None:
    async with scheduler() as s:
        parent = await s.engine.submit(spec("root"))
        for depth in range(1, 5):
            child = await s.engine.submit(spec(f"d{depth}"), parent=Parent(parent.id, "s"))
            assert child.depth == depth and child.parent_id == parent.id
            parent = child
        with pytest.raises(Refused) as refused:
            await s.engine.submit(spec("d5"), parent=Parent(parent.id, "s"))
        verdict = refused.value.verdict
        assert verdict.detector == "runaway_depth"
        assert verdict.evidence["depth"] == 5 and verdict.confidence >= 0.999
        assert verdict.evidence["parentTaskId"] == parent.id
        # Forced, it runs, one generation deeper.
        forced = await s.engine.submit(spec("d5"), parent=Parent(parent.id, "s"), force=True)
        assert forced.depth == 5
        stored = s.store.get_task(forced.id)
        assert stored is not None and (stored["parent_id"], stored["depth"]) == (parent.id, 5)
    assert s.metrics.loops == ["runaway_depth"]


async def test_one_subtask_starting_task_after_task_is_stopped_at_the_tenth() -> None:
    async with scheduler() as s:
        root = await s.engine.submit(spec("root"))
        for _ in range(9):
            await s.engine.submit(spec("child"), parent=Parent(root.id, "s"))
        # Another subtask of the same task starts its own children freely.
        await s.engine.submit(spec("child"), parent=Parent(root.id, "other"))
        with pytest.raises(Refused) as refused:
            await s.engine.submit(spec("child"), parent=Parent(root.id, "s"))
    assert refused.value.verdict.detector == "runaway_fanout"
    assert refused.value.verdict.evidence["children"] == 10
    assert refused.value.verdict.evidence["parentSubtaskId"] == "s"


async def test_a_parent_this_server_does_not_know_counts_as_submitted_by_hand() -> None:
    async with scheduler() as s:
        child = await s.engine.submit(spec("child"), parent=Parent("elsewhere", None))
    assert child.depth == 1 and child.parent_id == "elsewhere"
