"""Running the server: `serve` in the foreground, `start`/`stop` in the background, `logs`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.markup import escape

from reynolds.adapters.private_dirs import is_reynolds_home, make_private
from reynolds.entrypoints import secret_env
from reynolds.entrypoints.cli.client import ClientError, ReynoldsClient
from reynolds.entrypoints.cli.state import CliState, state
from reynolds.errors import AlreadyRunning, ReynoldsError, StoreError
from reynolds.settings import Settings

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
KILL_TIMEOUT_S = 5.0
POLL_S = 0.2
LOG_TAIL_LINES = 30
# A failed start's reason is looked for this far into its part of the log.
LOG_SCAN_BYTES = 1 << 20
ERROR_PREFIX = "error:"
# What the background server prints (a reason it cannot start, a crash); its log lines are in
# logs/server.log.
CONSOLE_LOG = "server.out"
ENDPOINTS = ("/health", "/status", "/metrics", "/mcp/tools", "/tasks", "/mcp")


def serve(ctx: typer.Context) -> None:
    """Run the server in the foreground (what `start` launches in the background)."""
    st = state(ctx)
    settings = st.settings
    # Imported here so that client commands never pay for the server stack.
    from reynolds.entrypoints.http.server import serve as run_server

    try:
        run_server(settings)
    except AlreadyRunning as exc:
        st.err.print(f"[red]error:[/] Reynolds is already running for {settings.home}: {exc}")
        raise typer.Exit(1) from None
    except ReynoldsError as exc:
        # One line, however long (a bad configuration, a damaged store, a port in use...):
        # `start` finds it in the log and shows it.
        st.err.print(f"[red]{ERROR_PREFIX}[/] {escape(exc.message)}", soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def start(
    ctx: typer.Context,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            help="Use PostgreSQL and Redis from the configuration; check that PostgreSQL "
            "answers and migrate it before starting.",
        ),
    ] = False,
) -> None:
    """Start the server in the background and wait until it is healthy."""
    st = state(ctx)
    settings = st.settings
    if production:
        _check_production(st, settings)
    _prepare_home(st, settings)
    log_path = settings.log_dir / CONSOLE_LOG
    launched_at: int | None = None  # where this start's lines begin in the log
    with st.connect(timeout_s=2.0) as client:
        if _healthy(client):
            st.out.print(f"Reynolds is already running at {settings.base_url}")
            _print_endpoints(st, settings)
            return
        pid = read_pid(settings.pid_file)
        alive: Callable[[], bool]
        if pid is not None and process_alive(pid):
            st.out.print(f"Reynolds (pid {pid}) is starting or unhealthy; waiting for it")
            alive = partial(process_alive, pid)
        else:
            if pid is not None:
                settings.pid_file.unlink(missing_ok=True)
                st.out.print(
                    f"Removed a stale pid file ({settings.pid_file}: process {pid} is gone)"
                )
            if production:
                _migrate(st, settings)
            proc, launched_at = _launch(settings)
            st.out.print(f"Starting Reynolds (pid {proc.pid}) at {settings.base_url}")
            alive = partial(_running, proc)
        problem = _wait_healthy(client, alive)
    if problem:
        why = _server_error(log_path, launched_at) if launched_at is not None else None
        if why is not None:
            st.err.print(f"[red]{ERROR_PREFIX}[/] {escape(why)}")
        else:
            st.err.print(f"[red]error:[/] {problem}")
            _print_log_tail(st, log_path, launched_at or 0)
        raise typer.Exit(1)
    st.out.print(f"Reynolds is running at {settings.base_url}")
    _print_endpoints(st, settings)


def stop(
    ctx: typer.Context,
    production: Annotated[
        bool,
        typer.Option(
            "--production", help="Stop the production server: the same process, so the same stop."
        ),
    ] = False,
) -> None:
    """Stop the server (started with or without --production): SIGTERM, then SIGKILL of its
    process group after 20 s."""
    del production  # the same server process in either mode
    st = state(ctx)
    pid_file = st.settings.pid_file
    pid = read_pid(pid_file)
    if pid is None:
        st.out.print(f"Reynolds is not running (no pid file in {st.settings.home})")
        return
    if not process_alive(pid):
        pid_file.unlink(missing_ok=True)
        st.out.print(f"Reynolds is not running; removed a stale pid file (process {pid} is gone)")
        return
    st.out.print(f"Stopping Reynolds (pid {pid})")
    try:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT_S):
            st.err.print(f"Reynolds (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f} s; killing it")
            _kill_group(pid)
            _wait_gone(pid, KILL_TIMEOUT_S)
            _kill_orphans(st)
    except ProcessLookupError:
        pass
    except PermissionError:
        st.err.print(f"[red]error:[/] not allowed to signal process {pid}")
        raise typer.Exit(1) from None
    if read_pid(pid_file) == pid:
        pid_file.unlink(missing_ok=True)
    st.out.print("Reynolds stopped")


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, or None when there is none (or it holds no number)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def tail_lines(path: Path, count: int, block_size: int = 64 * 1024) -> list[str]:
    """The last `count` lines of a file, reading only as much of its end as needed."""
    if count <= 0:
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            position = max(0, position - block_size)
            handle.seek(position)
            data = handle.read(end - position)
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    tail = lines[-count:]
    if tail and not tail[-1].endswith("\n"):
        tail[-1] += "\n"
    return tail


def _check_production(st: CliState, settings: Settings) -> None:
    st.out.print(
        "Production mode needs REYNOLDS_DATABASE_URL (postgresql+psycopg://…) and "
        "REYNOLDS_REDIS_URL (redis://…) in the environment or config/reynolds.env"
    )
    if not (settings.database_url or "").startswith("postgresql"):
        st.err.print("[red]error:[/] REYNOLDS_DATABASE_URL is not a postgresql URL")
        raise typer.Exit(2)
    if not settings.redis_url:
        st.err.print("[yellow]warning:[/] REYNOLDS_REDIS_URL is unset; the cache stays in-process")
    # Imported here so that client commands never pay for the store stack.
    from reynolds.adapters.store.connect import display_url, ping

    url = settings.effective_database_url
    try:
        ping(url)
    except StoreError as exc:
        st.err.print(f"[red]error:[/] PostgreSQL: {escape(exc.message)}")
        st.err.print("Is it running? Check REYNOLDS_DATABASE_URL and secrets/db_password.txt")
        raise typer.Exit(1) from None
    st.out.print(f"PostgreSQL answers at {escape(display_url(url))}")


def _migrate(st: CliState, settings: Settings) -> None:
    """Migrate before launching, so a schema problem is reported here rather than in the log;
    but first check that the database holds the store this home had (or none yet), which a
    migration would otherwise recreate empty."""
    from reynolds.adapters.store.connect import migrate
    from reynolds.adapters.store.integrity import StoreMarker, check_before_start

    url = settings.effective_database_url
    try:
        check_before_start(url, StoreMarker(settings.home))
        revision = migrate(url)
    except StoreError as exc:
        st.err.print(f"[red]error:[/] {escape(exc.message)}")
        raise typer.Exit(1) from None
    st.out.print(f"Database schema is at revision {revision}")


def _prepare_home(st: CliState, settings: Settings) -> None:
    from reynolds.adapters.home import prepare_home

    try:
        ours = is_reynolds_home(settings.home)
        prepare_home(settings.home, settings.log_dir)
        if ours:
            make_private(settings.home)
    except StoreError as exc:
        st.err.print(f"[red]{ERROR_PREFIX}[/] {escape(exc.message)}")
        raise typer.Exit(1) from None


def _launch(settings: Settings) -> tuple[subprocess.Popen[bytes], int]:
    """The server, started in the background; and where its lines begin in the log."""
    log_path = settings.log_dir / CONSOLE_LOG
    # The server gets the secrets this process holds through a pipe, not its environment.
    env, secrets_fd = secret_env.launch_environment(
        {
            **os.environ,
            "REYNOLDS_HOME": str(settings.home),
            "REYNOLDS_HOST": settings.host,
            "REYNOLDS_PORT": str(settings.port),
            "PYTHONUNBUFFERED": "1",
            # Its log lines go to logs/server.log alone; what it prints (a reason it cannot
            # start, a crash) to logs/server.out.
            "REYNOLDS_LOG_CONSOLE": "false",
        }
    )
    try:
        with _private_log(log_path) as log:
            log.write(f"--- reynolds start at {datetime.now(UTC).isoformat()} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "reynolds", "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                pass_fds=() if secrets_fd is None else (secrets_fd,),
            )
            return proc, log.tell()
    finally:
        if secrets_fd is not None:
            os.close(secrets_fd)


def _private_log(path: Path) -> BinaryIO:
    """The server's log, opened for appending and readable by its owner alone."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _healthy(client: ReynoldsClient) -> bool:
    try:
        return client.health().healthy
    except ClientError:
        return False


