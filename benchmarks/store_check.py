"""What checking the store costs: the start-up `PRAGMA quick_check`, and `GET /health`, which
reads the store afresh on every call.

    .venv/bin/python benchmarks/store_check.py --spawn [--store PATH] [--tasks N] [--subtasks M]

Builds (once, at `--store`, default a temporary file) a SQLite store of N tasks and M subtasks,
each subtask with an attempt, two events and an audit record, as real runs leave them. Then
times the integrity check at start (warm: the file in the page cache), and, with `--spawn`, a
server on that store answering `GET /health` one call after another. `--health-only` skips the
in-process part, so that a checkout without it can be measured the same way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness

HEALTH_CALLS = 300


def build_store(path: Path, tasks: int, subtasks: int) -> None:
    from reynolds.adapters.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{path}")
    store.start()
    per_task = max(1, subtasks // tasks)
    try:
        for number in range(tasks):
            task_id = uuid.uuid4().hex
            store.put_task(_task(task_id, number, per_task))
            for index in range(per_task):
                _subtask(store, task_id, index)
            if number % 500 == 0:
                store.flush_sync()
        store.flush_sync()
    finally:
        store.close()


def _task(task_id: str, number: int, per_task: int) -> dict[str, Any]:
    return {
        "id": task_id,
        "type": "build",
        "description": f"task {number}",
        "priority": "medium",
        "status": "succeeded",
        "spec": {"components": [f"c{i}" for i in range(per_task)]},
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": 5},
        "created_at": 1000.0 + number,
        "finished_at": 1001.0 + number,
    }


def _subtask(store: Any, task_id: str, index: int) -> None:
    sid = f"c{index}:build"
    argv = ["echo", f"build c{index}"]
    store.put_subtask(
        {
            "task_id": task_id,
            "id": sid,
            "seq": index,
            "component": f"c{index}",
            "step": "build",
            "depends_on": [],
            "spec": {"action": {"kind": "shell", "argv": argv}},
            "status": "succeeded",
            "attempts": 1,
            "exit_code": 0,
            "output": f"build c{index}\n" * 3,
            "error": "",
            "started_at": 1000.0,
            "finished_at": 1000.5,
            "agent_type": "code",
        }
    )
    store.put_attempt(
        {
            "task_id": task_id,
            "subtask_id": sid,
            "attempt": 1,
            "agent_type": "code",
            "status": "succeeded",
            "exit_code": 0,
            "started_at": 1000.0,
            "finished_at": 1000.5,
        }
    )
    for kind in ("subtask_started", "subtask_finished"):
        store.add_event({"task_id": task_id, "subtask_id": sid, "kind": kind, "data": {}})
    store.add_audit(
        {
            "at": 1000.0,
            "kind": "action",
            "token_name": None,
            "tool": None,
            "action": "shell",
            "pool": "code",
            "task_id": task_id,
            "subtask_id": sid,
            "attempt": 1,
            "argv": argv,
            "cwd": "/work",
            "env_names": [],
            "decision": "allowed",
            "outcome": "succeeded",
            "detail": None,
            "exit_code": 0,
            "duration_s": 0.01,
            "output_bytes": 30,
        }
    )


def time_start_check(path: Path, runs: int) -> list[float]:
    from reynolds.adapters.store.integrity import check_before_start

    url = f"sqlite:///{path}"
    check_before_start(url, None)  # warm the page cache
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        check_before_start(url, None)
        samples.append(time.perf_counter() - began)
    return samples


def time_health(server: harness.Server, calls: int) -> list[float]:
    samples = []
    with server.client() as client:
        for _ in range(20):
            client.get("/health")
        for _ in range(calls):
            began = time.perf_counter()
            answer = client.get("/health")
            samples.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise harness.BenchmarkError(f"/health answered {answer.status_code}")
    return samples


def quantiles_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return {"median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000}


def run(args: argparse.Namespace) -> dict[str, Any]:
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "reynolds.db"
    if not store.exists():
        began = time.perf_counter()
        build_store(store, args.tasks, args.subtasks)
        if not args.json:
            print(f"built {store} in {time.perf_counter() - began:.1f} s")
    report: dict[str, Any] = {
        "machine": harness.machine(),
        "store": {"path": str(store), "bytes": store.stat().st_size},
    }
    if not args.health_only:
        report["start_check_s"] = harness.best_median(time_start_check(store, args.repeat))
    if args.spawn or args.url != harness.DEFAULT_URL:
        extra = {"REYNOLDS_DATABASE_URL": f"sqlite:///{store}"}
        with harness.server_for(args, extra_env=extra) as server:
            report["health"] = quantiles_ms(time_health(server, HEALTH_CALLS))
    if not args.json:
        print(f"store: {report['store']['bytes']:,} bytes")
        if "start_check_s" in report:
            check = report["start_check_s"]
            print(f"start-up check: best {check['best']:.3f} s, median {check['median']:.3f} s")
        if "health" in report:
            health = report["health"]
            print(
                f"GET /health over {HEALTH_CALLS} calls: median {health['median_ms']:.2f} ms, "
                f"p95 {health['p95_ms']:.2f} ms"
            )
    return report


def main() -> int:
    parser = harness.parser(__doc__.splitlines()[0], repeat=5)
    parser.add_argument("--store", help="the SQLite file to use (built there when missing)")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--subtasks", type=int, default=100_000)
    parser.add_argument("--health-only", action="store_true", help="time GET /health only")
    args = parser.parse_args()
    return harness.main_guard(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
