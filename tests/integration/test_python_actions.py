"""The python action runner against real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from tests.helpers.polling import eventually, wait_until
from tests.helpers.processes import descendants, is_running

from reynolds.adapters.actions.python_runner import PythonRunner, is_declared
from reynolds.adapters.actions.shell import process_identity
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
HELPERS = "tests.helpers.callables"


def action(function: str, **kwargs: Any) -> PythonAction:
    return PythonAction(kind="python", callable=f"{HELPERS}:{function}", kwargs=kwargs)


class Spawns:
    """Records the (pid, start ticks) each run reports through `on_spawn`."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None]] = []

    def __call__(self, pid: int, start_ticks: int | None) -> None:
        self.seen.append((pid, start_ticks))

    @property
    def last_pid(self) -> int:
        return self.seen[-1][0]


def context(
    timeout_s: float = 30.0, cap_bytes: int = 64 * 1024, spawns: Spawns | None = None
) -> ActionContext:
    return ActionContext("task", "subtask", 1, timeout_s, cap_bytes, str(ROOT), on_spawn=spawns)


@pytest.fixture
async def runner() -> AsyncIterator[PythonRunner]:
    runner = PythonRunner(workers=2, allowed_callables=lambda name: name.startswith(HELPERS))
    yield runner
    await runner.aclose()


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
async def test_a_declared_callable_returns_its_value_as_json(
    start_method: Literal["forkserver", "spawn"],
) -> None:
    runner = PythonRunner(1, {f"{HELPERS}:add"}, start_method=start_method)
    try:
        result = await runner.run(action("add", a=2, b=3), context())
    finally:
        await runner.aclose()
    assert result.ok
    assert result.exit_code == 0
    assert json.loads(result.output) == {"sum": 5}
    assert result.reason is None


async def test_a_coroutine_function_is_run_to_completion(runner: PythonRunner) -> None:
    result = await runner.run(action("add_later", a=4, b=5), context())
    assert result.ok
    assert result.output == "9"


async def test_a_value_without_a_json_form_is_shown_by_its_repr(runner: PythonRunner) -> None:
    result = await runner.run(action("not_json"), context())
    assert result.ok
    assert result.output == "{1, 2, 3}"


async def test_printed_text_is_captured_with_stdout_before_the_value(
    runner: PythonRunner,
) -> None:
    result = await runner.run(action("chatty", text="hello"), context())
    assert result.ok
    assert result.output == 'hello\n"done"'
    assert result.error == "to stderr\n"


async def test_an_exception_fails_the_action_with_its_traceback(runner: PythonRunner) -> None:
    result = await runner.run(action("fail", message="boom"), context())
    assert not result.ok
    assert result.exit_code == 1
    assert result.reason == "error"
    assert "Traceback (most recent call last)" in result.error
    assert result.error.rstrip().endswith("ValueError: boom")


async def test_a_module_that_does_not_exist_fails_with_the_import_error(
    runner: PythonRunner,
) -> None:
    missing = PythonAction(kind="python", callable=f"{HELPERS}_missing:run")
    result = await runner.run(missing, context(), allowed=[missing.callable])
    assert not result.ok
    assert "ModuleNotFoundError" in result.error


async def test_an_undeclared_callable_is_denied_without_being_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"side_effect_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def run():\n    return 'ran'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spawns = Spawns()
    runner = PythonRunner(1, allowed_callables={f"{HELPERS}:pid"})
    try:
        denied = await runner.run(
            PythonAction(kind="python", callable=f"{module}:run"), context(spawns=spawns)
        )
        assert not denied.ok
        assert denied.reason == "denied"
        assert "not declared for this pool" in denied.error
        assert not marker.exists()
        assert spawns.seen == []
        assert module not in sys.modules

        # The same module, once declared, is importable: the denial above was not luck.
        allowed = await runner.run(
            PythonAction(kind="python", callable=f"{module}:run"),
            context(),
            allowed={f"{module}:run"},
        )
        assert allowed.output == '"ran"'
        assert marker.read_text() == "imported"
    finally:
        await runner.aclose()


