"""`shell` actions: an argv run in its own process group, never through a shell.

Output is captured up to a cap (the rest is counted, not kept); a timeout or a cancellation
kills the whole process group, grandchildren included; so does the main process exiting.
Processes that left the group (setsid, double-fork daemons) are found by the tag each action's
processes carry in their environment (see `tags.py`) and killed as well: at once at a timeout
or cancellation, or when they hold the action's output open after its main process exited;
otherwise by a sweep within about a second of the action's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import select
import shutil
import signal
import sys
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

from reynolds.adapters.actions.identity import ActionUser
from reynolds.adapters.actions.tags import TAG_NAME, ActionTags, kill_orphans
from reynolds.core.models import ShellAction
from reynolds.core.pools import ResourceLimits
from reynolds.services.ports import ActionContext, ActionResult

_KEEP_EXACT = ("PATH", "HOME", "LANG", "TMPDIR")
_KEEP_PREFIX = ("LC_", "PYENV_")


def child_environment(parent: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The contract's child environment: a few variables kept, then the step's own."""
    env = {k: v for k, v in parent.items() if k in _KEEP_EXACT or k.startswith(_KEEP_PREFIX)}
    env.update(extra)
    return env


def confined_cwd(workspace: str, cwd: str | None) -> str | None:
    """The real directory to run in, or None if it would leave the workspace."""
    root = _realpath(workspace)
    if not cwd:
        return root
    target = os.path.realpath(os.path.join(root, cwd))
    return target if os.path.commonpath([root, target]) == root else None


@functools.lru_cache(maxsize=64)
def _realpath(path: str) -> str:
    # The workspace is fixed for a server's life; resolving it once per spawn is waste.
    return os.path.realpath(path)


