"""Local pools against Celery workers: the same workloads on both backends.

Each backend gets a private server with 3 slots for the `devops` pool: the local backend its
3 default replicas, the Celery backend one `reynolds agent --type devops --concurrency 3`
worker on a private Redis broker (started here, `redis-server` on PATH). Two workloads, each
one `orchestrate_task` with `wait: true` timed from the client:

- makespan: 24 × `sleep 0.5` at maxConcurrency 3 (ideal 8 rounds × 0.5 s = 4.0 s);
- throughput: 300 × `true` at maxConcurrency 3 (subtasks per second).

`xargs -P 3` runs the same processes as the raw limit of the machine.

    .venv/bin/python benchmarks/backends.py --spawn [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

SLOTS = 3


@dataclass(frozen=True)
class Workload:
    count: int
    argv: list[str]
    ideal_s: float | None


WORKLOADS = {
    "makespan": Workload(24, ["sleep", "0.5"], 24 / SLOTS * 0.5),
    "throughput": Workload(300, ["true"], None),
}
REDIS_START_TIMEOUT_S = 10.0
WORKER_TIMEOUT_S = 60.0


def task(name: str) -> dict[str, Any]:
    spec = WORKLOADS[name]
    return {
        "task": {
            "type": f"benchmark-backends-{name}",
            "components": [f"c{i:03d}" for i in range(spec.count)],
            "steps": [
                {
                    "name": "work",
                    "agent": "devops",
                    "action": {"kind": "shell", "argv": spec.argv},
                }
            ],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": SLOTS},
        "wait": True,
        "timeoutSeconds": 300,
    }


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise harness.BenchmarkError("redis-server is not on PATH (the Celery backend needs it)")
    port = harness.free_port()
    directory = tempfile.mkdtemp(prefix="reynolds-bench-redis-")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    proc = subprocess.Popen(
        [*argv, "no", "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise harness.BenchmarkError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def worker(server: harness.Server) -> Iterator[None]:
    assert server.env is not None
    log = Path(server.env["REYNOLDS_HOME"]) / "worker.log"
    command = [sys.executable, "-m", "reynolds", "agent", "--type", "devops"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--concurrency", str(SLOTS)],
            env=server.env,
            cwd=harness.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        with server.client() as client:
            while slots(client) < SLOTS:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise harness.BenchmarkError(
                        f"the worker did not join: {log.read_text(errors='replace')[-1500:]}"
                    )
                time.sleep(0.2)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def slots(client: Any) -> int:
    pools = client.get("/status").json()["pools"]
    return int(next(p["replicas"] for p in pools if p["type"] == "devops"))


def measure(server: harness.Server, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name in WORKLOADS:
        harness.orchestrate(server, task(name))  # warm up: history, caches, first spawns
        times = []
        for _ in range(repeat):
            result, wall_s = harness.orchestrate(server, task(name))
            harness.require_success(result)
            times.append(wall_s)
        out[name] = times
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.spawn:
        raise harness.BenchmarkError("this benchmark starts its own servers: pass --spawn")
    results: dict[str, dict[str, list[float]]] = {}
    with harness.server_for(args) as server:
        results["local"] = measure(server, args.repeat)
    with (
        redis_server() as url,
        harness.server_for(
            args, {"REYNOLDS_BACKEND": "celery", "REYNOLDS_REDIS_URL": url}
        ) as server,
        worker(server),
    ):
        results["celery"] = measure(server, args.repeat)
    xargs = {
        name: [harness.xargs_seconds(spec.count, SLOTS, spec.argv) for _ in range(args.repeat)]
        for name, spec in WORKLOADS.items()
    }
    rows = []
    report: dict[str, Any] = {"machine": harness.machine(), "slots": SLOTS, "results": {}}
    for name, spec in WORKLOADS.items():
        count = spec.count
        for backend, times in (
            *((b, r[name]) for b, r in results.items()),
            ("xargs -P3", xargs[name]),
        ):
            stats = harness.best_median(times)
            rows.append(
                [
                    name,
                    backend,
                    stats["best"],
                    stats["median"],
                    count / stats["median"],
                    spec.ideal_s,
                ]
            )
            report["results"].setdefault(name, {})[backend] = {
                **stats,
                "subtasksPerSecond": count / stats["median"],
            }
    if not args.json:
        print(f"backends: {SLOTS} slots; {harness.machine()}")
        headers = ["workload", "backend", "best s", "median s", "subtasks/s", "ideal s"]
        print(harness.table(headers, rows))
    return report


if __name__ == "__main__":
    parsed = harness.parser(__doc__ or "", repeat=3).parse_args()
    sys.exit(harness.main_guard(run, parsed))
