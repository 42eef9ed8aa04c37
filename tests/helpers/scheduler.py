"""The scheduler on fakes: an in-memory store, a clock the test moves, and a shell runner whose
actions end as the test scripts them (no process is started)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from reynolds.adapters.store.memory import MemoryStore
from reynolds.core.models import ShellAction, Strategy, TaskSpec
from reynolds.core.pools import PoolSet, ResourceLimits
from reynolds.core.reporting import TaskSeconds
from reynolds.services.engine import Engine
from reynolds.services.ports import ActionContext, ActionResult, LlmActionRunner
from reynolds.services.runs import TaskRun
from reynolds.settings import Settings

START_S = 1_000_000.0


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self, now: float = START_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ScriptedShell:
    """A `ShellActionRunner`: each attempt of a subtask takes `takes_s[id]` seconds of the
    fake clock and ends with the next of `outcomes[id]` (success once they run out); a
    subtask in `gates` waits for its event first."""

    clock: FakeClock
    outcomes: dict[str, list[ActionResult]] = field(default_factory=dict)
    takes_s: dict[str, float] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    contexts: dict[str, ActionContext] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)  # the fake pid of each subtask
    log: list[str] = field(default_factory=list)  # "start a", "end a", in the order they came
    running: int = 0
    peak: int = 0

    async def run(
        self,
        action: ShellAction,
        ctx: ActionContext,
        *,
        argv: list[str] | None = None,
        executables: Collection[str] = (),
        limits: ResourceLimits | None = None,
        secret_env: Mapping[str, str] | None = None,
    ) -> ActionResult:
        sid = ctx.subtask_id
        self.started.append(sid)
        self.log.append(f"start {sid}")
        self.contexts[sid] = ctx
        if ctx.on_spawn is not None:  # as a real runner does once its process exists
            ctx.on_spawn(self.pids.setdefault(sid, 10_000 + len(self.pids)), None)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            gate = self.gates.get(sid)
            if gate is not None:
                await gate.wait()
            else:
                await asyncio.sleep(0)  # others may start meanwhile, as real actions would
            self.clock.advance(self.takes_s.get(sid, 0.0))
        except asyncio.CancelledError:
            self.cancelled.append(sid)
            raise
        finally:
            self.running -= 1
        self.finished.append(sid)
        self.log.append(f"end {sid}")
        script = self.outcomes.get(sid)
        if script:
            return script.pop(0)
        return ActionResult(True, exit_code=0, output=" ".join(argv or action.argv))

    async def aclose(self) -> None:
        return None


class NoOrphans:
    """An `OrphanKiller` with nothing to kill; it counts the sweeps and the pids asked about."""

    def __init__(self) -> None:
        self.sweeps = 0
        self.asked: list[int] = []

    def kill_orphans(self) -> int:
        self.sweeps += 1
        return 0

    def is_our_orphan(self, pid: int, start_ticks: int | None, started_at: float | None) -> bool:
        self.asked.append(pid)
        return False

    def kill_group(self, pid: int) -> None:
        raise AssertionError("no process group to kill")


class QuietMetrics:
    """A `SchedulerMetrics` that keeps what it is told."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.subtasks: list[tuple[str, str, float | None]] = []
        self.loops: list[str] = []
        self.breakers: dict[str, bool] = {}  # pool or downstream: open now
        self.limits: dict[str, float | None] = {}
        self.task_seconds: list[TaskSeconds] = []
        self.slots: list[tuple[str, int, int, float]] = []  # pool, busy, replicas, since
        self.audits: list[tuple[str, str]] = []  # kind, decision

    def task_ended(self, status: str, seconds: TaskSeconds) -> None:
        self.tasks.append(status)
        self.task_seconds.append(seconds)

    def pool_slots(self, pool: str, busy: int, replicas: int, now: float) -> None:
        self.slots.append((pool, busy, replicas, now))

    def audited(self, kind: str, decision: str) -> None:
        self.audits.append((kind, decision))

    def subtask_ended(self, agent_type: str, status: str, duration_s: float | None) -> None:
        self.subtasks.append((agent_type, status, duration_s))

    def pool_replicas(self, pool: str, replicas: int) -> None:
        return None

    def pool_scaled(self, pool: str, direction: str) -> None:
        return None

    def pool_load(self, pool: str, utilization: float, queue_depth: int) -> None:
        return None

    def loop_detected(self, detector: str) -> None:
        self.loops.append(detector)

    def breaker_open(self, agent_type: str | None, downstream: str | None, is_open: bool) -> None:
        self.breakers[agent_type or downstream or ""] = is_open

    def concurrency_limit(self, downstream: str, limit: float | None) -> None:
        self.limits[downstream] = limit

    def render(self) -> bytes:
        return b""