def process_identity(pid: int) -> tuple[int, int, float] | None:
    """(session id, start time in clock ticks, start time as epoch seconds) of a live process.

    Read when a restarted server decides whether a recorded pid is still the process it
    started; never on the spawn path, where /proc of a process mid-exec is slow to read.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) <= 19 or fields[0] == b"Z":
        return None
    ticks = int(fields[19])
    return int(fields[3]), ticks, _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


@functools.lru_cache(maxsize=1)
def _boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0


def is_our_orphan(pid: int, start_ticks: int | None, started_at: float | None) -> bool:
    """Whether `pid` is still the process a subtask started (and not a reused pid).

    With the start time recorded, it must match exactly; otherwise the process must lead its
    own session (as every shell action does) and have started within 2 s of the subtask.
    """
    ident = process_identity(pid)
    if ident is None:
        return False
    sid, ticks, started_epoch = ident
    if start_ticks is not None:
        return ticks == start_ticks
    return sid == pid and started_at is not None and abs(started_epoch - started_at) < 2.0


def apply_limits(pid: int, limits: ResourceLimits) -> None:
    """Set a spawned child's limits from outside (prlimit), keeping posix_spawn's vfork path:
    a preexec_fn would force a full fork per spawn."""
    infinity = resource.RLIM_INFINITY
    if limits.memory_soft is not None or limits.memory_hard is not None:
        hard = limits.memory_hard if limits.memory_hard is not None else infinity
        soft = limits.memory_soft if limits.memory_soft is not None else hard
        resource.prlimit(
            pid, resource.RLIMIT_AS, (min(soft, hard) if hard != infinity else soft, hard)
        )
    if limits.cpu_seconds is not None:
        # SIGXCPU at the soft limit, SIGKILL a second later at the hard one.
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    if limits.open_files is not None:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Output:
    """A process's stdout and stderr, each kept up to a cap and counted in full."""

    __slots__ = ("_cap", "err", "err_total", "out", "out_total")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self.out = bytearray()
        self.err = bytearray()
        self.out_total = 0
        self.err_total = 0

    def add(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.out_total += len(data)
            if len(self.out) < self._cap:
                self.out += data[: self._cap - len(self.out)]
        else:
            self.err_total += len(data)
            if len(self.err) < self._cap:
                self.err += data[: self._cap - len(self.err)]


class _Capture(_Output, asyncio.SubprocessProtocol):
    __slots__ = ("_done", "_exited", "_open", "_transport", "on_held")

    def __init__(self, cap: int, done: asyncio.Future[None]) -> None:
        super().__init__(cap)
        self._done = done
        self._open = 2
        self._exited = False
        self._transport: asyncio.BaseTransport | None = None
        self.on_held: Callable[[], None] | None = None

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.add(fd, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open -= 1
        self._settle()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def process_exited(self) -> None:
        # What the main process left running in its group goes with it (and so do the
        # pipes those processes held open). The group id stays reserved while members live.
        if isinstance(self._transport, asyncio.SubprocessTransport):
            kill_group(self._transport.get_pid())
        self._exited = True
        if self._open > 0 and self.on_held is not None and _held(self._pipe_fds()):
            self.on_held()
        self._settle()

    def _pipe_fds(self) -> list[int]:
        if not isinstance(self._transport, asyncio.SubprocessTransport):
            return []
        pipes = (self._transport.get_pipe_transport(fd) for fd in (1, 2))
        files = (pipe.get_extra_info("pipe") for pipe in pipes if pipe is not None)
        return [file.fileno() for file in files if file is not None and not file.closed]

    def stop_reading(self) -> None:
        """Out of time: stop waiting for the output; done once the main process is reaped."""
        if isinstance(self._transport, asyncio.SubprocessTransport):
            for fd in (1, 2):
                pipe = self._transport.get_pipe_transport(fd)
                if pipe is not None:
                    pipe.close()
        self._open = 0
        self._settle()

    def _settle(self) -> None:
        if self._exited and self._open <= 0 and not self._done.done():
            self._done.set_result(None)


_RESOLVED: dict[tuple[str, str], str] = {}


def _resolve(name: str, path: str) -> str:
    """The executable's path, looked up on PATH once rather than at every spawn (an exec per
    PATH entry until one succeeds). A stale entry is dropped when spawning it fails."""
    if "/" in name:
        return name
    key = (name, path)
    found = _RESOLVED.get(key)
    if found is None:
        found = shutil.which(name, path=path)
        if found is None:
            raise FileNotFoundError(name)
        _RESOLVED[key] = found
    return found


class _Direct(_Output):
    """posix_spawn (vfork + exec in glibc) with a pidfd and non-blocking pipes on the loop.

    The lean path: a fraction of the Python work of `loop.subprocess_exec`, which matters
    when subtasks are short. It cannot change directory, so it serves the workspace root.
    """

    __slots__ = ("_done", "_fds", "_loop", "_open", "_pidfd", "on_held", "pid", "returncode")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, cap: int, done: asyncio.Future[None]
    ) -> None:
        super().__init__(cap)
        self._loop = loop
        self._done = done
        self._open = 2
        self.pid = 0
        self._pidfd = -1
        self.returncode: int | None = None
        self._fds: list[int] = []
        self.on_held: Callable[[], None] | None = None

    def start(self, args: list[str], env: Mapping[str, str]) -> None:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = os.posix_spawn(
                _resolve(args[0], env.get("PATH", os.defpath)),
                args,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,
            )
        except BaseException:
            _RESOLVED.pop((args[0], env.get("PATH", os.defpath)), None)
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        self._fds = [out_r, err_r]
        self._pidfd = os.pidfd_open(self.pid)
        self._loop.add_reader(out_r, self._read, out_r, 1)
        self._loop.add_reader(err_r, self._read, err_r, 2)
        self._loop.add_reader(self._pidfd, self._exited)

    def _read(self, fd: int, which: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(fd)
            os.close(fd)
            self._fds.remove(fd)
            self._open -= 1
            self._settle()
        else:
            self.add(which, data)

    def _exited(self) -> None:
        # Kill what the main process left in its group before reaping it, so the group id
        # cannot have been reused; the survivors' exits also close the pipes.
        kill_group(self.pid)
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        if self._open > 0 and self.on_held is not None and _held(self._fds):
            self.on_held()
        self._settle()

    def _settle(self) -> None:
        if self.returncode is not None and self._open <= 0 and not self._done.done():
            self._done.set_result(None)

    def abandon(self) -> None:
        """Cancelled: kill the group, stop reading, and still reap the process when it dies."""
        kill_group(self.pid)
        self.stop_reading()

    def stop_reading(self) -> None:
        """Out of time: stop waiting for the output; done once the main process is reaped."""
        for fd in self._fds:
            self._loop.remove_reader(fd)
            os.close(fd)
        self._fds = []
        self._open = 0
        self._settle()


def _held(fds: list[int]) -> bool:
    """Whether some process still holds the write end of one of these pipes. Checked when the
    main process has exited, its group killed: its own ends are closed by then (a process's
    files close before its exit is reported), so a holder is one that left the group, or a
    group member not yet dead; either way, a sweep of the action's tag is due."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    hung_up = {fd for fd, events in poller.poll(0) if events & (select.POLLHUP | select.POLLERR)}
    return any(fd not in hung_up for fd in fds)


def _text(buf: bytearray, total: int) -> str:
    text = buf.decode("utf-8", "replace")
    if total > len(buf):
        text += f"\n… [output truncated: {total} bytes in all, {len(buf)} kept]"
    return text


class ShellRunner:
    """Runs `ShellAction`s as process groups with captured, capped output; every process of
    an action carries its tag (see `tags.py`), so that none outlives the action."""

    def __init__(
        self,
        parent_env: Mapping[str, str] | None = None,
        tags: ActionTags | None = None,
        *,
        action_user: ActionUser | None = None,
    ) -> None:
        self._parent_env = dict(os.environ if parent_env is None else parent_env)
        # Actions of another user start as it, with its home, off the vfork path (posix_spawn
        # cannot switch users); without one nothing changes.
        self._switch = action_user.spawn_options() if action_user is not None else {}
        if action_user is not None:
            self._parent_env["HOME"] = action_user.home
        self._base_env = child_environment(self._parent_env, {})
        # posix_spawn starts children in the server's own directory (it cannot chdir).
        self._own_cwd = os.path.realpath(os.getcwd())
        self._tags = tags if tags is not None else ActionTags()

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
        args = argv if argv is not None else list(action.argv)
        if executables and not _permitted(args[0], executables):
            return ActionResult(
                ok=False,
                reason="denied",
                error=f"executable {args[0]!r} is not in this pool's executables list",
            )
        cwd = confined_cwd(ctx.workspace, action.cwd)
        if cwd is None:
            return ActionResult(
                ok=False, reason="denied", error=f"cwd {action.cwd!r} is outside the workspace"
            )
        given = {**action.env, **secret_env} if secret_env else action.env
        env = child_environment(self._parent_env, given) if given else self._base_env
        tag = self._tags.begin()
        try:
            # Last, so that a step's own env cannot change them.
            ours = {
                "REYNOLDS_TASK_ID": ctx.task_id,
                "REYNOLDS_SUBTASK_ID": ctx.subtask_id,
                TAG_NAME: tag,
            }
            return await self._run(action, ctx, args, cwd, {**env, **ours}, limits, tag)
        finally:
            self._tags.end(tag)

    async def _run(
        self,
        action: ShellAction,
        ctx: ActionContext,
        args: list[str],
        cwd: str,
        env: Mapping[str, str],
        limits: ResourceLimits | None,
        tag: str,
    ) -> ActionResult:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        try:
            proc, pid, close, reap = await self._spawn(loop, done, ctx, args, cwd, env)
        except OSError as exc:
            return _spawn_failure(exc, args[0], cwd, action.cwd)
        if limits is not None and limits.any:
            refused = await self._limit(pid, limits, done, close, tag)
            if refused is not None:
                return refused
        if ctx.on_spawn is not None:
            ctx.on_spawn(pid, None)
        sweeps: list[asyncio.Task[int]] = []
        # The main process has exited but something still holds its output: what escaped the
        # group goes now, so that the action ends with its main process, not the escapee.
        proc.on_held = lambda: sweeps.append(loop.create_task(self._tags.kill(tag)))
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            kill_group(pid)
            # Whoever still holds the output does not get to keep the action (and its slot).
            proc.stop_reading()

        timer = loop.call_later(ctx.timeout_s, expire)
        try:
            await done
        except asyncio.CancelledError:
            close()
            await _uninterrupted(self._tags.kill(tag))
            raise
        finally:
            timer.cancel()
        if timed_out:
            await self._tags.kill(tag)
        if sweeps:
            await asyncio.gather(*sweeps)
        return _ended(proc, reap(), timed_out, ctx.timeout_s, cwd, action.cwd)

    async def _spawn(
        self,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        ctx: ActionContext,
        args: list[str],
        cwd: str,
        env: Mapping[str, str],
    ) -> tuple[_Direct | _Capture, int, Callable[[], None], Callable[[], int | None]]:
        """The started process (OSError if it could not be), its pid, how to abandon it, and
        how to take its exit code once it has ended: posix_spawn directly when it runs where
        the server does as the server's user, asyncio's subprocess otherwise."""
        if cwd == self._own_cwd and not self._switch:
            direct = _Direct(loop, ctx.output_cap_bytes, done)
            direct.start(args, env)
            return direct, direct.pid, direct.abandon, lambda: direct.returncode
        transport, captured = await loop.subprocess_exec(
            lambda: _Capture(ctx.output_cap_bytes, done),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **self._switch,
        )

        def reap() -> int | None:
            code = transport.get_returncode()
            transport.close()
            return code

        return captured, transport.get_pid(), transport.close, reap

    async def _limit(
        self,
        pid: int,
        limits: ResourceLimits,
        done: asyncio.Future[None],
        close: Callable[[], None],
        tag: str,
    ) -> ActionResult | None:
        """Apply the pool's resource limits to the started process; when they cannot be, the
        action is stopped and refused (never run without the limits its pool asked for)."""
        try:
            apply_limits(pid, limits)
        except ProcessLookupError:
            pass  # it has already exited: there is nothing left to limit
        except (OSError, ValueError) as exc:
            kill_group(pid)
            with contextlib.suppress(asyncio.CancelledError):
                await done
            close()
            await self._tags.kill(tag)
            return ActionResult(
                ok=False, reason="denied", error=f"could not apply resource limits: {exc}"
            )
        return None

    def kill_orphans(self) -> int:
        """Kill what the actions of a dead server or worker left behind (blocking: /proc)."""
        return kill_orphans()

    async def aclose(self) -> None:
        """Stop the sweeper; nothing started by this runner survives it."""
        await self._tags.aclose()


async def _uninterrupted(kill: Coroutine[Any, Any, int]) -> None:
    """Await `kill` from a task being cancelled: a second cancellation must not stop it."""
    task = asyncio.ensure_future(kill)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)


def _ended(
    proc: _Direct | _Capture,
    code: int | None,
    timed_out: bool,
    timeout_s: float,
    cwd: str,
    asked_cwd: str | None,
) -> ActionResult:
    """The result of a process that has ended (or was stopped at its timeout)."""
    output = _text(proc.out, proc.out_total)
    error = _text(proc.err, proc.err_total)
    truncated = proc.out_total > len(proc.out) or proc.err_total > len(proc.err)
    if timed_out:
        return ActionResult(
            ok=False,
            exit_code=code,
            output=output,
            error=(error + f"\ntimed out after {timeout_s:g} s").lstrip("\n"),
            reason="timeout",
            output_bytes=proc.out_total,
            truncated=truncated,
        )
    if code != 0 and _gone(cwd):
        # posix_spawn cannot tell: the server's own directory was removed under it.
        missing = _missing_directory(cwd, asked_cwd)
        missing.exit_code, missing.output = code, output
        missing.error = f"{missing.error}\n{error}".rstrip("\n")
        return missing
    return ActionResult(
        ok=code == 0,
        exit_code=code,
        output=output,
        error=error,
        reason=None if code == 0 else ("signal" if code is not None and code < 0 else "exit"),
        output_bytes=proc.out_total,
        truncated=truncated,
    )


def _spawn_failure(exc: OSError, executable: str, cwd: str, asked: str | None) -> ActionResult:
    """Why the spawn failed, naming the directory when it is the directory that is missing
    (subprocess reports a failed chdir as the error of the directory, not of the command)."""
    if exc.filename == cwd and isinstance(exc, FileNotFoundError | NotADirectoryError):
        return _missing_directory(cwd, asked)
    if isinstance(exc, FileNotFoundError):
        return ActionResult(
            ok=False, exit_code=127, reason="not_found", error=f"{executable}: command not found"
        )
    return ActionResult(ok=False, exit_code=126, reason="spawn_failed", error=str(exc))


def _gone(directory: str) -> bool:
    # Asked only after a failure, never on the spawn path.
    return not os.path.isdir(directory)


def _missing_directory(cwd: str, asked: str | None) -> ActionResult:
    what = f"cwd {asked!r}: " if asked else "the workspace: "
    return ActionResult(ok=False, reason="not_found", error=f"{what}directory {cwd} does not exist")


def _permitted(executable: str, allowed: Collection[str]) -> bool:
    """A bare name must be listed by name; a path must be listed as that exact path."""
    return executable in allowed


def install_child_watcher() -> None:
    """Python 3.11 watches children with a thread each; pidfd is cheaper (3.12's default)."""
    if sys.version_info >= (3, 12) or not isinstance(
        asyncio.get_running_loop(), asyncio.BaseEventLoop
    ):
        return  # 3.12 uses pidfd already; other loops (uvloop) watch children themselves
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
