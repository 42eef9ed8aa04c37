"""The ports the services depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reynolds.core.mcp_servers import McpServer
    from reynolds.core.models import HttpAction, LlmAction, McpAction, PythonAction, ShellAction
    from reynolds.core.pools import ResourceLimits
    from reynolds.core.reporting import TaskSeconds
    from reynolds.core.worktrees import Change, Identity

Row = dict[str, Any]

# Orchestrators sharing a database take one whose heartbeat is older than this for dead, and
# its unfinished tasks as theirs to resume.
SERVER_STALE_AFTER_S = 30.0


# What history knows of one duration key: attempts, failures, mean seconds, Welford's sum of
# squared deviations, and the latest durations, oldest first.
Distribution = tuple[int, int, float, float, tuple[float, ...]]


@dataclass(slots=True)
class ActionContext:
    """What an action runner needs besides the action itself."""

    task_id: str
    subtask_id: str
    attempt: int
    timeout_s: float
    output_cap_bytes: int
    workspace: str
    # Called with (pid, process start time in clock ticks, or None when not read) once a
    # process has started, so a restarted server can kill what a dead one left behind.
    on_spawn: Callable[[int, int | None], None] | None = None


@dataclass(slots=True)
class ActionResult:
    """How an action ended. `reason` is set when it did not simply exit: timeout, denied, ..."""

    ok: bool
    exit_code: int | None = None
    output: str = ""
    error: str = ""
    reason: str | None = None
    output_bytes: int = 0
    truncated: bool = False
    # What the downstream asked for in a Retry-After header (HTTP 429/503), in seconds.
    retry_after_s: float | None = None
    # What an llm action used: tokens as the endpoint counted them, cost from the configured
    # prices (None: no price for its model). None for other actions.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class ShellActionRunner(Protocol):
    """Runs `shell` actions as process groups. Cancellation (asyncio) kills what it started."""

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
        """Run `argv` (the action's, already substituted) within the pool's executables."""

    async def aclose(self) -> None: ...


class PythonActionRunner(Protocol):
    """Runs `python` actions: a callable the pool declares (`allowed`), in a worker process."""

    async def run(
        self, action: PythonAction, ctx: ActionContext, *, allowed: Collection[str] | None = None
    ) -> ActionResult: ...

    async def aclose(self) -> None: ...


class HttpActionRunner(Protocol):
    """Runs `http` actions to loopback or to the pool's `allowed_hosts`."""

    async def run(
        self, action: HttpAction, ctx: ActionContext, *, allowed_hosts: Collection[str] = ()
    ) -> ActionResult: ...

    async def aclose(self) -> None: ...


class McpActionRunner(Protocol):
    """Runs `mcp` actions: one tool call on a server the pool declares, over a session kept
    open per (pool, server) and opened again once the server has gone away."""

    async def run(
        self,
        action: McpAction,
        ctx: ActionContext,
        *,
        pool: str,
        server: McpServer,
        arguments: dict[str, Any],
    ) -> ActionResult:
        """Call `action.tool` with `arguments` (the action's, already substituted)."""

    async def aclose(self) -> None:
        """Close every session, and stop the servers it started."""


class LlmActionRunner(Protocol):
    """Runs `llm` actions against an OpenAI-compatible chat-completions endpoint: the answer's
    text is the output, an HTTP error's status the exit code, usage and cost on the result."""

    async def run(self, action: LlmAction, ctx: ActionContext) -> ActionResult: ...

    async def aclose(self) -> None: ...


class WorktreeGit(Protocol):
    """Git for task workspaces (adapters/git_worktrees.py); blocking calls, run in threads.
    Failures raise WorkspaceError in git's words."""

    def toplevel(self, path: str) -> str | None: ...
    def commit_of(self, repo: str, rev: str) -> str | None: ...
    def branch_exists(self, repo: str, name: str) -> bool: ...
    def reserve_branch(self, repo: str, name: str, commit: str) -> bool: ...
    def delete_branches(self, repo: str, names: list[str]) -> None: ...
    def enter(self, repo: str, path: str, branch: str, start: str) -> None: ...
    def merge(
        self, path: str, branch: str, message: str, identity: Identity
    ) -> list[str] | None: ...
    def merge_all(
        self, path: str, branches: list[str], message: str, identity: Identity
    ) -> list[str]: ...
    def head(self, path: str) -> str: ...
    def reset(self, path: str, commit: str) -> None: ...
    def changed_files(self, path: str, old: str, new: str) -> list[str]: ...
    def commit_all(self, path: str, start: str, message: str, identity: Identity) -> Change: ...
    def worktrees(self, repo: str) -> list[str]: ...
    def remove_task(self, repo: str | None, task_id: str) -> None: ...
    def prune(self, repo: str) -> list[str]: ...
    def task_dirs(self) -> dict[str, list[str]]: ...


class OrphanKiller(Protocol):
    """Finds and kills what the actions of a dead server left running (blocking: /proc)."""

    def kill_orphans(self) -> int:
        """Kill every tagged process a dead server or worker left; how many were killed."""

    def is_our_orphan(self, pid: int, start_ticks: int | None, started_at: float | None) -> bool:
        """Whether `pid` is still the process an action of ours started (not a reused pid)."""

    def kill_group(self, pid: int) -> None:
        """Kill the process group `pid` leads."""


class HealthProbes(Protocol):
    """What the health checks read of the machine and the network."""

    def disk(self, path: Path) -> tuple[int, int] | None:
        """(free bytes, total bytes) of the file system holding `path`; None if unreadable."""

    def memory(self) -> tuple[int, int] | None:
        """(available bytes, total bytes) of the machine; None if unreadable."""

    def executable(self, command: str) -> bool:
        """Whether `command` (a path, or a name on PATH) can be run."""

    async def connects(self, url: str) -> str | None:
        """None when `url`'s host accepts a connection on its port in time, else why not."""


class SystemSampler(Protocol):
    """This machine's load, for auto-scaling."""

    def sample(self) -> tuple[float, float]:
        """(cpu_percent, memory_percent); zeros where they cannot be read."""


class SchedulerMetrics(Protocol):
    """What the scheduler reports to the metrics endpoint."""

    def task_ended(self, status: str, seconds: TaskSeconds) -> None:
        """A task ended with `status`; `seconds` add to the windowed ratios."""

    def subtask_ended(self, agent_type: str, status: str, duration_s: float | None) -> None: ...

    def pool_slots(self, pool: str, busy: int, replicas: int, now: float) -> None:
        """`pool` has `busy` of its `replicas` slots taken from `now` on (utilisation over a
        window is busy slot-seconds over available slot-seconds)."""

    def audited(self, kind: str, decision: str) -> None:
        """An audit record of `kind` (action, tool, breaker) with `decision` was written."""

    def pool_replicas(self, pool: str, replicas: int) -> None: ...

    def pool_scaled(self, pool: str, direction: str) -> None: ...

    def pool_load(self, pool: str, utilization: float, queue_depth: int) -> None: ...

    def loop_detected(self, detector: str) -> None: ...

    def breaker_open(self, agent_type: str | None, downstream: str | None, is_open: bool) -> None:
        """A pool's (`agent_type`) or a downstream's breaker is open (or half-open) or not."""

    def concurrency_limit(self, downstream: str, limit: float | None) -> None:
        """A downstream's adaptive limit; None once it has none."""

    def render(self) -> bytes:
        """The metrics as the Prometheus text format."""


# A new task id on each call (unique across servers sharing a database).
IdFactory = Callable[[], str]


class Store(Protocol):
    """Durable state. Writes are queued and committed in batches by a writer thread;
    `flush` returns once everything queued before the call is committed."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    # -- queued writes (return at once; rows are upserts keyed by their primary key) --
    def put_task(self, row: Row) -> None: ...

    def put_subtask(self, row: Row) -> None: ...

    def put_attempt(self, row: Row) -> None: ...

    def add_event(self, row: Row) -> None: ...

    def add_audit(self, row: Row) -> None:
        """Append one audit record: a tool call or an action attempt (append-only)."""

    def add_audit_later(self, build: Callable[[], Row]) -> None:
        """Append the audit record `build()` returns, made on the writer's thread: for a record
        whose making is CPU work the event loop should not do. Queued, and flushed, in turn
        with the other writes; a record `build` fails to make is logged and left out."""

    def add_decision(self, row: Row) -> None:
        """Append one routing decision: the pool an attempt went to, its scores and why."""

    def add_scaling_event(self, row: Row) -> None:
        """Append one change of a pool's replicas (manual or auto)."""

    def record_duration(self, keys: Sequence[str], seconds: float, ok: bool) -> None: ...

    def on_commit(self, callback: Callable[[list[Row]], None]) -> None:
        """Register a callback run (in the writer thread) with the events of each commit."""

    def write_mark(self) -> int: ...

    def durable(self, mark: int) -> bool: ...

    async def flush(self) -> None: ...

    def flush_sync(self) -> None: ...

    # -- reads (blocking; call from a thread when on the event loop) --
    def get_task(self, task_id: str) -> Row | None: ...

    def get_subtasks(self, task_id: str) -> list[Row]: ...

    def list_tasks(self, status: str | None = None, limit: int = 50) -> list[Row]: ...

    def unfinished_tasks(self) -> list[Row]: ...

    def claim_unfinished(
        self, stale_after_s: float, limit: int | None = None, *, others_only: bool = False
    ) -> list[Row]:
        """Take the unfinished tasks that are this server's (unless `others_only`), nobody's,
        or a dead server's (no heartbeat for `stale_after_s`) and return them oldest first;
        no two servers are given the same task."""

    def on_lost(self, callback: Callable[[set[str]], None]) -> None:
        """Register a callback run (in the writer thread) with the ids of tasks another server
        has claimed since this one did."""

    def share_load(self, load: Row, stale_after_s: float) -> tuple[bool, list[Row]]:
        """Write what this server has waiting and running per pool; whether it is the live
        server that acts for all (the first by id), and the other live servers' loads."""

    def request_cancel(self, task_id: str) -> bool:
        """Ask the server that owns an unfinished task to cancel it (through its row); False
        when the task is not unfinished."""

    def cancel_requests(self) -> list[str]:
        """The unfinished tasks of this server that another server was asked to cancel."""

    def task_counts(self) -> dict[str, int]: ...

    def durations(self, keys: Iterable[str]) -> Mapping[str, float]: ...

    def outcomes(self, keys: Iterable[str]) -> Mapping[str, tuple[int, int, float]]:
        """(attempts, failures, mean seconds) recorded under each of `keys` that has any."""

    def distributions(self, keys: Iterable[str]) -> Mapping[str, Distribution]:
        """(attempts, failures, mean seconds, Welford's sum of squared deviations, the latest
        durations oldest first) recorded under each of `keys` that has any."""

    def get_attempts(self, task_id: str) -> list[Row]:
        """Every recorded attempt of the task's subtasks, by subtask id, then attempt number."""

    def put_experiment(self, row: Row) -> None: ...

    def get_experiment(self, experiment_id: str) -> Row | None: ...

    def list_experiments(self, limit: int = 50) -> list[Row]:
        """The newest experiments first."""

    def events(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[Row]: ...

    def last_event_seq(self, task_id: str) -> int:
        """The newest event's `seq` of a task (0: none yet)."""

    def event_cursors(self) -> tuple[dict[str, int], int]:
        """Where to start `events_elsewhere` from: the other registered servers' newest
        committed events, and the newest of all for servers that register later."""

    def events_elsewhere(
        self, after: Mapping[str, int], start: int, limit: int = 1000
    ) -> list[Row]:
        """Events other servers sharing the store have committed, oldest first: of a server
        named in `after`, past its seq there; of any other, past `start` ([] when none can)."""

    def audit(
        self,
        task_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
        before: tuple[float, int] | None = None,
    ) -> list[Row]:
        """The newest `limit` audit records matching (before the `(at, seq)` position
        `before`, when given), oldest first: ordered by time, then sequence."""

    def decisions(self, task_id: str) -> dict[str, Row]:
        """The latest routing decision of each subtask of a task, by subtask id."""

    def scaling_events(self, limit: int = 20) -> list[Row]:
        """The newest `limit` scaling events, newest first."""

    def failure_patterns(self, limit_rows: int = 5000) -> list[Row]:
        """The newest `limit_rows` failed attempts, newest first, with what failure patterns
        are learned from: task_id, subtask_id, attempt, pool, task_type, failure_class, error,
        finished_at, `output` (the end of the subtask's, when the attempt is its latest and its
        error is empty, else None) and `action` (the subtask's, with only kind, argv,
        callable, method, url, server, tool and model)."""


class DistributedExecutor(Protocol):
    """Runs jobs on distributed workers (the Celery backend) instead of local runners."""

    lease_s: float

    async def run(
        self, job: Any, *, idempotent: bool, on_claim: Callable[[], None] | None = None
    ) -> ActionResult:
        """Dispatch until a worker reports the end (see adapters/executors/celery.py)."""

    def start(self, on_capacity: Callable[[], None]) -> None: ...

    async def aclose(self) -> None: ...

    def capacity(self, pools: list[str]) -> dict[str, int]:
        """Slots per pool offered by the workers last seen."""

    async def scale(self, pool: str, target: int, current: int) -> None:
        """Ask the pool's workers to run `target` processes in all."""

    def describe(self) -> dict[str, Any]:
        """Workers and lease counters, for `/status`."""


class Cache(Protocol):
    """Short-lived JSON values by key, each with a time to live.

    A cache never fails its caller: when its backend is unreachable, `get` misses and `set`
    drops the value, so the caller computes instead. `get` returns a fresh copy (the value as
    JSON would bring it back), or None on a miss.
    """

    async def get(self, key: str) -> Any | None: ...

    async def set(self, key: str, value: Any, ttl_s: float) -> None: ...

    async def ping(self) -> str | None:
        """None when its backend answers now (an in-process cache always does), else why not."""

    async def aclose(self) -> None: ...