def _wait_healthy(client: ReynoldsClient, alive: Callable[[], bool]) -> str | None:
    """None once `/health` is healthy; otherwise why not (the process died, or time ran out)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if _healthy(client):
            return None
        if not alive():
            return "the server exited before it became healthy"
        if time.monotonic() >= deadline:
            return (
                f"the server was not healthy within {START_TIMEOUT_S:.0f} s "
                "(it may still be starting; stop it with: reynolds stop)"
            )
        time.sleep(POLL_S)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _kill_group(pid: int) -> None:
    # The server leads its own session (start_new_session), so its group is its own and its
    # children's; any other process gets only itself killed.
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    if group == pid:
        os.killpg(group, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)


def _kill_orphans(st: CliState) -> None:
    # Killed, the server could not end its actions: what escaped their process groups is
    # found by the tag it carries (see adapters/actions/tags.py).
    from reynolds.adapters.actions.tags import kill_orphans

    killed = kill_orphans()
    if killed:
        st.out.print(f"Killed {killed} process(es) its actions left running")


def _print_endpoints(st: CliState, settings: Settings) -> None:
    base = settings.base_url
    st.out.print(f"  base URL   {base}")
    for path in ENDPOINTS:
        st.out.print(f"  {path:<10} {base}{path}")


def _written_since(path: Path, offset: int) -> str:
    """What the log holds from `offset` on (its last LOG_SCAN_BYTES at most)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - LOG_SCAN_BYTES))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _server_error(path: Path, offset: int) -> str | None:
    """The one-line reason (`error: ...`) a server that did not start wrote to its log since
    `offset`, if it wrote one."""
    lines = _written_since(path, offset).splitlines()
    reasons = [line for line in lines if line.startswith(ERROR_PREFIX)]
    return reasons[-1].removeprefix(ERROR_PREFIX).strip() if reasons else None


def _print_log_tail(st: CliState, path: Path, offset: int) -> None:
    """The last lines of the log from `offset` on (this start's, when it launched one)."""
    lines = _written_since(path, offset).splitlines(keepends=True)[-LOG_TAIL_LINES:]
    if not lines:
        return
    if not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    st.err.print(f"Last lines of {path}:")
    sys.stderr.writelines(lines)
    sys.stderr.flush()
