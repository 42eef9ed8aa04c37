"""Callables that show what a python action can see of its environment."""

from __future__ import annotations

import os
from pathlib import Path


def environment() -> dict[str, str]:
    """The worker's environment as the callable sees it."""
    return dict(os.environ)


def exec_environment(pid: int = 0) -> str:
    """The environment process `pid` (0: this worker) was started with, as /proc shows it."""
    target = "self" if pid == 0 else str(pid)
    return Path(f"/proc/{target}/environ").read_bytes().decode("utf-8", "replace")


def parent_pid() -> int:
    return os.getppid()
