"""Starting a server over a store that an earlier version filled: a start that fails leaves
nothing running."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reynolds.bootstrap import build
from reynolds.services.engine import Engine
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio


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
