"""What the benchmarks share: the server (running or spawned), timing, baselines and output.

A benchmark talks to the server at `REYNOLDS_URL` (default http://127.0.0.1:8080, bearer token
from `REYNOLDS_API_TOKEN`), or with `--spawn` starts its own with `python -m reynolds start`
in a temporary `REYNOLDS_HOME` on a free port, and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "http://127.0.0.1:8080"
HEALTH_TIMEOUT_S = 60.0
CLIENT_SLACK_S = 60.0  # beyond the task's own timeoutSeconds


class BenchmarkError(Exception):
    """The benchmark could not run: no server, a refused request, a failed task."""


def parser(description: str, *, repeat: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--spawn", action="store_true", help="start a private server for the run")
    p.add_argument("--url", default=os.environ.get("REYNOLDS_URL", DEFAULT_URL))
    p.add_argument("--json", action="store_true", help="print machine-readable results only")
    p.add_argument("--repeat", type=int, default=repeat, help=f"runs (default {repeat})")
    return p


@dataclass
class Server:
    """A server to talk to: its base URL and the token to present."""

    url: str
    token: str | None
    # A private server's environment (with --spawn), for processes that join it.
    env: dict[str, str] | None = None

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(server: Server, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Return once `GET /health` says healthy; BenchmarkError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with server.client() as client:
        while time.monotonic() < deadline:
            try:
                response = client.get("/health", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    raise BenchmarkError(
        f"the server at {server.url} is not healthy after {timeout_s:.0f} s: {last}"
    )


@contextlib.contextmanager
def server_for(
    args: argparse.Namespace, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """The server named by the options: the running one, or a private one with --spawn
    (its environment with `extra_env` added)."""
    if not args.spawn:
        server = Server(args.url.rstrip("/"), os.environ.get("REYNOLDS_API_TOKEN") or None)
        wait_healthy(server, timeout_s=5.0)
        yield server
        return
    home = Path(tempfile.mkdtemp(prefix="reynolds-bench-"))
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "REYNOLDS_HOME": str(home),
        "REYNOLDS_HOST": "127.0.0.1",
        "REYNOLDS_PORT": str(port),
        "REYNOLDS_API_TOKEN": token,
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "reynolds"]
    started = subprocess.run(
        [*command, "start"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )
    try:
        if started.returncode != 0:
            raise BenchmarkError(
                f"`python -m reynolds start` exited {started.returncode}:\n"
                f"{started.stdout[-2000:]}{started.stderr[-2000:]}"
            )
        server = Server(f"http://127.0.0.1:{port}", token, env)
        wait_healthy(server)
        yield server
    finally:
        subprocess.run([*command, "stop"], env=env, cwd=REPO_ROOT, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def config_allowing(callables: Sequence[str]) -> Path:
    """A private config directory: the shipped one with `callables` allowed in every pool
    (for `REYNOLDS_CONFIG_DIR`)."""
    target = Path(tempfile.mkdtemp(prefix="reynolds-bench-config-"))
    source = REPO_ROOT / "config"
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    pools = (source / "agents.yaml").read_text(encoding="utf-8")
    allowed = pools.replace("    callables: []", f"    callables: {json.dumps(list(callables))}")
    (target / "agents.yaml").write_text(allowed, encoding="utf-8")
    return target


def orchestrate(server: Server, arguments: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Submit `orchestrate_task` and return (result, client wall-clock seconds).

    The clock runs from just before the POST to just after the whole response is read.
    """
    timeout_s = float(arguments.get("timeoutSeconds", 300)) + CLIENT_SLACK_S
    with server.client() as client:
        body = {"arguments": arguments}
        started = time.perf_counter()
        response = client.post("/mcp/tools/orchestrate_task", json=body, timeout=timeout_s)
        wall_s = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchmarkError(
            f"orchestrate_task: HTTP {response.status_code}: {response.text[:500]}"
        )
    payload = response.json()
    result = payload.get("structuredContent")
    if payload.get("isError") or not isinstance(result, dict):
        raise BenchmarkError(f"orchestrate_task failed: {json.dumps(payload)[:500]}")
    return result, wall_s


def require_success(result: dict[str, Any]) -> None:
    """BenchmarkError unless the task and every subtask succeeded."""
    failed = [s for s in result.get("subtasks", []) if s.get("status") != "succeeded"]
    if result.get("status") != "succeeded" or failed:
        first = failed[0] if failed else {}
        raise BenchmarkError(
            f"task {result.get('taskId')} ended {result.get('status')!r}; "
            f"{len(failed)} subtask(s) did not succeed, e.g. {first.get('id')}: "
            f"{first.get('status')} {str(first.get('error'))[:300]}"
        )


# --- baselines: the same processes without the orchestrator ---------------------------------


def xargs_seconds(count: int, parallel: int, argv: Sequence[str]) -> float:
    """Wall-clock seconds of `seq COUNT | xargs -P PARALLEL -I{} ARGV...`."""
    started = time.perf_counter()
    seq = subprocess.Popen(["seq", str(count)], stdout=subprocess.PIPE)
    xargs = subprocess.run(["xargs", "-P", str(parallel), "-I{}", *argv], stdin=seq.stdout)
    if seq.stdout is not None:
        seq.stdout.close()
    seq.wait()
    elapsed = time.perf_counter() - started
    if xargs.returncode != 0 or seq.returncode != 0:
        raise BenchmarkError(f"xargs baseline exited {xargs.returncode}")
    return elapsed


def _run_argv(argv: Sequence[str]) -> int:
    return subprocess.run(list(argv)).returncode


def process_pool_seconds(count: int, parallel: int, argv: Sequence[str]) -> float:
    """Wall-clock seconds of a ProcessPoolExecutor(PARALLEL) running ARGV COUNT times,
    pool start-up and shut-down included."""
    started = time.perf_counter()
    with ProcessPoolExecutor(parallel) as pool:
        codes = list(pool.map(_run_argv, [list(argv)] * count))
    elapsed = time.perf_counter() - started
    if any(codes):
        raise BenchmarkError("process-pool baseline: a process failed")
    return elapsed


def asyncio_seconds(count: int, parallel: int, argv: Sequence[str]) -> float:
    """Wall-clock seconds of an asyncio loop spawning ARGV COUNT times, PARALLEL at once."""

    async def run_all() -> list[int]:
        gate = asyncio.Semaphore(parallel)

        async def one() -> int:
            async with gate:
                proc = await asyncio.create_subprocess_exec(*argv)
                return await proc.wait()

        return await asyncio.gather(*(one() for _ in range(count)))

    started = time.perf_counter()
    codes = asyncio.run(run_all())
    elapsed = time.perf_counter() - started
    if any(codes):
        raise BenchmarkError("asyncio baseline: a process failed")
    return elapsed


# --- output ----------------------------------------------------------------------------------


def best_median(values: Sequence[float]) -> dict[str, float]:
    return {"best": min(values), "median": statistics.median(values)}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, columns padded to their widest cell; empty columns are left out."""
    keep = [i for i in range(len(headers)) if any(row[i] is not None for row in rows)]
    headers = [headers[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def main_guard(
    run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace
) -> int:
    """Run a benchmark; print its JSON with --json; exit 1 with the reason when it cannot run."""
    try:
        report = run(args)
    except (BenchmarkError, httpx.HTTPError, subprocess.SubprocessError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    return 0