@pytest.mark.parametrize("name", ["os:system", "subprocess:run", "builtins:exec"])
async def test_dangerous_callables_are_denied_unless_declared(name: str) -> None:
    runner = PythonRunner(1)
    try:
        call = PythonAction(kind="python", callable=name, kwargs={"args": ["true"]})
        assert (await runner.run(call, context())).reason == "denied"
        assert (await runner.run(call, context(), allowed={"os:getpid"})).reason == "denied"
    finally:
        await runner.aclose()


def test_declarations_match_whole_names_or_a_whole_module() -> None:
    assert is_declared("pkg.tasks:migrate", ["pkg.tasks:migrate"])
    assert is_declared("pkg.tasks:migrate", ["pkg.tasks:*"])
    assert not is_declared("pkg.tasks:migrate", ["pkg:*", "pkg.tasks:migrat"])
    assert not is_declared("pkg.tasks.more:migrate", ["pkg.tasks:*"])
    assert not is_declared("pkg.tasks:migrate", None)
    assert is_declared("pkg.tasks:migrate", "pkg.tasks:migrate")
    assert not is_declared("s:m", "pkg.tasks:migrate")
    assert is_declared("pkg.tasks:migrate", lambda name: name.startswith("pkg."))


async def test_the_declaration_given_to_run_replaces_the_runners(runner: PythonRunner) -> None:
    pid_call = action("pid")
    assert (await runner.run(pid_call, context())).ok
    assert (await runner.run(pid_call, context(), allowed=[])).reason == "denied"


async def test_a_worker_is_reused_and_reported_with_its_start_time(runner: PythonRunner) -> None:
    spawns = Spawns()
    first = await runner.run(action("pid"), context(spawns=spawns))
    second = await runner.run(action("pid"), context(spawns=spawns))
    assert first.output == second.output == str(spawns.last_pid)
    assert spawns.seen[0] == spawns.seen[1]
    assert spawns.seen[0][1] is not None


async def test_concurrent_calls_run_in_separate_workers(runner: PythonRunner) -> None:
    await runner.start()
    results = await asyncio.gather(*(runner.run(action("pid"), context()) for _ in range(2)))
    assert len({result.output for result in results}) == 2


async def test_a_timeout_kills_the_worker_and_the_next_call_gets_a_new_one(
    runner: PythonRunner, tmp_path: Path
) -> None:
    spawns = Spawns()
    slow = action("announce_and_sleep", path=str(tmp_path / "pid"), seconds=600)
    result = await runner.run(slow, context(timeout_s=0.5, spawns=spawns))
    assert not result.ok
    assert result.reason == "timeout"
    killed = spawns.last_pid
    assert await eventually(lambda: not is_running(killed))

    after = await runner.run(action("add", a=1, b=1), context(spawns=spawns))
    assert after.ok
    assert spawns.last_pid != killed


async def test_a_timeout_also_kills_processes_the_callable_started(
    runner: PythonRunner, tmp_path: Path
) -> None:
    child_pid_file = tmp_path / "child"
    slow = action("start_child_and_sleep", path=str(child_pid_file), seconds=600)
    result = await runner.run(slow, context(timeout_s=1.0))
    assert result.reason == "timeout"
    child = int(child_pid_file.read_text())
    assert await eventually(lambda: not is_running(child))


async def test_cancelling_the_call_kills_the_worker(runner: PythonRunner, tmp_path: Path) -> None:
    started = tmp_path / "pid"
    call = asyncio.create_task(
        runner.run(action("announce_and_sleep", path=str(started), seconds=600), context())
    )
    assert await eventually(started.exists)
    worker = int(started.read_text())
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await eventually(lambda: not is_running(worker))
    assert (await runner.run(action("add_later", a=2, b=2), context())).output == "4"


