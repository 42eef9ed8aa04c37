"""REYNOLDS_MAX_SUBTASKS is read: a server refuses a task that would expand past it, naming
the setting, and takes one at the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.errors import InvalidInput
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Container]:
    monkeypatch.setenv("REYNOLDS_MAX_SUBTASKS", "6")
    container = await build(Settings(home=tmp_path / "home"))
    try:
        yield container
    finally:
        await container.aclose()


def task(components: int) -> dict[str, Any]:
    return {
        "wait": True,
        "task": {
            "type": "x",
            "components": [f"c{i}" for i in range(components)],
            "steps": [
                {"name": "a", "action": {"kind": "shell", "argv": ["true"]}},
                {"name": "b", "action": {"kind": "shell", "argv": ["true"]}},
            ],
        },
    }


async def test_a_task_past_the_configured_limit_is_refused_naming_the_setting(
    app: Container,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await call_tool(app.engine, "orchestrate_task", task(4), CallContext())

    (error,) = refused.value.details["errors"]
    assert error["field"] == "arguments.task"
    assert "would make 8 subtasks; at most 6 (REYNOLDS_MAX_SUBTASKS)" in error["reason"]
    assert await app.engine.list_tasks(None, 10) == []


async def test_a_task_at_the_configured_limit_runs(app: Container) -> None:
    result = await call_tool(app.engine, "orchestrate_task", task(3), CallContext())

    assert result["status"] == "succeeded"
    assert len(result["subtasks"]) == 6
