"""The processes multiprocessing starts for python actions — the forkserver, the resource
tracker, spawned workers — get the child environment, never the whole of the server's.

/proc shows every process the environment it was started with, for its whole life, to any
process of the same user, and a worker forked from the forkserver starts with the forkserver's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from multiprocessing import util
from typing import Any

from reynolds.adapters.actions.shell import child_environment
from reynolds.adapters.actions.tags import with_owner_tag

# What a helper process's interpreter needs to start as the server's did. Workers drop these
# too, before they run anything: a callable sees the child environment alone.
_INTERPRETER_VARIABLES = ("LD_LIBRARY_PATH",)
_INTERPRETER_PREFIX = "PYTHON"


def helper_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The environment of the processes multiprocessing starts: the child environment and
    what the interpreter needs to start, nothing that could hold a secret."""
    env = with_owner_tag(child_environment(parent, {}), parent)
    for name, value in parent.items():
        if name in _INTERPRETER_VARIABLES or name.startswith(_INTERPRETER_PREFIX):
            env[name] = value
    return env


def _spawn_helper(path: bytes | str, args: Sequence[Any], passfds: Sequence[int]) -> int:
    """`multiprocessing.util.spawnv_passfds`, with `helper_environment` instead of the whole
    of the server's."""
    passed = sorted({int(fd) for fd in passfds})
    # dup2 onto the same number in the child clears close-on-exec there, as passing does.
    copies = [os.dup(fd) for fd in passed]
    try:
        return os.posix_spawn(
            path,
            list(args),
            helper_environment(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, copy, fd) for copy, fd in zip(copies, passed, strict=True)
            ],
        )
    finally:
        for copy in copies:
            os.close(copy)


def start_helpers_without_server_environment() -> None:
    """Make every helper process multiprocessing starts from now on get `helper_environment`.

    multiprocessing passes no environment of its own: it has no hook for one, so its one
    spawning function is replaced, for the whole process (idempotent).
    """
    if util.spawnv_passfds is not _spawn_helper:
        setattr(util, "spawnv_passfds", _spawn_helper)  # noqa: B010 (a module's function)
