"""What a log line is about: an attempt's own ids while it runs, and none of them on the work
its end sets going (the next subtasks start from the pump, which is about no attempt)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.scheduler import scheduler, shell_step

from reynolds.services.dispatch import Dispatcher
from reynolds.services.log_context import LOG_CONTEXT

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_attempt_runs_under_its_own_ids_and_starts_the_next_under_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at_start: dict[str, dict[str, str]] = {}
    while_running: dict[str, dict[str, str]] = {}
    start = Dispatcher._start

    def recording_start(self: Dispatcher, run: Any, sub: Any, pool: str) -> None:
        at_start[sub.node.id] = dict(LOG_CONTEXT.get())
        start(self, run, sub, pool)

    monkeypatch.setattr(Dispatcher, "_start", recording_start)
    async with scheduler() as s:
        run_action = s.shell.run

        async def recording_run(action: Any, ctx: Any, **kwargs: Any) -> Any:
            while_running[ctx.subtask_id] = dict(LOG_CONTEXT.get())
            return await run_action(action, ctx, **kwargs)

        monkeypatch.setattr(s.shell, "run", recording_run)
        result = await s.run({"type": "t", "subtasks": [shell_step("a"), shell_step("b", "a")]})

    assert result["status"] == "succeeded"
    assert while_running["a"]["subtaskId"] == "a" and while_running["b"]["subtaskId"] == "b"
    assert while_running["b"]["taskId"] == result["taskId"]
    # b was started by the pump a's end ran: a's ids must not be on what b's start logs.
    assert at_start["b"] == {}
