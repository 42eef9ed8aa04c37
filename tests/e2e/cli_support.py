"""Helpers for the CLI end-to-end tests: a server's home and port, the CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

CLI_TIMEOUT_S = 90.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """Where a test's server lives (its home and port) and how to run the CLI against it."""

    home: Path
    port: int
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REYNOLDS_")}
        env.update(
            REYNOLDS_HOME=str(self.home),
            REYNOLDS_HOST="127.0.0.1",
            REYNOLDS_PORT=str(self.port),
            REYNOLDS_PERSONALITY="off",
            NO_COLOR="1",
            TERM="dumb",
        )
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m reynolds ARGS` in a subprocess, its output captured."""
        return subprocess.run(
            [sys.executable, "-m", "reynolds", *args],
            env={**self.env, **(env or {})},
            cwd=cwd or self.workdir,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def make_server(root: Path) -> Server:
    workdir = root / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return Server(home=root / "home", port=free_port(), workdir=workdir)
