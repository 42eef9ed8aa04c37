"""Processes that leave an action's process group (setsid, a double-fork daemon) still end
with the action: at its timeout, at its cancellation, and soon after its main process exits.

Each test marks its action's processes with an environment entry of its own and looks for
that entry in /proc, so a process counts wherever it escaped to.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.polling import eventually, wait_until
from tests.helpers.processes import DAEMON, carrying, is_running, kill_carrying

from reynolds.adapters.actions.shell import ShellRunner
from reynolds.bootstrap import Container, build
from reynolds.core.models import ShellAction, Strategy, TaskSpec
from reynolds.services.ports import ActionContext
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]

# `setsid` leaves the action's session and group; the issue's own reproduction.
SETSID_THEN_EXIT = 'setsid sleep 41.5 & echo $! > "$1"; sleep 0.5; echo started'
# The main process ends at once, the escapee holding its output.
SETSID_AT_ONCE = 'setsid sleep 41.5 & echo $! > "$1"; echo started'
SETSID_THEN_HANG = 'setsid sleep 41.5 & echo $! > "$1"; echo started; sleep 41.5'
SETSID_AND_DAEMON = 'setsid sleep 41.5 & echo $! > "$1"; "$2" -c "$3" "$4" 41.5 & sleep 41.5'
# Well under the escaped processes' 41.5 s, well over the actions' timeouts.
PROMPT_S = 20.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def mark() -> Iterator[str]:
    """An environment entry that only this test's action processes carry."""
    entry = f"REYNOLDS_TEST_MARK={uuid.uuid4().hex}"
    yield entry
    kill_carrying(entry)


def shell_action(mark: str, argv: list[str], cwd: str | None) -> ShellAction:
    name, _, value = mark.partition("=")
    return ShellAction(kind="shell", argv=argv, env={name: value}, cwd=cwd)


def context(timeout_s: float) -> ActionContext:
    return ActionContext("t", "s", 1, timeout_s, 65536, str(ROOT))


# None runs in the workspace root (posix_spawn); "tests" changes directory (subprocess_exec).
SPAWN_PATHS = pytest.mark.parametrize("cwd", [None, "tests"], ids=["posix_spawn", "chdir"])


@SPAWN_PATHS
@pytest.mark.parametrize("script", [SETSID_THEN_EXIT, SETSID_AT_ONCE], ids=["later", "at_once"])
async def test_an_escaped_process_holding_the_output_dies_when_the_action_ends(
    mark: str, tmp_path: Path, cwd: str | None, script: str
) -> None:
    pidfile = tmp_path / "escaped.pid"
    action = shell_action(mark, ["sh", "-c", script, "sh", str(pidfile)], cwd)
    started = time.monotonic()
    result = await asyncio.wait_for(ShellRunner().run(action, context(3)), PROMPT_S)
    assert time.monotonic() - started < PROMPT_S
    # The main process's own outcome: the escaped process is killed, not waited for.
    assert (result.ok, result.reason, result.output.strip()) == (True, None, "started")
    assert not is_running(int(pidfile.read_text()))
    assert not carrying(mark)


@SPAWN_PATHS
async def test_a_timeout_ends_the_action_on_time_and_kills_what_escaped(
    mark: str, tmp_path: Path, cwd: str | None
) -> None:
    pidfile = tmp_path / "escaped.pid"
    action = shell_action(mark, ["sh", "-c", SETSID_THEN_HANG, "sh", str(pidfile)], cwd)
    started = time.monotonic()
    result = await asyncio.wait_for(ShellRunner().run(action, context(3)), PROMPT_S)
    assert time.monotonic() - started < PROMPT_S
    assert (result.ok, result.reason) == (False, "timeout")
    assert "timed out after 3 s" in result.error
    assert result.output.strip() == "started"
    assert not is_running(int(pidfile.read_text()))
    assert not carrying(mark)


@SPAWN_PATHS
async def test_a_double_fork_daemon_is_killed_at_the_timeout(
    mark: str, tmp_path: Path, cwd: str | None
) -> None:
    pidfile = tmp_path / "daemon.pid"
    action = shell_action(mark, [PY, "-c", DAEMON, str(pidfile), "41.5"], cwd)
    result = await asyncio.wait_for(ShellRunner().run(action, context(3)), PROMPT_S)
    assert (result.reason, result.output.strip()) == ("timeout", "daemonized")
    assert not is_running(int(pidfile.read_text()))
    assert not carrying(mark)


