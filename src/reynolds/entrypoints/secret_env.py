"""Secrets stay out of the environment of every long-lived Reynolds process.

/proc/PID/environ shows any process of the same user the environment a program was started
with, for the program's whole life: unsetting a variable afterwards does not change it. So a
process given secrets in its environment (`REYNOLDS_API_TOKEN`, the database and broker URLs,
which may hold passwords) starts the next program — the server, itself again, a Celery
worker — without them, and hands them over through a pipe whose descriptor number is in
`REYNOLDS_SECRETS_FD`. The new program reads it once, at start, and gives the values to
`Settings` as arguments; they never return to `os.environ`, so no child inherits them.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from reynolds.errors import InvalidInput
from reynolds.settings import SECRET_SETTINGS

SECRETS_FD = "REYNOLDS_SECRETS_FD"
_PREFIX = "REYNOLDS_"
_SECRET_VARIABLES = frozenset(f"{_PREFIX}{name.upper()}" for name in SECRET_SETTINGS)
# What a pipe holds before anyone reads it (Linux's default capacity): the writer must not
# block, as the reader starts only once the writer has handed the pipe over.
_PIPE_CAPACITY_BYTES = 65536

_received: dict[str, str] | None = None


def is_secret(name: str) -> bool:
    """Whether the variable holds (or may hold) a secret; names match as Settings reads them,
    whatever their case."""
    return name.upper() in _SECRET_VARIABLES


def split(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the environment without secrets, the secrets), both by variable name."""
    clean: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for name, value in environ.items():
        if name == SECRETS_FD:
            continue
        (secrets if is_secret(name) else clean)[name] = value
    return clean, secrets


def received() -> dict[str, str]:
    """The secrets handed to this process at start (none if it was given none).

    Read once, then the pipe is closed: later calls (and processes forked later) get the
    same values from memory.
    """
    global _received
    if _received is None:
        text = os.environ.pop(SECRETS_FD, None)
        _received = {} if text is None else _read(text)
    return dict(_received)


def held() -> dict[str, str]:
    """Every secret this process holds: handed over, or still in its environment."""
    return {**received(), **split(os.environ)[1]}


def settings_arguments(secrets: Mapping[str, str]) -> dict[str, Any]:
    """`Settings` keyword arguments for secret variables (which win over the environment
    and `config/reynolds.env`, as the environment they came from does)."""
    return {name.upper().removeprefix(_PREFIX).lower(): value for name, value in secrets.items()}


def hand_over(secrets: Mapping[str, str]) -> int:
    """The read end of a pipe holding `secrets`, inheritable; the caller closes it once the
    next program is started."""
    data = json.dumps(dict(secrets)).encode()
    if len(data) > _PIPE_CAPACITY_BYTES:
        raise InvalidInput(f"the secrets in the environment exceed {_PIPE_CAPACITY_BYTES} bytes")
    read_end, write_end = os.pipe()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def launch_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], int | None]:
    """For starting a Reynolds program from this one: `environ` without secrets, and the
    descriptor to pass (or None) that hands over every secret this process holds. The
    environment names the descriptor; close it once the program is started."""
    env, secrets = split(environ)
    secrets = {**received(), **secrets}
    if not secrets:
        return env, None
    fd = hand_over(secrets)
    env[SECRETS_FD] = str(fd)
    return env, fd


def exec_without_secrets(argv: list[str], environ: Mapping[str, str]) -> NoReturn:
    """Replace this process (same pid) with `argv` run by this interpreter, handing over
    the secrets instead of leaving them in its environment."""
    env, _fd = launch_environment(environ)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # noqa: S606 (argv only, no shell)


def restart_without_secrets() -> None:
    """Start this program again, same arguments and pid, when secrets are in its environment;
    return at once when there are none."""
    if split(os.environ)[1]:
        exec_without_secrets(list(sys.orig_argv), os.environ)


def _read(text: str) -> dict[str, str]:
    problem = f"{SECRETS_FD}={text!r} is not a pipe of secrets handed to this process"
    fd = int(text) if text.isdigit() else -1
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    if not is_pipe:
        raise InvalidInput(problem, field=SECRETS_FD)
    chunks = []
    try:
        while chunk := os.read(fd, _PIPE_CAPACITY_BYTES):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        values = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise InvalidInput(problem, field=SECRETS_FD) from exc
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise InvalidInput(problem, field=SECRETS_FD)
    return {name: value for name, value in values.items() if is_secret(name)}
