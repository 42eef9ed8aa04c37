"""Action tags: every process an action starts carries `REYNOLDS_ACTION=<tag>` in its
environment, so that what escaped its process group (setsid, a double-fork daemon) can still
be found and killed: at the action's timeout or cancellation, shortly after it ended, and by
the next server after a crash.

A tag reads `<pid namespace>.<owner pid>.<owner start ticks>/<runner>.<n>`: the owner is the
process that spawned the action (the server, or a Celery pool process), the runner a random
name per `ShellRunner`, `n` a counter. `<owner>/-` marks the owner's long-lived helpers (the
python workers); they go only once their owner has died.

Why tags, and why this way (measured on the 2-core VM of the benchmarks):
- A cgroup per action would be exact, but moving a pid into one (`cgroup.procs`) blocks for
  0.5-0.6 ms, about the whole per-subtask cost of `benchmarks/overhead.py`, and racily: the
  child may fork before it is moved (Python's posix_spawn cannot clone into a cgroup).
- The tag costs one dict entry per spawn. Finding tagged processes reads /proc/PID/environ of
  every process, ~3 µs each (0.3 ms for 100), and is done only off the spawn path: at a
  timeout or cancel, when an action's pipes are still held after its main process exited,
  by a sweep at most once a second while actions end, and at start.
- Not PR_SET_CHILD_SUBREAPER on the server: adopted orphans would have to be reaped without
  stealing exit statuses asyncio and multiprocessing wait for, and an orphan that has already
  died can no longer be told apart. (The python workers, whose children only the worker
  waits for, are subreapers; see `_python_child`.)
- A process that clears its environment (`env -i`) before escaping carries no tag; tags
  catch processes that daemonise, not a hostile action (run those in a container).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reynolds.adapters.actions.proc import (
    MAX_ROUNDS,
    carrying,
    environ_value,
    pid_namespace,
    signal_if,
    start_ticks,
    wait_exited,
)

TAG_NAME = "REYNOLDS_ACTION"
SWEEP_INTERVAL_S = 1.0
# How long a kill waits for what it killed to have exited (uninterruptible sleep can delay it).
EXIT_WAIT_S = 5.0
_NAME = TAG_NAME.encode()

log = logging.getLogger("reynolds.actions")


@dataclass(frozen=True, slots=True)
class Owner:
    """A process that spawns actions, named so that its pid cannot be mistaken once reused."""

    namespace: int
    pid: int
    start_ticks: int

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(pid_namespace(), pid, start_ticks(pid) or 0)

    @classmethod
    def of_tag(cls, tag: str) -> Owner | None:
        try:
            namespace, pid, ticks = (int(part) for part in tag.partition("/")[0].split("."))
        except ValueError:
            return None
        return cls(namespace, pid, ticks)

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.pid}.{self.start_ticks}"

    def alive(self) -> bool:
        ticks = start_ticks(self.pid)
        # 0: the owner could not read its own start time; its pid alone has to do.
        return ticks is not None and self.start_ticks in (0, ticks)


def with_owner_tag(env: dict[str, str], parent: Mapping[str, str]) -> dict[str, str]:
    """`env` with the tag of `parent` (a server's or pool process's, see `helper_tag`), so that
    what its helpers and python workers leave after a crash is found at the next start."""
    tag = parent.get(TAG_NAME)
    if tag is not None:
        env[TAG_NAME] = tag
    return env


def helper_tag() -> str:
    """The tag for this process's long-lived helpers: put it in `os.environ` before they start."""
    return f"{Owner.this_process().name}/-"


class ActionTags:
    """The tags of one runner's actions, and a sweeper thread for what outlives them."""

    def __init__(self, sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self._prefix = f"{Owner.this_process().name}/{os.urandom(4).hex()}."
        self._count = itertools.count(1)
        # Read by the sweeper thread, changed by the event loop: single set operations are
        # atomic under the GIL, and a tag is never reused, so a stale read only delays a kill.
        self._live: set[str] = set()
        self._interval_s = sweep_interval_s
        self._ended = threading.Event()
        self._stopped = threading.Event()
        self._sweeper: threading.Thread | None = None

    def begin(self) -> str:
        """A new tag, live until `end`."""
        tag = f"{self._prefix}{next(self._count)}"
        self._live.add(tag)
        return tag

    def end(self, tag: str) -> None:
        """The action is over: anything still carrying its tag goes at the next sweep."""
        self._live.discard(tag)
        if not self._ended.is_set():
            self._ended.set()
        if self._sweeper is None and not self._stopped.is_set():
            self._sweeper = threading.Thread(
                target=self._sweep_while_open, name="reynolds-action-sweeper", daemon=True
            )
            self._sweeper.start()

    async def kill(self, tag: str) -> int:
        """Kill every process carrying `tag` (off the event loop); how many were killed."""
        return await asyncio.to_thread(kill_where, lambda value: value == tag)

    def sweep(self) -> int:
        """Kill what carries a tag of this runner's that is no longer live."""
        return kill_where(lambda value: value.startswith(self._prefix) and value not in self._live)

    async def aclose(self) -> None:
        """Stop the sweeper and kill whatever still carries any of this runner's tags."""
        self._stopped.set()
        self._ended.set()
        await asyncio.to_thread(kill_where, lambda value: value.startswith(self._prefix))

    def _sweep_while_open(self) -> None:
        while True:
            self._ended.wait()
            if self._stopped.is_set():
                return
            self._ended.clear()
            try:
                killed = self.sweep()
            except Exception:
                log.exception("sweeping the processes of ended actions failed")
            else:
                if killed:
                    log.warning("killed %d process(es) left by ended actions", killed)
            if self._stopped.wait(self._interval_s):
                return


def kill_orphans() -> int:
    """Kill the processes whose tag names an owner that has died (a server or a pool process
    killed with SIGKILL: its escaped actions now belong to init). How many were killed."""
    namespace = pid_namespace()
    verdicts: dict[str, bool] = {}

    def orphaned(tag: str) -> bool:
        name = tag.partition("/")[0]
        verdict = verdicts.get(name)
        if verdict is None:
            owner = Owner.of_tag(tag)
            # Another pid namespace's pids mean nothing here: its own servers judge them.
            verdict = owner is not None and owner.namespace == namespace and not owner.alive()
            verdicts[name] = verdict
        return verdict

    killed = kill_where(orphaned)
    if killed:
        log.warning("killed %d process(es) left by a dead server or worker", killed)
    return killed


def kill_where(select: Callable[[str], bool]) -> int:
    """SIGKILL every process whose tag `select` accepts, scanning again until none is left, so
    that a process forking meanwhile cannot outrun it, then wait (at most `EXIT_WAIT_S`) until
    they have all exited. Never this process itself. How many were killed."""
    me, killed, pidfds = os.getpid(), set[int](), list[int]()
    try:
        for _ in range(MAX_ROUNDS):
            found = [
                (pid, value)
                for pid, value in carrying(_NAME)
                if pid != me and select(value.decode(errors="replace"))
            ]
            if not found:
                break
            # Killed processes may show once more while they exit; they are counted once.
            for pid, value in found:
                pidfd = signal_if(pid, _still_tagged(value))
                if pidfd is not None:
                    killed.add(pid)
                    pidfds.append(pidfd)
    finally:
        lingering = wait_exited(pidfds, EXIT_WAIT_S)
    if lingering:
        log.warning("%d killed process(es) had not exited after %.0f s", lingering, EXIT_WAIT_S)
    return len(killed)


def _still_tagged(value: bytes) -> Callable[[int], bool]:
    return lambda pid: environ_value(pid, _NAME) == value
