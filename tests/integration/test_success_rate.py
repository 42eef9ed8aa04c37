"""A pool's success rate is learned from its finished attempts, shown by get_agent_status and
kept for the next server on the same store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core.models import TaskSpec
from reynolds.services.tools import CallContext, call_tool
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def pools_of(app: Container) -> dict[str, dict[str, Any]]:
    status = await call_tool(app.engine, "get_agent_status", {}, CallContext())
    return {p["type"]: p for p in status["pools"]}


async def test_a_pools_success_rate_is_learned_and_kept_across_servers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    # Three attempts on devops, one of them failed; nothing on the other pools.
    task = {
        "type": "rates",
        "subtasks": [
            {"id": f"ok{i}", "agent": "devops", "action": {"kind": "shell", "argv": ["true"]}}
            for i in range(2)
        ]
        + [{"id": "bad", "agent": "devops", "action": {"kind": "shell", "argv": ["false"]}}],
    }
    app = await build(settings)
    try:
        before = await pools_of(app)
        run = await app.engine.submit(TaskSpec.model_validate(task))
        assert await app.engine.wait(run, 30)
        after = await pools_of(app)
    finally:
        await app.aclose()
    again = await build(settings)
    try:
        restarted = await pools_of(again)
    finally:
        await again.aclose()

    assert before["devops"]["successRate"] is None
    assert after["devops"]["successRate"] == pytest.approx(2 / 3, abs=1e-4)
    assert after["code"]["successRate"] is None
    assert restarted["devops"]["successRate"] == pytest.approx(2 / 3, abs=1e-4)
