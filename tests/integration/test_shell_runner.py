"""The shell runner: resource limits applied after spawn (no preexec_fn), cwd, output cap."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reynolds.adapters.actions.shell import ShellRunner
from reynolds.core.models import ShellAction
from reynolds.core.pools import Limits, ResourceLimits, parse_bytes, resource_limits
from reynolds.services.ports import ActionContext

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ctx() -> ActionContext:
    return ActionContext("t", "s", 1, timeout_s=30, output_cap_bytes=65536, workspace=os.getcwd())


async def run(code: str, limits: ResourceLimits) -> tuple[int | None, str]:
    action = ShellAction(kind="shell", argv=[sys.executable, "-c", code])
    result = await ShellRunner().run(action, ctx(), limits=limits)
    return result.exit_code, result.output + result.error


def until_limited(which: str, expected: str) -> str:
    """Child code that waits (bounded) until the parent's prlimit has reached it: limits are
    set from outside after spawn, so a child could otherwise act before them."""
    return (
        "import resource, time\n"
        "deadline = time.monotonic() + 5\n"
        f"while resource.getrlimit(resource.{which})[0] != {expected}:\n"
        "    assert time.monotonic() < deadline, 'limit never arrived'\n"
        "    time.sleep(0.001)\n"
    )


async def test_a_memory_limit_stops_an_action_that_allocates_past_it() -> None:
    limit = 300 * 2**20
    alloc = "b = bytearray(600 * 2**20); print('allocated')"
    code = until_limited("RLIMIT_AS", str(limit)) + alloc
    code_exit, text = await run(code, ResourceLimits(memory_soft=limit, memory_hard=limit))
    assert code_exit != 0 and "MemoryError" in text
    code_exit, text = await run(alloc, ResourceLimits())
    assert code_exit == 0 and "allocated" in text


async def test_an_open_files_limit_is_applied() -> None:
    code = until_limited("RLIMIT_NOFILE", "64") + "print('limited')"
    code_exit, text = await run(code, ResourceLimits(open_files=64))
    assert code_exit == 0 and text.strip() == "limited"


async def test_a_cpu_limit_ends_a_busy_loop() -> None:
    code_exit, _ = await run("while True: pass", ResourceLimits(cpu_seconds=1))
    assert code_exit is not None and code_exit < 0  # killed by SIGXCPU or SIGKILL


def test_sizes_are_read_as_people_write_them() -> None:
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("1024") == 1024
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


def test_pool_limits_fall_back_to_the_agent_memory_defaults() -> None:
    lim = resource_limits(Limits(cpu_seconds=5), "2GB", "4GB")
    assert (lim.memory_soft, lim.memory_hard, lim.cpu_seconds) == (2 * 10**9, 4 * 10**9, 5)
    assert not resource_limits(Limits(), None, None).any


async def test_a_cwd_inside_the_workspace_runs_there_with_output_capped() -> None:
    action = ShellAction(
        kind="shell",
        argv=[sys.executable, "-c", "import os; print(os.getcwd()); print('x' * 100000)"],
        cwd="src",
    )
    small = ActionContext("t", "s", 1, timeout_s=30, output_cap_bytes=4096, workspace=os.getcwd())
    result = await ShellRunner().run(action, small)
    assert result.ok
    assert result.output.splitlines()[0] == os.path.realpath("src")
    assert result.truncated and "output truncated" in result.output
    assert result.output_bytes > 100000


async def test_a_process_that_ends_at_once_has_both_its_streams_read() -> None:
    # Ended before its pipes were watched: read when its exit is seen.
    action = ShellAction(kind="shell", argv=["sh", "-c", "echo out; echo err >&2; exit 3"])
    result = await ShellRunner().run(action, ctx())
    assert (result.exit_code, result.output, result.error) == (3, "out\n", "err\n")


async def test_a_short_process_writing_more_than_a_pipe_holds_is_read_whole() -> None:
    # 300,000 bytes fill the pipe (64 KiB) long before the process could end unread.
    action = ShellAction(kind="shell", argv=["head", "-c", "300000", "/dev/zero"])
    result = await ShellRunner().run(action, ctx())
    assert result.ok and result.truncated
    assert result.output_bytes == 300000
    assert result.output.startswith("\0" * 65536)


@pytest.mark.parametrize("missing", ["cwd", "workspace"])
async def test_a_directory_that_does_not_exist_is_named_as_such(
    missing: str, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    workspace, cwd = (os.getcwd(), "gone-nowhere") if missing == "cwd" else (str(gone), None)
    action = ShellAction(kind="shell", argv=["pwd"], cwd=cwd)
    context = ActionContext("t", "s", 1, timeout_s=30, output_cap_bytes=4096, workspace=workspace)
    result = await ShellRunner().run(action, context)
    assert (result.ok, result.reason) == (False, "not_found")
    assert "command not found" not in result.error
    assert "does not exist" in result.error
    assert ("gone-nowhere" if missing == "cwd" else str(gone)) in result.error


async def test_a_server_directory_removed_under_the_runner_is_named_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner spawns with posix_spawn (no chdir) only in its own directory: remove that.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    runner = ShellRunner()
    home.rmdir()
    context = ActionContext("t", "s", 1, timeout_s=30, output_cap_bytes=4096, workspace=str(home))
    result = await runner.run(ShellAction(kind="shell", argv=["pwd"]), context)
    assert (result.ok, result.reason) == (False, "not_found")
    assert f"{home} does not exist" in result.error
