"""Callables that python-action tests run in worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def noop() -> None:
    """Return at once: the round trip, and nothing else."""


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def not_json() -> object:
    return {1, 2, 3}


def chatty(text: str) -> str:
    print(text)
    print("to stderr", file=sys.stderr)
    return "done"


def fail(message: str) -> None:
    raise ValueError(message)


def exit_worker(code: int) -> None:
    os._exit(code)


def pid() -> int:
    return os.getpid()


def big(size: int) -> str:
    return "x" * size


def announce_and_sleep(path: str, seconds: float) -> None:
    """Write this process's pid to `path`, then sleep: the caller knows the call has begun."""
    _announce(path, os.getpid())
    time.sleep(seconds)


def start_child_and_sleep(path: str, seconds: float) -> Any:
    """Start a child process, write its pid to `path`, then sleep."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    _announce(path, child.pid)
    time.sleep(seconds)
    return child.wait()


def _announce(path: str, pid: int) -> None:
    # Written aside and renamed, so a reader that sees the file sees the whole pid.
    partial = Path(f"{path}.partial")
    partial.write_text(str(pid))
    partial.replace(path)


def escape_and_sleep(path: str, how: str, seconds: float) -> None:
    """Start a process outside this worker's process group, write its pid to `path`, sleep.

    `how`: "setsid" execs a child in a session of its own; "double_fork" forks a daemon
    (fork, new session, fork again, no exec), as daemonising libraries do.
    """
    escape_and_return(path, how, seconds)
    time.sleep(seconds)


def _double_fork(seconds: float) -> int:
    """A daemon that sleeps `seconds`; its pid."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.closerange(3, read_end)
            os.closerange(read_end + 1, write_end)
            os.closerange(write_end + 1, 1024)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            time.sleep(seconds)
        os._exit(0)
    os.close(write_end)
    os.waitpid(middle, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return int(pipe.read())


def escape_and_return(path: str, how: str, seconds: float) -> None:
    """`escape_and_sleep` without the sleep: the call ends while what it detached runs on."""
    if how == "setsid":
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({seconds})"],
            start_new_session=True,
        )
        _announce(path, child.pid)
    else:
        _announce(path, _double_fork(seconds))