def pools(replicas: int = 4) -> PoolSet:
    """One pool, `work`, of `replicas` slots."""
    spec = {"name": "work-pool", "replicas": {"min": 1, "max": 8, "initial": replicas}}
    return PoolSet.from_mapping({"pools": {"work": spec}}, source="test")


@dataclass
class Scheduler:
    engine: Engine
    store: MemoryStore
    shell: ScriptedShell
    clock: FakeClock
    metrics: QuietMetrics
    orphans: NoOrphans

    async def submit(self, task: dict[str, Any], strategy: dict[str, Any] | None = None) -> TaskRun:
        return await self.engine.submit(
            TaskSpec.model_validate(task),
            Strategy.model_validate(strategy) if strategy else None,
        )

    async def run(
        self, task: dict[str, Any], strategy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Submit, wait for the end (bounded), and return the task's result."""
        run = await self.submit(task, strategy)
        assert await self.engine.wait(run, 10), "the task did not end"
        return await self.engine.result(run.id)


@asynccontextmanager
async def scheduler(
    *,
    store: MemoryStore | None = None,
    clock: FakeClock | None = None,
    replicas: int = 4,
    pool_set: PoolSet | None = None,
    llm: LlmActionRunner | None = None,
    **settings: Any,
) -> AsyncIterator[Scheduler]:
    """An engine on the fakes; `store` given, it is shared (and left open); `pool_set` given,
    it replaces the one `work` pool of `replicas` slots; `llm` runs llm actions and plans."""
    clock = clock or FakeClock()
    own_store = store is None
    store = store or MemoryStore(batch_interval_s=0.0, clock=clock)
    store.start()
    shell = ScriptedShell(clock)
    metrics, orphans = QuietMetrics(), NoOrphans()
    ids = itertools.count(1)
    engine = Engine(
        settings=Settings(
            **{"retry_base_s": 0.0, "retry_cap_s": 0.0, "personality": "off", **settings}
        ),
        store=store,
        pools=pool_set or pools(replicas),
        metrics=metrics,
        shell=shell,
        sampler=_Idle(),
        orphans=orphans,
        new_id=lambda: f"task-{next(ids)}",
        workspace="/nowhere",
        llm=llm,
        clock=clock,
        jitter=lambda: 0.0,
    )
    try:
        yield Scheduler(engine, store, shell, clock, metrics, orphans)
    finally:
        await engine.close()
        if own_store:
            store.close()


class _Idle:
    def sample(self) -> tuple[float, float]:
        return (0.0, 0.0)


async def until(condition: Callable[[], bool], turns: int = 200, patience_s: float = 5.0) -> bool:
    """Let the event loop run until `condition` holds, at most `turns` turns, then (for work
    that waits on the store's writer thread, slow on a busy machine) at most `patience_s`
    more seconds; whether it held. A test expecting it not to hold passes `patience_s=0`."""
    for _ in range(turns):
        if condition():
            return True
        await asyncio.sleep(0)
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.002)
    return condition()


def shell_step(sid: str, *depends_on: str, **options: Any) -> dict[str, Any]:
    """A subtask `sid` running `echo sid`, after `depends_on`."""
    action = {"kind": "shell", "argv": ["echo", sid]}
    return {"id": sid, "action": action, "dependsOn": list(depends_on), **options}


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["subtasks"]}
