"""Watching processes from tests: liveness, descendants and bounded waits."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

POLL_INTERVAL_S = 0.02

# The classic daemon, as a `python -c` program: fork, new session, fork again, standard streams
# to /dev/null. Arguments: a file for the daemon's pid, then how long the main process lingers
# once the daemon is up.
DAEMON = (
    "import os, sys, time\n"
    "pidfile, linger = sys.argv[1], float(sys.argv[2])\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        null = os.open(os.devnull, os.O_RDWR)\n"
    "        for fd in (0, 1, 2):\n"
    "            os.dup2(null, fd)\n"
    "        os.closerange(3, 256)\n"
    "        with open(pidfile + '.partial', 'w') as fh:\n"
    "            fh.write(str(os.getpid()))\n"
    "        os.rename(pidfile + '.partial', pidfile)\n"
    "        time.sleep(41.5)\n"
    "    os._exit(0)\n"
    "os.wait()\n"
    "deadline = time.monotonic() + 10\n"
    "while not os.path.exists(pidfile) and time.monotonic() < deadline:\n"
    "    time.sleep(0.01)\n"
    "print('daemonized', flush=True)\n"
    "time.sleep(linger)\n"
)


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie waiting to be reaped counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` in the process tree."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def carrying(entry: str) -> set[int]:
    """Every live process whose environment holds `entry` (`NAME=value`), however far it
    escaped its parent: own session, own group, or adopted by init."""
    wanted = entry.encode() + b"\0"
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if (b"\0" + environ).find(b"\0" + wanted) >= 0 and is_running(int(proc.name)):
            found.add(int(proc.name))
    return found


def kill_carrying(entry: str) -> None:
    """SIGKILL whatever still carries `entry`: a test's own clean-up, never an assertion."""
    for _ in range(20):
        left = carrying(entry)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_INTERVAL_S)
