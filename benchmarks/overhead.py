"""Orchestration overhead: 400 subtasks running `true` at maxConcurrency 8.

Submits 400 components × one `true` step with `wait: true`, timed from the client, and in the
same run times the same 400 processes under `seq 400 | xargs -P 8 -I{} true` and under a bare
asyncio loop with a semaphore of 8. The figure of merit is reynolds / xargs (target ≤ 1.5).

    .venv/bin/python benchmarks/overhead.py --spawn [--repeat 3] [--json] [--baselines-only]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import harness

COUNT = 400
CONCURRENCY = 8
ARGV = ["true"]
TARGET_RATIO = 1.5


def task_arguments() -> dict[str, Any]:
    return {
        "task": {
            "type": "benchmark-overhead",
            "description": f"{COUNT} components, one `true` each",
            "components": [f"c{i:03d}" for i in range(COUNT)],
            "steps": [{"name": "true", "action": {"kind": "shell", "argv": ARGV}}],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": CONCURRENCY},
        "wait": True,
        "timeoutSeconds": 600,
    }


def one_run(server: harness.Server | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "xargsS": harness.xargs_seconds(COUNT, CONCURRENCY, ARGV),
        "asyncioS": harness.asyncio_seconds(COUNT, CONCURRENCY, ARGV),
    }
    if server is not None:
        result, wall_s = harness.orchestrate(server, task_arguments())
        harness.require_success(result)
        metrics = result.get("metrics", {})
        row |= {
            "taskId": result.get("taskId"),
            "reynoldsS": wall_s,
            "subtasksPerS": COUNT / wall_s,
            "ratioVsXargs": wall_s / row["xargsS"],
            "ratioVsAsyncio": wall_s / row["asyncioS"],
            "serverMakespanS": metrics.get("makespanSeconds"),
            "serverOverhead": metrics.get("orchestrationOverhead"),
        }
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.baselines_only:
        runs = [one_run(None) for _ in range(args.repeat)]
    else:
        with harness.server_for(args) as server:
            runs = [one_run(server) for _ in range(args.repeat)]
    keys = ("reynoldsS", "xargsS", "asyncioS", "ratioVsXargs", "ratioVsAsyncio")
    summary = {key: harness.best_median([r[key] for r in runs]) for key in keys if key in runs[0]}
    report: dict[str, Any] = {
        "benchmark": "overhead",
        "subtasks": COUNT,
        "maxConcurrency": CONCURRENCY,
        "targetRatioVsXargs": TARGET_RATIO,
        "machine": harness.machine(),
        "runs": runs,
        "summary": summary,
    }
    if "ratioVsXargs" in summary:
        report["meetsTarget"] = summary["ratioVsXargs"]["median"] <= TARGET_RATIO
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"overhead: {COUNT} × `true` at maxConcurrency {CONCURRENCY}; "
        f"{report['machine']['cpus']} CPUs"
    )
    headers = [
        "run",
        "reynolds s",
        "subtasks/s",
        "server makespan s",
        "xargs -P8 s",
        "xargs/s",
        "asyncio s",
        "reynolds/xargs",
        "reynolds/asyncio",
    ]
    rows = [
        [i, r.get("reynoldsS"), r.get("subtasksPerS"), r.get("serverMakespanS"), r["xargsS"],
         COUNT / r["xargsS"], r["asyncioS"], r.get("ratioVsXargs"), r.get("ratioVsAsyncio")]
        for i, r in enumerate(report["runs"], 1)
    ]  # fmt: skip
    print(harness.table(headers, rows))
    print()
    summary = report["summary"]
    print(
        harness.table(
            ["", "best", "median"], [[k, v["best"], v["median"]] for k, v in summary.items()]
        )
    )
    if "meetsTarget" in report:
        verdict = "meets" if report["meetsTarget"] else "misses"
        print(f"median reynolds/xargs {summary['ratioVsXargs']['median']:.2f}: "
              f"{verdict} the target of ≤ {TARGET_RATIO}")  # fmt: skip


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--baselines-only", action="store_true", help="time only xargs and asyncio")
    return harness.main_guard(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