async def test_a_worker_that_dies_is_reported_and_replaced(runner: PythonRunner) -> None:
    spawns = Spawns()
    result = await runner.run(action("exit_worker", code=3), context(spawns=spawns))
    assert not result.ok
    assert result.reason == "worker_died"
    assert "exit code 3" in result.error
    died = spawns.last_pid

    after = await runner.run(action("pid"), context(spawns=spawns))
    assert after.ok
    assert int(after.output) == spawns.last_pid != died


@pytest.mark.parametrize("loop_runs_first", [True, False])
async def test_a_worker_killed_while_idle_is_replaced(
    runner: PythonRunner, loop_runs_first: bool
) -> None:
    spawns = Spawns()
    await runner.run(action("pid"), context(spawns=spawns))
    idle = spawns.last_pid
    os.kill(idle, signal.SIGKILL)

    # Reaped, not merely a zombie: by then every thread has let go of the pipe. Waiting
    # without yielding leaves the runner unaware of the death until it sends the next call.
    def reaped() -> bool:
        return not Path(f"/proc/{idle}").exists()

    assert await eventually(reaped) if loop_runs_first else wait_until(reaped)
    after = await runner.run(action("pid"), context(spawns=spawns))
    assert after.ok
    assert int(after.output) != idle


async def test_output_beyond_the_cap_is_cut_and_marked(runner: PythonRunner) -> None:
    result = await runner.run(action("big", size=10_000), context(cap_bytes=1000))
    assert result.ok
    assert result.truncated
    assert result.output_bytes == 10_002
    kept, _, note = result.output.partition("\n[truncated")
    assert len(kept.encode()) == 1000
    assert "1000 of 10002 bytes" in note


async def test_aclose_stops_every_worker() -> None:
    spawns = Spawns()
    runner = PythonRunner(2, allowed_callables={f"{HELPERS}:pid"})
    await asyncio.gather(*(runner.run(action("pid"), context(spawns=spawns)) for _ in range(2)))
    await runner.aclose()
    pids = {pid for pid, _ in spawns.seen}
    assert len(pids) == 2
    assert await eventually(lambda: not any(is_running(pid) for pid in pids))
    assert not [pid for pid in descendants(os.getpid()) if b"forkserver" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("mode", ["busy", "idle"])
def test_workers_exit_when_the_owning_process_is_killed(mode: str, tmp_path: Path) -> None:
    marker = tmp_path / "worker-pid"
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.runner_owner", mode, str(marker)], cwd=ROOT
    )
    left: set[int] = set()
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text().isdigit(), 30)
        worker = int(marker.read_text())
        left = descendants(owner.pid)
        assert worker in left

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


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
async def test_a_timeout_kills_what_the_callable_started_outside_the_workers_group(
    runner: PythonRunner, tmp_path: Path, how: str
) -> None:
    pidfile = tmp_path / "escaped"
    slow = action("escape_and_sleep", path=str(pidfile), how=how, seconds=60)
    result = await runner.run(slow, context(timeout_s=2.0))
    assert result.reason == "timeout"
    escaped = int(pidfile.read_text())
    identity = process_identity(escaped)
    try:
        assert await eventually(lambda: not is_running(escaped), 5)
    finally:
        if identity is not None and process_identity(escaped) == identity:
            os.kill(escaped, signal.SIGKILL)


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
async def test_what_a_call_detached_ends_with_the_call(
    runner: PythonRunner, tmp_path: Path, how: str
) -> None:
    pidfile = tmp_path / "escaped"
    call = action("escape_and_return", path=str(pidfile), how=how, seconds=60)
    result = await runner.run(call, context())
    assert result.ok, result.error
    escaped = int(pidfile.read_text())
    identity = process_identity(escaped)
    try:
        # Killed and reaped before the reply: gone, not even a zombie.
        assert identity is None
        # The worker lives on for the next call.
        assert (await runner.run(action("add", a=1, b=2), context())).output == '{"sum": 3}'
    finally:
        if identity is not None and process_identity(escaped) == identity:
            os.kill(escaped, signal.SIGKILL)
