"""Runners with an action user (REYNOLDS_ACTION_USER), on real processes: what actions run as,
and that a worker that switched users still dies with its server. Needs root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.polling import wait_until
from tests.helpers.processes import descendants, is_running

from reynolds.adapters.actions.identity import ActionUser, resolve_action_user
from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.adapters.actions.shell import ShellRunner
from reynolds.core.models import PythonAction, ShellAction
from reynolds.services.ports import ActionContext

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
# A stand-in server: one worker as nobody, its pid written to the marker, then idle forever.
OWNER = """
import asyncio, sys
from pathlib import Path
from reynolds.adapters.actions.identity import resolve_action_user
from reynolds.adapters.actions.python_runner import PythonRunner
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext

async def main():
    runner = PythonRunner(1, {"os:getpid"}, action_user=resolve_action_user("nobody"))
    ctx = ActionContext("owner", "owner", 1, 60.0, 4096, ".")
    result = await runner.run(PythonAction(kind="python", callable="os:getpid"), ctx)
    Path(sys.argv[1]).write_text(result.output)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def nobody() -> Iterator[ActionUser]:
    if os.geteuid() != 0:
        pytest.skip("running actions as another user needs root (or CAP_SETUID and CAP_SETGID)")
    yield resolve_action_user("nobody")


def context() -> ActionContext:
    return ActionContext("task", "subtask", 1, 30.0, 64 * 1024, str(ROOT))


async def test_a_shell_action_runs_as_the_action_user_with_its_home(nobody: ActionUser) -> None:
    runner = ShellRunner(action_user=nobody)
    # `id` rather than python: the interpreter may live where nobody may not enter.
    uid = await runner.run(ShellAction(kind="shell", argv=["id", "-u"]), context())
    groups = await runner.run(ShellAction(kind="shell", argv=["id", "-G"]), context())
    home = await runner.run(ShellAction(kind="shell", argv=["printenv", "HOME"]), context())

    assert uid.ok and groups.ok and home.ok, (uid.error, groups.error, home.error)
    assert uid.output == f"{nobody.uid}\n"
    assert groups.output == f"{nobody.gid}\n"
    assert home.output == f"{nobody.home}\n"


async def test_a_python_worker_becomes_the_action_user_without_other_groups(
    nobody: ActionUser,
) -> None:
    runner = PythonRunner(1, action_user=nobody)
    allowed = {"os:getuid", "os:geteuid", "os:getgid", "os:getgroups", "os.path:expanduser"}
    try:
        seen = []
        for name, kwargs in [
            ("os:getuid", {}),
            ("os:geteuid", {}),
            ("os:getgid", {}),
            ("os:getgroups", {}),
            ("os.path:expanduser", {"path": "~"}),
        ]:
            action = PythonAction(kind="python", callable=name, kwargs=kwargs)
            result = await runner.run(action, context(), allowed=allowed)
            assert result.ok, result.error
            seen.append(json.loads(result.output))
    finally:
        await runner.aclose()
    assert seen == [nobody.uid, nobody.uid, nobody.gid, [], nobody.home]


def test_a_worker_that_became_the_action_user_dies_with_its_server(
    nobody: ActionUser, tmp_path: Path
) -> None:
    marker = tmp_path / "worker-pid"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(marker)], cwd=ROOT)
    left: set[int] = set()
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text().isdigit(), 30)
        worker = int(marker.read_text())
        left = descendants(owner.pid)
        assert worker in left
        assert Path(f"/proc/{worker}").stat().st_uid == nobody.uid

        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)

        assert wait_until(lambda: not any(is_running(pid) for pid in left), 10), [
            pid for pid in left if is_running(pid)
        ]
    finally:
        owner.kill()
        owner.wait(timeout=10)
        for pid in left:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
