"""Scale: one task of 1,000, 10,000 and 100,000 no-op subtasks, each size on a fresh server.

Each task is `n / 10` components through ten independent steps, every subtask the python
no-op `os:getpid` (the pools allow it through a private config directory), submitted with
`wait: false` and polled with `GET /tasks/{id}` every `--poll` seconds until it ends. The
server runs with the limits raised for it: `REYNOLDS_MAX_SUBTASKS=100000` and
`REYNOLDS_MAX_BODY_BYTES` of 64 MiB.

Reports per size: the accept time (the POST until its answer), the makespan the server
measured, the per-subtask time (makespan / n) and its ratio to the smallest size's (aim at
most 1.2 at 100,000), the server's peak resident memory (`VmHWM` of its process; aim under
1 GB), and the largest answer the client received (aim at most 512 KB). Every subtask must
succeed, or the benchmark fails.

    .venv/bin/python benchmarks/scale.py --spawn [--sizes 1000,10000,100000]
        [--concurrency 8] [--poll 1.0] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import harness

NOOP = "os:getpid"
STEPS = 10
ANSWER_AIM_BYTES = 512 * 1024
MEMORY_AIM_BYTES = 1024**3
OVERHEAD_AIM = 1.2


def arguments(size: int, concurrency: int) -> dict[str, Any]:
    components = size // STEPS
    return {
        "task": {
            "type": "benchmark-scale",
            "description": f"{size} no-op subtasks",
            "components": [f"c{i:05d}" for i in range(components)],
            "steps": [
                {"name": f"s{j}", "action": {"kind": "python", "callable": NOOP}}
                for j in range(STEPS)
            ],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": concurrency},
        "wait": False,
    }


def server_peak_bytes(server: harness.Server) -> int | None:
    """VmHWM of the spawned server's process, from the pid file in its home."""
    if server.env is None:
        return None
    pid_file = Path(server.env["REYNOLDS_HOME"]) / "reynolds.pid"
    pid = pid_file.read_text(encoding="utf-8").split()[0]
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def run_size(server: harness.Server, size: int, concurrency: int, poll_s: float) -> dict[str, Any]:
    largest = 0
    with server.client() as client:
        started = time.perf_counter()
        response = client.post(
            "/mcp/tools/orchestrate_task",
            json={"arguments": arguments(size, concurrency)},
            timeout=600,
        )
        accept_s = time.perf_counter() - started
        largest = len(response.content)
        payload = response.json()
        if response.status_code != 200 or payload.get("isError"):
            raise harness.BenchmarkError(
                f"{size}: HTTP {response.status_code}: {response.text[:300]}"
            )
        task_id = payload["structuredContent"]["taskId"]
        while True:
            time.sleep(poll_s)
            answer = client.get(f"/tasks/{task_id}", timeout=120)
            largest = max(largest, len(answer.content))
            result = answer.json()
            if result["status"] not in ("pending", "ready", "running"):
                break
    counts = result["results"]["counts"]
    if counts.get("succeeded") != size:
        raise harness.BenchmarkError(f"{size}: task {task_id} ended {result['status']}: {counts}")
    makespan = float(result["metrics"]["makespanSeconds"])
    return {
        "subtasks": size,
        "acceptS": round(accept_s, 3),
        "makespanS": makespan,
        "perSubtaskMs": round(makespan / size * 1000, 4),
        "peakMemoryBytes": server_peak_bytes(server),
        "largestAnswerBytes": largest,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    config = harness.config_allowing([NOOP])
    env = {
        "REYNOLDS_CONFIG_DIR": str(config),
        "REYNOLDS_MAX_SUBTASKS": str(max(sizes)),
        "REYNOLDS_MAX_BODY_BYTES": str(64 * 1024 * 1024),
        "REYNOLDS_RATE_LIMIT_PER_S": "0",
    }
    rows = []
    for size in sizes:
        with harness.server_for(args, env) as server:
            rows.append(run_size(server, size, args.concurrency, args.poll))
    base = rows[0]["perSubtaskMs"]
    for row in rows:
        row["overheadRatio"] = round(row["perSubtaskMs"] / base, 3) if base else None
    report = {"machine": harness.machine(), "concurrency": args.concurrency, "runs": rows}
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    headers = [
        "subtasks",
        "accept s",
        "makespan s",
        "ms/subtask",
        "vs first",
        "peak MB",
        "largest KB",
    ]
    rows = [
        [
            r["subtasks"],
            r["acceptS"],
            r["makespanS"],
            r["perSubtaskMs"],
            r["overheadRatio"],
            round(r["peakMemoryBytes"] / 1e6, 1) if r["peakMemoryBytes"] else None,
            round(r["largestAnswerBytes"] / 1024, 1),
        ]
        for r in report["runs"]
    ]
    print(f"scale: {report['machine']}, maxConcurrency {report['concurrency']}")
    print(harness.table(headers, rows))
    last = report["runs"][-1]
    print(
        f"aims at {last['subtasks']}: ms/subtask ≤ {OVERHEAD_AIM}× the first "
        f"({last['overheadRatio']}), peak < 1 GB "
        f"({(last['peakMemoryBytes'] or 0) / 1e6:.0f} MB), answers ≤ 512 KB "
        f"({max(r['largestAnswerBytes'] for r in report['runs']) / 1024:.0f} KB)"
    )


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0], repeat=1)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--poll", type=float, default=1.0)
    args = p.parse_args()
    return harness.main_guard(run, args)


if __name__ == "__main__":
    sys.exit(main())
