"""Replay: how far to trust the simulator. Each workload runs for real; then `run_experiment`
replays the recorded task under its own strategy (each subtask taking the times and outcomes
its attempts took) and the simulated makespan is compared with the one measured. The error is
what the simulation leaves out: process start-up, the scheduler's own work, retry backoffs
drawn anew. Aim: within 10 % on every workload.

The last workload opens a circuit breaker: two subtasks time out on the code pool, whose
breaker (2 failures in a row, 1 s cool-down on a spawned server) holds the rest back until its
probe; the replay's breaker is the dispatcher's own code, in simulated time.

    .venv/bin/python benchmarks/replay.py --spawn [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

TARGET_ERROR = 0.10
FAIL_ONCE = (
    "import os, sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "mark = os.path.join(sys.argv[3], sys.argv[1])\n"
    "if sys.argv[1].endswith('0') and not os.path.exists(mark):\n"
    "    open(mark, 'w').close(); sys.exit(1)\n"
)


def sleep(seconds: float | str) -> dict[str, Any]:
    return {"kind": "shell", "argv": ["sleep", str(seconds)]}


# The spawned server's breakers, for the last workload.
BREAKER_ENV = {"REYNOLDS_BREAKER_FAILURES": "2", "REYNOLDS_BREAKER_COOLDOWN_S": "1"}


def workloads(scratch: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, task, strategy) of each workload."""
    flat = {
        "type": "replay-flat",
        "components": [f"c{i:02d}" for i in range(17)],
        "steps": [{"name": "nap", "action": sleep(1)}],
    }
    dag = {
        "type": "replay-dag",
        "subtasks": [
            {"id": "build", "action": sleep(0.6)},
            *[{"id": f"test{i}", "dependsOn": ["build"], "action": sleep(0.5)} for i in range(6)],
            {"id": "deploy", "dependsOn": [f"test{i}" for i in range(6)], "action": sleep(0.4)},
            *[{"id": f"check{i}", "dependsOn": ["deploy"], "action": sleep(0.3)} for i in range(2)],
        ],
    }
    skewed = {
        "type": "replay-skewed",
        "components": [f"{0.2 * (i + 1):.1f}" for i in range(10)],
        "steps": [{"name": "nap", "action": sleep("{component}")}],
    }
    retries = {
        "type": "replay-retries",
        "components": [f"r{i}" for i in range(6)],
        "steps": [
            {
                "name": "work",
                "retries": 1,
                "action": {
                    "kind": "shell",
                    "argv": [sys.executable, "-c", FAIL_ONCE, "{component}", "0.5", str(scratch)],
                },
            }
        ],
    }
    breaker = {
        "type": "replay-breaker",
        "subtasks": [
            *[
                {"id": f"hang{i}", "agent": "code", "timeoutSeconds": 0.2,
                 "estimatedSeconds": 5, "action": sleep(5)}
                for i in range(2)
            ],
            *[
                {"id": f"quick{i}", "agent": "code", "estimatedSeconds": 0.3,
                 "action": sleep(0.3)}
                for i in range(6)
            ],
        ],
    }  # fmt: skip
    return [
        ("17 × 1 s at 5", flat, {"maxConcurrency": 5}),
        ("DAG: build → 6 tests → deploy → 2 checks, at 3", dag, {"maxConcurrency": 3}),
        ("10 skewed naps (0.2–2 s) at 3", skewed, {"maxConcurrency": 3}),
        ("6 × 0.5 s, one failing once and retried, at 3", retries, {"maxConcurrency": 3}),
        ("2 timeouts open the breaker, then 6 × 0.3 s, at 1", breaker, {"maxConcurrency": 1}),
    ]


def replay(server: harness.Server, task_id: str, strategy: dict[str, Any]) -> dict[str, Any]:
    arguments = {
        "scenario": {
            "name": f"replay {task_id}",
            "replay": task_id,
            "strategies": [{"name": "as it ran", **strategy}],
            "repetitions": 5,
            "seed": 1,
        }
    }
    with server.client() as client:
        response = client.post("/mcp/tools/run_experiment", json={"arguments": arguments})
    if response.status_code != 200:
        raise harness.BenchmarkError(f"run_experiment: {response.status_code} {response.text}")
    result: dict[str, Any] = response.json()["structuredContent"]
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch, harness.server_for(args, BREAKER_ENV) as server:
        workloads_ = workloads(Path(scratch))
        for name, task, strategy in workloads_:
            for _ in range(args.repeat):
                for mark in Path(scratch).iterdir():
                    mark.unlink()
                arguments = {
                    "task": task,
                    "strategy": {"approach": "parallel_optimized", **strategy},
                    "wait": True,
                    "force": True,
                    "timeoutSeconds": 300,
                }
                result, _ = harness.orchestrate(server, arguments)
                if task is not workloads_[-1][1]:  # the breaker's ends failed, as it should
                    harness.require_success(result)
                report = replay(server, result["taskId"], strategy)
                real = float(result["metrics"]["makespanSeconds"])
                simulated = float(report["variants"][0]["makespanSeconds"]["mean"])
                rows.append(
                    {
                        "workload": name,
                        "realSeconds": real,
                        "simulatedSeconds": simulated,
                        "error": (simulated - real) / real,
                    }
                )
    worst = max(abs(r["error"]) for r in rows)
    report = {
        "benchmark": "replay",
        "machine": harness.machine(),
        "targetError": TARGET_ERROR,
        "runs": rows,
        "summary": {"worstAbsoluteError": worst},
        "meetsTarget": worst <= TARGET_ERROR,
    }
    if not args.json:
        table = [
            [r["workload"], r["realSeconds"], r["simulatedSeconds"], f"{r['error']:+.1%}"]
            for r in rows
        ]
        print(harness.table(["workload", "measured (s)", "replayed (s)", "error"], table))
        print(f"worst |error| {worst:.1%} (aim ≤ {TARGET_ERROR:.0%})")
    return report


if __name__ == "__main__":
    parser = harness.parser(__doc__ or "", repeat=1)
    raise SystemExit(harness.main_guard(run, parser.parse_args()))
