"""What a python action can see of the server's environment: only the child environment that
shell actions get, in its own variables and in what /proc shows of its worker and of the
processes multiprocessing starts for it."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from reynolds.adapters.actions import python_runner
from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.adapters.actions.tags import TAG_NAME, helper_tag
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
HELPERS = "tests.helpers.environ_callables"
TOKEN = "worker-env-token-7f3a91c2"
PASSWORD = "worker-env-password-0b6d"
KEPT_EXACT = {"PATH", "HOME", "LANG", "TMPDIR", "REYNOLDS_ACTION"}
KEPT_PREFIXES = ("LC_", "PYENV_")


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Secrets in this process's environment, and no forkserver started before them: the
    runner starts its own from this environment, as a server would."""
    monkeypatch.setenv("REYNOLDS_API_TOKEN", TOKEN)
    monkeypatch.setenv("REYNOLDS_DATABASE_URL", f"postgresql://app:{PASSWORD}@db/app")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TOKEN)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    python_runner._stop_forkserver()
    yield
    python_runner._stop_forkserver()


def call(function: str, **kwargs: Any) -> PythonAction:
    return PythonAction(kind="python", callable=function, kwargs=kwargs)


async def run(runner: PythonRunner, action: PythonAction) -> Any:
    ctx = ActionContext("task", "subtask", 1, 30.0, 1024 * 1024, str(ROOT))
    result = await runner.run(action, ctx, allowed=lambda _name: True)
    assert result.ok, result.error
    return json.loads(result.output)


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.usefixtures("secret_environment")
async def test_a_python_action_sees_only_the_child_environment(
    start_method: Literal["forkserver", "spawn"],
) -> None:
    runner = PythonRunner(1, start_method=start_method)
    try:
        expanded = await run(runner, call("os.path:expandvars", path="$REYNOLDS_API_TOKEN"))
        seen = await run(runner, call(f"{HELPERS}:environment"))
    finally:
        await runner.aclose()
    assert expanded == "$REYNOLDS_API_TOKEN"
    assert {
        name for name in seen if name not in KEPT_EXACT and not name.startswith(KEPT_PREFIXES)
    } == set()
    assert seen["PATH"]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.usefixtures("secret_environment")
async def test_no_process_started_for_python_actions_holds_a_secret_in_its_environ(
    start_method: Literal["forkserver", "spawn"],
) -> None:
    runner = PythonRunner(1, start_method=start_method)
    try:
        own = await run(runner, call(f"{HELPERS}:exec_environment"))
        parent = await run(runner, call(f"{HELPERS}:parent_pid"))
        # The worker's parent is the forkserver (with spawn, this test process: not ours).
        parents = [await run(runner, call(f"{HELPERS}:exec_environment", pid=parent))]
    finally:
        await runner.aclose()
    tracker = multiprocessing.resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    seen = [own, *(parents if start_method == "forkserver" else [])]
    if tracker is not None:
        seen.append(Path(f"/proc/{tracker}/environ").read_bytes().decode("utf-8", "replace"))
    for environ in seen:
        assert "PATH=" in environ
        assert TOKEN not in environ
        assert PASSWORD not in environ


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.usefixtures("secret_environment")
async def test_python_workers_and_their_helpers_carry_the_servers_tag(
    start_method: Literal["forkserver", "spawn"], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a python worker leaves behind after a crash is found at the next start by the
    server's tag (tags.py): the worker, and what multiprocessing starts for it, must carry it."""
    tag = helper_tag()
    monkeypatch.setenv(TAG_NAME, tag)
    runner = PythonRunner(1, start_method=start_method)
    try:
        seen = await run(runner, call(f"{HELPERS}:environment"))
        parent = await run(runner, call(f"{HELPERS}:parent_pid"))
        parents = [await run(runner, call(f"{HELPERS}:exec_environment", pid=parent))]
    finally:
        await runner.aclose()
    assert seen[TAG_NAME] == tag
    if start_method == "forkserver":
        assert f"{TAG_NAME}={tag}\0" in parents[0]
