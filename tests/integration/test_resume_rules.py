"""Starting a server over a store that an earlier version filled (SQLite and PostgreSQL): a
stored task that today's stricter input rules refuse fails, saying why, and the rest resume; a
start that fails leaves nothing running."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from reynolds.adapters.store.sql import SqlStore
from reynolds.bootstrap import build
from reynolds.services.engine import Engine
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
STRATEGY = {"approach": "direct", "maxConcurrency": 1, "selection": "least_busy"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def store_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("reynolds-store"))


async def test_a_server_that_fails_to_start_leaves_no_store_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: Engine) -> list[str]:
        raise RuntimeError("resuming failed")

    monkeypatch.setattr(Engine, "resume", fail)
    before = store_threads()
    with pytest.raises(RuntimeError, match="resuming failed"):
        await build(Settings(home=tmp_path / "home"))
    assert store_threads() == before


def stored(task_id: str, action: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task and its one subtask as an earlier server left them: running."""
    task = {
        "id": task_id,
        "type": "upgrade",
        "description": "",
        "priority": "medium",
        "status": "running",
        "spec": {"type": "upgrade", "subtasks": [{"id": "s", "action": action}]},
        "strategy": STRATEGY,
        "created_at": 1000.0,
        "started_at": 1000.0,
    }
    subtask = {
        "task_id": task_id,
        "id": "s",
        "seq": 0,
        "depends_on": [],
        "spec": {"action": action, "description": "", "retries": 0, "idempotent": True},
        "status": "running",
        "attempts": 1,
        "started_at": 1000.0,
    }
    return task, subtask


async def test_a_stored_task_todays_rules_refuse_fails_and_the_others_resume(
    tmp_path: Path, store_url: str
) -> None:
    store = SqlStore(store_url)
    store.start()
    try:
        for task, subtask in (
            stored("refused", {"kind": "shell", "argv": ["true"], "env": {"BASH_ENV": "/x"}}),
            stored("fine", {"kind": "shell", "argv": ["true"]}),
        ):
            store.put_task(task)
            store.put_subtask(subtask)
        store.flush_sync()
    finally:
        store.close()

    container = await build(Settings(home=tmp_path / "home", database_url=store_url))
    try:
        assert container.resumed == ["fine"]
        resumed = container.engine.find("fine")
        assert resumed is not None
        await asyncio.wait_for(resumed.done.wait(), 20)
        assert (await container.engine.result("fine"))["status"] == "succeeded"

        refused = await container.engine.result("refused")
        assert refused["status"] == "failed"
        assert "BASH_ENV may not be set by a step" in refused["message"]
        (sub,) = refused["subtasks"]
        assert (sub["status"], sub["reason"]) == ("failed", "invalid")
        assert refused["finishedAt"] is not None
    finally:
        await container.aclose()
