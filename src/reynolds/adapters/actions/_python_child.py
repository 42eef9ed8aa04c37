"""What runs inside a python-action worker process: receive a call, run it, send the outcome.

Standard library only, so the forkserver preloads it cheaply. A request is the pickled tuple
`(module, function, kwargs, output_cap_bytes)`; a reply is a JSON object with the fields of
`ActionResult` that the worker knows: ok, exit_code, output, error, output_bytes, truncated.
Replies are JSON so that the server never unpickles what a callable could have written.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import inspect
import io
import json
import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import traceback
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_WATCH_INTERVAL_MS = 500
_KILL_ROUNDS = 100


def serve(
    conn: Connection[bytes, bytes],
    environment: dict[str, str] | None = None,
    identity: tuple[int, int] | None = None,
) -> None:
    """Answer calls on `conn` until it closes; never outlive the server. Callables see
    `environment` instead of what the worker inherited, and run as `identity` (uid, gid)."""
    if environment is not None:
        adopt_environment(environment)
    if identity is not None:
        leave_server_output()
        become(*identity)
    # After `become`: a change of user clears the parent-death signal set here.
    _detach_from_server()
    _start_watchdog(conn.fileno())
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        # Requests come only from the server that started this worker.
        module, function, kwargs, cap_bytes = pickle.loads(request)  # noqa: S301
        reply = call(module, function, kwargs, cap_bytes)
        kill_leftovers()
        conn.send_bytes(json.dumps(reply).encode())


def call(module: str, function: str, kwargs: dict[str, Any], cap_bytes: int) -> dict[str, Any]:
    """Import `module`, call `function(**kwargs)` and describe how it went."""
    stdout, stderr = CappedText(cap_bytes), CappedText(cap_bytes)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            target = getattr(importlib.import_module(module), function)
            value = target(**kwargs)
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
    # A callable's sys.exit() or KeyboardInterrupt is its failure, not the worker's.
    except BaseException:
        output, output_bytes, out_cut = stdout.text(), stdout.total_bytes, stdout.truncated
        error, _, err_cut = _prefer_last(traceback.format_exc(), stderr, cap_bytes)
        return {
            "ok": False,
            "exit_code": 1,
            "output": mark_truncated(output, cap_bytes, output_bytes) if out_cut else output,
            "error": error,
            "output_bytes": output_bytes,
            "truncated": out_cut or err_cut,
        }
    output, output_bytes, cut = _prefer_last(_describe(value), stdout, cap_bytes)
    error = stderr.text()
    if stderr.truncated:
        error = mark_truncated(error, cap_bytes, stderr.total_bytes)
    return {
        "ok": True,
        "exit_code": 0,
        "output": output,
        "error": error,
        "output_bytes": output_bytes,
        "truncated": cut or stderr.truncated,
    }


class CappedText(io.TextIOBase):
    """A text sink that keeps the first `cap_bytes` bytes (UTF-8) and counts the rest."""

    def __init__(self, cap_bytes: int) -> None:
        super().__init__()
        self._cap_bytes = cap_bytes
        self._kept = bytearray()
        self.total_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        self.total_bytes += len(data)
        room = self._cap_bytes - len(self._kept)
        if room > 0:
            self._kept += data[:room]
        return len(text)

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self._kept)

    def text(self) -> str:
        return bytes(self._kept).decode("utf-8", "ignore")


def cap_text(text: str, cap_bytes: int) -> tuple[str, int, bool]:
    """`text` cut to `cap_bytes` UTF-8 bytes: (kept text, full size in bytes, was cut)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= cap_bytes:
        return text, len(data), False
    return data[:cap_bytes].decode("utf-8", "ignore"), len(data), True


def mark_truncated(text: str, cap_bytes: int, total_bytes: int) -> str:
    """`text` with the trailing note every capped output carries."""
    return f"{text}\n[truncated: showing the first {cap_bytes} of {total_bytes} bytes]"


