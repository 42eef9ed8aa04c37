"""Reading Linux's /proc for the processes actions leave behind: their environment, their
start time, their children; and signalling one only while it is still the process we read.

Nothing here runs on the spawn path: a scan of /proc costs about 3 µs per process on the
machine the figures in the README come from (0.3 ms for 100 processes).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterator

# Kill rounds before giving up on processes that will not die (uninterruptible sleep).
MAX_ROUNDS = 100


def environ_value(pid: int, name: bytes) -> bytes | None:
    """The value of `name` in the environment `pid` was started with (or forked with), or
    None: not set, the process is gone or a zombie, or not ours to read."""
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = b"\0" + _read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    start = data.find(b"\0" + name + b"=")
    if start < 0:
        return None
    start += len(name) + 2
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def carrying(name: bytes) -> Iterator[tuple[int, bytes]]:
    """(pid, value) of every process whose environment sets `name`."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            value = environ_value(int(entry.name), name)
            if value is not None:
                yield int(entry.name), value


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None when gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or len(fields) <= 19 or fields[0] == b"Z":
        return None
    return int(fields[19])


def pid_namespace() -> int:
    """This process's pid namespace (an inode number); pids mean something only within it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def children(pid: int) -> set[int]:
    """The live children of `pid` (every thread's), zombies excluded."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found.update(int(child) for child in fh.read().split())
        except FileNotFoundError:
            return _children_by_scan(pid)  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return {child for child in found if start_ticks(child) is not None}


def _children_by_scan(pid: int) -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields and len(fields) > 1 and fields[0] != b"Z" and int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    found: set[int] = set()
    frontier = children(pid)
    while frontier:
        found |= frontier
        frontier = {child for parent in frontier for child in children(parent)} - found
    return found


def kill_if(pid: int, still_ours: Callable[[int], bool]) -> bool:
    """SIGKILL `pid` if `still_ours(pid)` holds once it is pinned by a pidfd, so that a pid
    reused between the reading and the kill is never hit. Whether a signal was sent."""
    pidfd = signal_if(pid, still_ours)
    if pidfd is None:
        return False
    os.close(pidfd)
    return True


def signal_if(pid: int, still_ours: Callable[[int], bool]) -> int | None:
    """`kill_if`, keeping the pidfd of a process it signalled (the caller closes it), to wait
    for its exit with `wait_exited`; None when no signal was sent."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        # The pidfd names the process that had the pid when it was opened; if that one has
        # died and the pid was reused since, the check reads the newcomer and fails.
        if still_ours(pid):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            return pidfd
    except OSError:
        pass
    os.close(pidfd)
    return None


def wait_exited(pidfds: list[int], timeout_s: float) -> int:
    """Wait until every process of `pidfds` has exited (a pidfd turns readable once its
    process is a zombie or reaped), for at most `timeout_s`; closes them. How many had not.

    A process killed with SIGKILL stops showing its environment before it has finished
    exiting; without this wait, "killed" could be reported while it still held its memory
    and open files (a loaded machine stretches that window to many milliseconds)."""
    poller = select.poll()
    for pidfd in pidfds:
        poller.register(pidfd, select.POLLIN)
    waiting = set(pidfds)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0:
                break
            for pidfd, _ in poller.poll(left_ms):
                poller.unregister(pidfd)
                waiting.discard(pidfd)
        return len(waiting)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def kill_descendants(pid: int, pid_start_ticks: int | None) -> None:
    """SIGKILL every process below `pid` (if `pid` still is the process that started at
    `pid_start_ticks`), which is stopped first so that it cannot fork more meanwhile.

    Made for a child subreaper (the python workers): what escaped below it (setsid, double
    forks) is adopted by it as their parents die, so its tree holds them until it dies.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if pid_start_ticks is not None and start_ticks(pid) != pid_start_ticks:
            return
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        for _ in range(MAX_ROUNDS):
            below = descendants(pid)
            if not below:
                return
            in_tree = _child_of(below | {pid})
            for child in below:
                kill_if(child, in_tree)
    finally:
        os.close(pidfd)


def _child_of(tree: set[int]) -> Callable[[int], bool]:
    def check(pid: int) -> bool:
        fields = stat_fields(pid)
        return fields is not None and len(fields) > 1 and int(fields[1]) in tree

    return check
