"""Servers on different homes sharing one database (SQLite and PostgreSQL): each resumes only
the tasks no live server owns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.helpers.polling import wait_for_async

from reynolds.bootstrap import build
from reynolds.core.models import TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
# Sleeps a minute the first time, returns at once when run again.
ONCE_SLOW = (
    "import os, sys, time\n"
    "again = os.path.exists(sys.argv[1])\n"
    "open(sys.argv[1], 'a').close()\n"
    "time.sleep(0 if again else 60)\n"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_server_resumes_the_tasks_of_a_stopped_server_and_not_of_a_live_one(
    tmp_path: Path, store_url: str
) -> None:
    def settings(name: str) -> Settings:
        return Settings(home=tmp_path / name, database_url=store_url)

    marker = tmp_path / "started"
    spec = TaskSpec.model_validate(
        {
            "type": "shared",
            "subtasks": [
                {"id": "s", "action": {"kind": "shell", "argv": [PY, "-c", ONCE_SLOW, str(marker)]}}
            ],
        }
    )
    first = await build(settings("first"))
    try:
        run = await first.engine.submit(spec, None)
        await wait_for_async(marker.exists, 20, "the subtask did not start")
        beside = await build(settings("beside"))
        await beside.aclose()
    finally:
        await first.aclose()
    assert beside.resumed == []

    taker = await build(settings("taker"))
    try:
        assert taker.resumed == [run.id]
        resumed = taker.engine.find(run.id)
        assert resumed is not None
        assert await taker.engine.wait(resumed, 20), "the resumed task did not finish"
        assert (await taker.engine.result(run.id))["status"] == "succeeded"
    finally:
        await taker.aclose()