def _prefer_last(last: str, before: CappedText, cap_bytes: int) -> tuple[str, int, bool]:
    """`before`'s text followed by `last`, capped so that `last` keeps its room first.

    The returned value (or the traceback) matters more than what was printed before it.
    """
    last_kept, last_bytes, last_cut = cap_text(last, cap_bytes)
    room = cap_bytes - len(last_kept.encode("utf-8"))
    head = before.text()
    sep = "\n" if head and not head.endswith("\n") else ""
    head_kept, _, head_cut = cap_text(head + sep, max(room, 0))
    total = before.total_bytes + len(sep) + last_bytes
    cut = last_cut or head_cut or before.truncated
    text = head_kept + last_kept
    return (mark_truncated(text, cap_bytes, total) if cut else text), total, cut


def _describe(value: Any) -> str:
    """JSON when the value has a JSON form, else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        pass
    try:
        return repr(value)
    except Exception:
        return object.__repr__(value)


def adopt_environment(environment: dict[str, str]) -> None:
    """Replace the inherited environment (the C one too, for the callables' children)."""
    os.environ.clear()
    os.environ.update(environment)


def leave_server_output() -> None:
    """Stdout and stderr to /dev/null: they are the server's log (or terminal), which another
    user could otherwise append to, or read again through /proc/self/fd."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    finally:
        os.close(devnull)


def become(uid: int, gid: int) -> None:
    """Switch to another user for good (real, effective and saved ids), without the server's
    supplementary groups, before anything user-chosen is imported."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise PermissionError(f"could not become uid {uid}, gid {gid}")


def _detach_from_server() -> None:
    # Its own process group, so that the server can kill the callable's children with it.
    os.setpgid(0, 0)
    # Started as a daemon so the server never waits for it at exit; a callable may still start
    # processes of its own.
    multiprocessing.current_process().daemon = False
    # Every forkserver child inherits the write end of the forkserver's "alive" pipe. Closing
    # ours lets the forkserver exit as soon as the server dies, and PDEATHSIG then takes us too.
    # The attribute is private and absent from the stubs, hence getattr and the ignore.
    inherited = forkserver._forkserver
    alive_fd = getattr(inherited, "_forkserver_alive_fd", None)
    if isinstance(alive_fd, int):
        os.close(alive_fd)
        inherited._forkserver_alive_fd = None  # type: ignore[attr-defined]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # Processes a callable detaches (setsid, double fork) become this worker's children
        # rather than init's, so that they can be found and killed with it.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_leftovers() -> None:
    """Kill and reap every process a call left, however it detached: as a child subreaper,
    this worker adopts whatever was below it once its parent dies, so killing the children
    round after round reaches every descendant. A call's processes end with the call, as a
    shell action's end with its main process."""
    for _ in range(_KILL_ROUNDS):
        try:
            # One syscall in the common case: no child at all.
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        children = _children()
        for pid in children:
            # Our own unreaped children: their pids cannot have been reused.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if not children:
            return


def _children() -> list[int]:
    """This process's children, zombies included (every thread's)."""
    found: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as fh:
                found.extend(int(pid) for pid in fh.read().split())
        except FileNotFoundError:
            return _children_by_scan()  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return found


def _children_by_scan() -> list[int]:
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == me:
                found.append(int(name))
    return found


def _start_watchdog(conn_fd: int) -> None:
    parent = multiprocessing.parent_process()
    server_pid = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    parent_fd = parent.sentinel if parent is not None else None
    thread = threading.Thread(
        target=_watch,
        args=(conn_fd, parent_fd, server_pid, os.getppid()),
        name="reynolds-worker-watchdog",
        daemon=True,
    )
    thread.start()


def _watch(conn_fd: int, parent_fd: int | None, server_pid: int, first_ppid: int) -> None:
    """Kill this worker's process group once the server is gone, even mid-call."""
    poller = select.poll()
    # The server sends nothing while a call runs, so only a hang-up can show on the connection.
    poller.register(conn_fd, select.POLLRDHUP)
    if parent_fd is not None:
        poller.register(parent_fd, select.POLLIN)
    while (
        not poller.poll(_WATCH_INTERVAL_MS) and os.getppid() == first_ppid and _exists(server_pid)
    ):
        pass
    kill_leftovers()
    # Only ever our own group: never the server's, should the worker not have made its own.
    if os.getpgrp() == os.getpid():
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
