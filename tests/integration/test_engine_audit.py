"""The engine's audit records on a real SQLite store: a long argv is masked off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reynolds.bootstrap import Container, build
from reynolds.core import redaction
from reynolds.core.models import TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home", personality="off"))
    try:
        yield container
    finally:
        await container.aclose()


async def action_records(app: Container, *argvs: list[str]) -> list[dict[str, object]]:
    steps = [
        {"name": f"s{i}", "action": {"kind": "shell", "argv": argv}} for i, argv in enumerate(argvs)
    ]
    spec = TaskSpec.model_validate({"type": "x", "steps": steps})
    run = await app.engine.submit(spec, None)
    assert await app.engine.wait(run, 30), "task did not finish in time"
    await app.store.flush()
    rows = await asyncio.to_thread(app.store.audit, run.id)
    return sorted((r for r in rows if r["kind"] == "action"), key=lambda r: str(r["subtask_id"]))


async def test_a_long_argv_is_masked_off_the_event_loop(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    masked_on: set[int] = set()
    mask = redaction.redact_element

    def spy(element: str) -> str:
        masked_on.add(threading.get_ident())
        return mask(element)

    monkeypatch.setattr(redaction, "redact_element", spy)
    (long,) = await action_records(app, ["true", "x" * 40_000, "p=1&token=2&" * 4_000])

    cut = "…[cut from 40000 bytes]"
    assert long["argv"][:2] == ["true", "x" * (4096 - len(cut.encode())) + cut]
    query = long["argv"][2]
    assert query.startswith("p=1&token=***&p=1&token=***&") and "=2" not in query
    assert query.endswith("…[cut from 48000 bytes]") and len(query.encode()) <= 4096
    assert masked_on and loop_thread not in masked_on


async def test_short_and_long_argvs_are_recorded_alike(app: Container) -> None:
    short, long = await action_records(app, ["echo", "token=1"], ["echo", "token=1", "x" * 9000])
    assert short["argv"] == ["echo", "token=***"]
    cut = "…[cut from 9000 bytes]"
    assert long["argv"] == ["echo", "token=***", "x" * (4096 - len(cut.encode())) + cut]
    assert (short["decision"], long["decision"]) == ("allowed", "allowed")