@SPAWN_PATHS
async def test_a_double_fork_daemon_dies_soon_after_its_action_ends(
    mark: str, tmp_path: Path, cwd: str | None
) -> None:
    pidfile = tmp_path / "daemon.pid"
    action = shell_action(mark, [PY, "-c", DAEMON, str(pidfile), "0"], cwd)
    runner = ShellRunner()
    try:
        result = await runner.run(action, context(30))
        assert (result.ok, result.output.strip()) == (True, "daemonized")
        daemon = int(pidfile.read_text())
        # It holds none of the action's pipes, so nothing waits for it; a sweep finds it.
        assert await eventually(lambda: not is_running(daemon), 10)
        assert not carrying(mark)
    finally:
        await runner.aclose()


# -- through the engine ------------------------------------------------------------------


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    container = await build(Settings(home=tmp_path / "home"))
    try:
        yield container
    finally:
        await container.aclose()


def step(mark: str, argv: list[str], **extra: Any) -> dict[str, Any]:
    name, _, value = mark.partition("=")
    return {
        "name": "escape",
        "action": {"kind": "shell", "argv": argv, "env": {name: value}},
        **extra,
    }


async def test_a_timed_out_escape_frees_its_replica_and_leaves_no_process(
    app: Container, mark: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    argv = ["sh", "-c", SETSID_THEN_HANG, "sh", str(pidfile)]
    spec = TaskSpec.model_validate(
        {"type": "x", "steps": [step(mark, argv, timeoutSeconds=3, agent="code")]}
    )
    started = time.monotonic()
    run = await app.engine.submit(spec, Strategy())
    assert await app.engine.wait(run, PROMPT_S), "the task outlived its subtask's timeout"
    assert time.monotonic() - started < PROMPT_S
    sub = (await app.engine.result(run.id))["subtasks"][0]
    assert (sub["status"], sub["reason"]) == ("failed", "timeout")
    assert app.engine.free["code"] == app.engine.replicas["code"]
    assert not is_running(int(pidfile.read_text()))
    assert not carrying(mark)


async def test_cancel_kills_every_process_of_an_action_that_escaped(
    app: Container, mark: str, tmp_path: Path
) -> None:
    pidfile, daemon = tmp_path / "escaped.pid", tmp_path / "daemon.pid"
    argv = ["sh", "-c", SETSID_AND_DAEMON, "sh", str(pidfile), PY, DAEMON, str(daemon)]
    spec = TaskSpec.model_validate({"type": "x", "steps": [step(mark, argv)]})
    run = await app.engine.submit(spec, Strategy())
    assert await eventually(lambda: _pid_in(pidfile) and daemon.exists(), PROMPT_S)
    escaped = [int(pidfile.read_text()), int(daemon.read_text())]
    result = await app.engine.cancel(run.id)
    assert result["status"] == "cancelled"
    assert not [pid for pid in escaped if is_running(pid)]
    assert not carrying(mark)


def _pid_in(path: Path) -> bool:
    return path.exists() and path.read_text().strip().isdigit()


# -- `reynolds stop` ---------------------------------------------------------------------

# A server that ignores SIGTERM, running one action that leaves its group ($1: the pid file,
# $2: the mark).
STUBBORN_SERVER = (
    "import asyncio, os, signal, sys\n"
    "from reynolds.adapters.actions.shell import ShellRunner\n"
    "from reynolds.core.models import ShellAction\n"
    "from reynolds.services.ports import ActionContext\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "name, _, value = sys.argv[2].partition('=')\n"
    "argv = ['sh', '-c', 'setsid sleep 41.5 & sleep 41.5']\n"
    "action = ShellAction(kind='shell', argv=argv, env={name: value})\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "context = ActionContext('t', 's', 1, 60, 4096, os.getcwd())\n"
    "asyncio.run(ShellRunner().run(action, context))\n"
)


def test_stop_that_has_to_kill_the_server_kills_what_its_actions_left(
    mark: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from reynolds.entrypoints.cli import app as cli
    from reynolds.entrypoints.cli import lifecycle

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("REYNOLDS_HOME", str(home))
    monkeypatch.setattr(lifecycle, "STOP_TIMEOUT_S", 0.5)
    server = subprocess.Popen(
        [PY, "-c", STUBBORN_SERVER, str(home / "reynolds.pid"), mark],
        cwd=ROOT,
        start_new_session=True,
    )
    # Reaped as soon as it dies, as init would reap a daemon.
    reaper = threading.Thread(target=server.wait, daemon=True)
    reaper.start()
    try:
        assert wait_until(lambda: _pid_in(home / "reynolds.pid") and len(carrying(mark)) == 3)
        result = CliRunner().invoke(cli, ["stop"])
        assert result.exit_code == 0, result.output
        assert "killing it" in result.output
        assert not carrying(mark)
    finally:
        server.kill()
        reaper.join(10)
