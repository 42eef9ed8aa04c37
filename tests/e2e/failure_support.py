"""Helpers for the tests of a server that cannot start or loses its store: tasks put in a home
through a real server, `serve` run with a bound, homes on read-only or full file systems."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_support import Server, output

SERVE_BOUND_S = 30.0
ECHO_TASK = {
    "type": "check",
    "description": "one greeting per component",
    "components": ["alpha", "beta"],
    "steps": [{"name": "greet", "action": {"kind": "shell", "argv": ["echo", "{component}"]}}],
}


def database(server: Server) -> Path:
    """The home's SQLite store."""
    return server.home / "reynolds.db"


def orchestrate(server: Server, task: dict[str, object] | None = None) -> str:
    """Run a task to its end on the running server; its id."""
    answer = httpx.post(
        f"{server.base_url}/mcp/tools/orchestrate_task",
        json={"arguments": {"task": task or ECHO_TASK, "wait": True, "timeoutSeconds": 60}},
        timeout=90,
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()["structuredContent"]
    assert result["status"] == "succeeded", result
    return str(result["taskId"])


def seed(server: Server, count: int = 2, env: dict[str, str] | None = None) -> list[str]:
    """Start the server, run `count` tasks to their end, stop it: a home with a store."""
    started = server.run("start", env=env)
    assert started.returncode == 0, output(started)
    try:
        return [orchestrate(server) for _ in range(count)]
    finally:
        stopped = server.run("stop", env=env)
        assert stopped.returncode == 0, output(stopped)


def serve_briefly(
    server: Server, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> tuple[int | None, str]:
    """`reynolds serve` in the foreground: its exit code and output, or None for the code when
    it was still running after SERVE_BOUND_S (then it is stopped)."""
    with subprocess.Popen(
        [*prefix, sys.executable, "-m", "reynolds", "serve"],
        env={**server.env, **(env or {})},
        cwd=server.workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=SERVE_BOUND_S)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
            return None, out


def the_one_line(text: str) -> str:
    """The output's only line; fails when there is anything else, a traceback above all."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def error_line(text: str) -> str:
    """The one `error:` line of a command's output; fails on a traceback."""
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", *args], capture_output=True, check=False, timeout=30)
    return done.returncode == 0


def mount_tmpfs(path: Path, size: str) -> bool:
    """Mount a tmpfs of `size` at `path` (created); False when this user may not."""
    path.mkdir(parents=True, exist_ok=True)
    return _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "none", str(path))


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path`, unmounted afterwards; skips when this user may not mount."""
    if not mount_tmpfs(path, size):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN, which is not given here")
    try:
        yield path
    finally:
        unmount(path)


def make_read_only(path: Path) -> bool:
    """Remount the tmpfs at `path` read-only; False when that is not allowed."""
    return _mount("-o", "remount,ro", str(path))


UNPRIVILEGED = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def unprivileged_can_run_python() -> bool:
    """Whether `nobody` can run this interpreter (it cannot when it lives under /root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    done = subprocess.run(
        [*UNPRIVILEGED, sys.executable, "-c", "import reynolds"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return done.returncode == 0


def run_cli(
    server: Server, *args: str, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m reynolds ARGS`, as another user when `prefix` says so."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "reynolds", *args],
        env={**server.env, **(env or {})},
        cwd=server.workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
