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
