"""The exclusive lock that allows one scheduler per REYNOLDS_HOME."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from reynolds.adapters.home import writing
from reynolds.errors import AlreadyRunning


class HomeLock:
    """An exclusive `flock` on a file that holds the owner's pid.

    The lock dies with the process, so a crashed scheduler never leaves it stale; the file
    itself stays, because deleting it would let two processes lock two different files.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once, or raise AlreadyRunning naming the pid that holds it
        (HomeNotWritable when the lock file cannot be made)."""
        if self._fd is not None:
            return
        with writing(self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # os.open makes the descriptor non-inheritable, so child processes cannot keep the
            # lock alive after this process dies.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "another process"
            raise AlreadyRunning(
                f"another scheduler ({who}) is already running on {self.path.parent}; "
                "stop it first or use another REYNOLDS_HOME",
                pid=holder,
                lock=str(self.path),
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up; harmless when it is not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
