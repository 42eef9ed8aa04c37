"""What the health checks read of the machine and the network: free disk space, available
memory, whether a command can be found, whether a host answers on its port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from reynolds.adapters import machine_load

# Short: `/health` waits for it, and load balancers poll `/health`.
CONNECT_TIMEOUT_S = 1.0


class MachineProbes:
    """Reads /proc and the file system; connects with a short timeout."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc

    def disk(self, path: Path) -> tuple[int, int] | None:
        """(free bytes, total bytes) of the file system holding `path` (its nearest existing
        parent); None when it cannot be read."""
        here = path
        while not here.exists() and here != here.parent:
            here = here.parent
        try:
            usage = shutil.disk_usage(here)
        except OSError:
            return None
        return usage.free, usage.total

    def memory(self) -> tuple[int, int] | None:
        """(available bytes, total bytes) from /proc/meminfo; None when it cannot be read."""
        return machine_load.memory(self._proc)

    def executable(self, command: str) -> bool:
        """Whether `command` (a path, or a name looked up on PATH) can be run."""
        if os.sep in command:
            return os.access(command, os.X_OK) and Path(command).is_file()
        return shutil.which(command) is not None

    async def connects(self, url: str) -> str | None:
        """None when a TCP connection to `url`'s host and port opens in time, else why not."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            return f"no answer from {parts.hostname}:{port} in {CONNECT_TIMEOUT_S:g} s"
        except OSError as exc:
            return f"{parts.hostname}:{port}: {exc.strerror or exc}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None
