"""The `python` action runner: declared callables run in a pool of long-lived worker processes.

Workers come from the multiprocessing forkserver (or spawn), never from a fork of the server.
They start on first use (or in `start`), are reused, and run in the server's working directory
with its `sys.path`. The event loop talks to each over its own duplex pipe, watched with
`add_reader`, so a call costs two small writes and no thread hop. A call that times out or is
cancelled kills its worker and every process below it (the worker is a child subreaper, so
that includes what the callable detached), and the next call starts a replacement.

A worker dies with the server, even mid-call and even if the server is killed with SIGKILL:
it watches its pipe, its parent and the server's pid, and asks for PDEATHSIG.

A callable sees the child environment shell actions get, never the server's, and neither do
the helper processes multiprocessing starts (helper_processes.py); with an action user,
workers become that user before they run anything.

A runner belongs to the event loop that first uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal, TypeAlias

from reynolds.adapters.actions import _python_child
from reynolds.adapters.actions.helper_processes import start_helpers_without_server_environment
from reynolds.adapters.actions.identity import ActionUser
from reynolds.adapters.actions.proc import kill_descendants
from reynolds.adapters.actions.shell import child_environment
from reynolds.adapters.actions.tags import with_owner_tag
from reynolds.core.models import PythonAction
from reynolds.services.ports import ActionContext, ActionResult

Declared: TypeAlias = Collection[str] | Callable[[str], bool]
"""The callables a pool declares: `module:function` names (`module:*` for all of a module's),
or a check that answers for one name."""

_Context: TypeAlias = ForkServerContext | SpawnContext
_REAP_TIMEOUT_S = 5.0
_DIED_REPORT_TIMEOUT_S = 1.0
_FORKSERVER_STOP_TIMEOUT_S = 5.0


def is_declared(name: str, declared: Declared | None) -> bool:
    """Whether `name` (`module:function`) is among the `declared` ones; none is by default."""
    if declared is None:
        return False
    if callable(declared):
        return bool(declared(name))
    if isinstance(declared, str):
        declared = (declared,)
    module = name.partition(":")[0]
    return name in declared or f"{module}:*" in declared


class PythonRunner:
    """Runs `python` actions in `workers` worker processes.

    A callable runs only if declared: by `allowed` given to `run`, else by `allowed_callables`.
    """

    def __init__(
        self,
        workers: int,
        allowed_callables: Declared | None = None,
        *,
        start_method: Literal["forkserver", "spawn"] = "forkserver",
        action_user: ActionUser | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._allowed_callables = allowed_callables
        self._environment = with_owner_tag(child_environment(os.environ, {}), os.environ)
        # Workers become the action user, if any, before they run anything.
        self._identity = None if action_user is None else (action_user.uid, action_user.gid)
        if action_user is not None:
            self._environment["HOME"] = action_user.home
        self._context: _Context = (
            multiprocessing.get_context("spawn")
            if start_method == "spawn"
            else multiprocessing.get_context("forkserver")
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="reynolds-python-start")
        # Last in, first out: a lightly loaded runner keeps reusing its warmest worker.
        self._free: asyncio.LifoQueue[_Worker | None] = asyncio.LifoQueue()
        for _ in range(workers):
            self._free.put_nowait(None)
        self._live: set[_Worker] = set()
        self._reaping: set[asyncio.Task[None]] = set()
        self._started_any = False
        self._closed = False

    async def start(self) -> None:
        """Start every worker now rather than on first use."""
        slots = [self._free.get_nowait() for _ in range(self._free.qsize())]
        outcomes: list[_Worker | BaseException] = []
        try:
            outcomes = await asyncio.gather(
                *(self._ensure_alive(slot) for slot in slots), return_exceptions=True
            )
        finally:
            for index in range(len(slots)):
                outcome = outcomes[index] if index < len(outcomes) else None
                self._free.put_nowait(outcome if isinstance(outcome, _Worker) else None)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def run(
        self, action: PythonAction, ctx: ActionContext, *, allowed: Declared | None = None
    ) -> ActionResult:
        """Call `action.callable(**action.kwargs)` in a worker, if the pool declares it."""
        declared = allowed if allowed is not None else self._allowed_callables
        if not is_declared(action.callable, declared):
            return ActionResult(
                ok=False,
                reason="denied",
                error=f"python callable {action.callable!r} is not declared for this pool",
            )
        if self._closed:
            raise RuntimeError("this PythonRunner is closed")
        worker = await self._free.get()
        try:
            # A worker that died while idle may not be noticed before the call is sent: the
            # call never reached it, so it goes once more to a fresh worker.
            for last_try in (False, True):
                try:
                    worker = await self._ensure_alive(worker)
                except WorkerStartFailed as exc:
                    return ActionResult(ok=False, reason="error", error=str(exc))
                if ctx.on_spawn is not None:
                    ctx.on_spawn(worker.pid, worker.start_ticks)
                try:
                    return await self._call(worker, action, ctx)
                except _NotDelivered:
                    if last_try:
                        return _died(action.callable, await self._death(worker))
                    self._discard(worker)
            raise AssertionError("unreachable")
        except BaseException:
            # Cancellation included: whatever the worker was doing must stop now.
            if worker is not None:
                self._discard(worker)
            raise
        finally:
            self._free.put_nowait(worker if worker is not None and worker.alive else None)

    async def aclose(self) -> None:
        """Kill every worker and, when nothing else uses it, stop the forkserver."""
        self._closed = True
        for worker in list(self._live):
            self._discard(worker)
        if self._reaping:
            await asyncio.gather(*self._reaping, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        # The forkserver is shared by the whole process; stop it only once no child needs it.
        uses_forkserver = isinstance(self._context, ForkServerContext)
        if self._started_any and uses_forkserver and not multiprocessing.active_children():
            stop = asyncio.get_running_loop().run_in_executor(None, _stop_forkserver)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop, _FORKSERVER_STOP_TIMEOUT_S)

    async def _ensure_alive(self, worker: _Worker | None) -> _Worker:
        if worker is not None:
            if worker.alive:
                return worker
            self._discard(worker)
        if isinstance(self._context, ForkServerContext) and not self._started_any:
            # Preloaded once in the forkserver, so every worker starts with it imported.
            self._context.set_forkserver_preload(["__main__", _python_child.__name__])
        if not self._started_any:
            start_helpers_without_server_environment()
        self._started_any = True
        spawning = self._executor.submit(_spawn, self._context, self._environment, self._identity)
        try:
            process, conn, start_ticks = await asyncio.wrap_future(spawning)
        except asyncio.CancelledError:
            spawning.add_done_callback(_kill_if_spawned)
            raise
        except Exception as exc:
            raise WorkerStartFailed(f"could not start a python worker: {exc}") from exc
        started = _Worker(process, conn, start_ticks, asyncio.get_running_loop())
        self._live.add(started)
        if self._closed:
            self._discard(started)
            raise RuntimeError("this PythonRunner is closed")
        return started

    async def _call(
        self, worker: _Worker, action: PythonAction, ctx: ActionContext
    ) -> ActionResult:
        module, _, function = action.callable.partition(":")
        request = (module, function, dict(action.kwargs), ctx.output_cap_bytes)
        reply = worker.expect_reply()
        try:
            worker.conn.send_bytes(pickle.dumps(request, pickle.HIGHEST_PROTOCOL))
        except OSError as exc:
            worker.pending = None
            raise _NotDelivered from exc
        try:
            async with asyncio.timeout(ctx.timeout_s):
                payload = await reply
        except TimeoutError:
            self._discard(worker)
            return ActionResult(
                ok=False,
                reason="timeout",
                error=f"{action.callable} did not finish within {ctx.timeout_s:g} s; "
                "its worker was killed",
            )
        except WorkerDied:
            return _died(action.callable, await self._death(worker))
        finally:
            worker.pending = None
        return _to_result(payload) or self._garbled(worker, action.callable)

    def _garbled(self, worker: _Worker, name: str) -> ActionResult:
        self._discard(worker)
        return ActionResult(
            ok=False, reason="error", error=f"the worker running {name} sent an unreadable reply"
        )

    async def _death(self, worker: _Worker) -> str:
        """How `worker` died, as far as its exit status is known within a second."""
        reaped = self._discard(worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reaped), _DIED_REPORT_TIMEOUT_S)
        code = worker.exit_code
        if code is None:
            return "exit status unknown"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def _discard(self, worker: _Worker) -> asyncio.Task[None]:
        """Kill `worker` and reap it in the background; safe to call twice."""
        worker.kill()
        self._live.discard(worker)
        if worker.reaping is None:
            worker.reaping = asyncio.get_running_loop().create_task(self._reap(worker))
            self._reaping.add(worker.reaping)
            worker.reaping.add_done_callback(self._reaping.discard)
        return worker.reaping

    async def _reap(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.process.join, _REAP_TIMEOUT_S)
        worker.exit_code = worker.process.exitcode
        if worker.exit_code is not None:
            worker.process.close()


class WorkerDied(Exception):
    """The worker process ended while a call was waiting for it."""


class WorkerStartFailed(Exception):
    """A worker process could not be started."""


class _NotDelivered(Exception):
    """The call could not be sent: the worker was already gone."""


def _died(name: str, how: str) -> ActionResult:
    return ActionResult(
        ok=False,
        reason="worker_died",
        error=f"the worker running {name} died ({how}); it will be replaced",
    )


class _Worker:
    """One worker process, its pipe, and the call it is running."""

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection[bytes, bytes],
        start_ticks: int | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid or 0
        self.start_ticks = start_ticks
        self.loop = loop
        self.pending: asyncio.Future[bytes] | None = None
        self.alive = True
        self.killed = False
        self.exit_code: int | None = None
        self.reaping: asyncio.Task[None] | None = None
        loop.add_reader(conn.fileno(), self._on_readable)
        loop.add_reader(process.sentinel, self._on_exit)

    def expect_reply(self) -> asyncio.Future[bytes]:
        self.pending = self.loop.create_future()
        return self.pending

    def kill(self) -> None:
        """SIGKILL the worker's process group (the callable's children too) and close the pipe."""
        if self.killed:
            return
        self.killed = True
        was_alive = self.alive
        self._unwatch()
        # What the callable detached from the group (setsid, double forks) is still below the
        # worker, a child subreaper (see _python_child): it goes first, while the worker holds it.
        kill_descendants(self.pid, self.start_ticks)
        # The group outlives its leader while the callable's children remain, so the id is
        # still ours to signal even after the worker itself has died.
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        # Before the worker made its own group; skipped once reaped, as the pid may be reused.
        if was_alive and self.process.exitcode is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        self.conn.close()

    def _on_readable(self) -> None:
        try:
            payload = self.conn.recv_bytes()
        except (EOFError, OSError):
            self._lost()
            return
        if self.pending is not None and not self.pending.done():
            self.pending.set_result(payload)
        else:
            # Nobody asked: the worker no longer follows the protocol.
            self.kill()

    def _on_exit(self) -> None:
        self._lost()

    def _lost(self) -> None:
        self._unwatch()
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(WorkerDied())

    def _unwatch(self) -> None:
        if self.alive:
            self.alive = False
            self.loop.remove_reader(self.conn.fileno())
            self.loop.remove_reader(self.process.sentinel)


def _spawn(
    context: _Context, environment: Mapping[str, str], identity: tuple[int, int] | None
) -> tuple[BaseProcess, Connection[bytes, bytes], int | None]:
    """Start one worker (blocking: run it in a thread) and return it with its pipe."""
    ours, theirs = context.Pipe(duplex=True)
    process = context.Process(
        target=_python_child.serve,
        args=(theirs, dict(environment), identity),
        name="reynolds-python-worker",
        daemon=True,
    )
    try:
        process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        # The worker has its copy now; keeping ours would hide its death from us.
        theirs.close()
    return process, ours, _start_ticks(process.pid or 0)


def _kill_if_spawned(
    spawning: Future[tuple[BaseProcess, Connection[bytes, bytes], int | None]],
) -> None:
    if spawning.cancelled() or spawning.exception() is not None:
        return
    process, conn, _ = spawning.result()
    process.kill()
    conn.close()


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses; the fields after the last ")" cannot.
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


def _stop_forkserver() -> None:
    # Private, absent from the stubs: multiprocessing offers no public way to stop it.
    stop = getattr(forkserver._forkserver, "_stop", None)
    if callable(stop):
        stop()


_RESULT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "ok": bool,
    "exit_code": (int, type(None)),
    "output": str,
    "error": str,
    "output_bytes": int,
    "truncated": bool,
}


def _to_result(payload: bytes) -> ActionResult | None:
    """The worker's JSON reply as an `ActionResult`, or None when it is not one."""
    try:
        fields: Any = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.keys() != _RESULT_FIELDS.keys():
        return None
    if not all(isinstance(fields[name], kind) for name, kind in _RESULT_FIELDS.items()):
        return None
    return ActionResult(reason=None if fields["ok"] else "error", **fields)
