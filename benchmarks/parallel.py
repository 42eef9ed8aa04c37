"""Parallel speed-up: 17 components × `sleep 1` at maxConcurrency 5.

Submits one `orchestrate_task` with `wait: true` and times it from the client; the ideal is
ceil(17 / 5) × 1 s = 4 s, the sequential run would take 17 × 1 s. In the same run it times the
raw limit of the machine: `seq 17 | xargs -P 5 -I{} sleep 1` and a bare ProcessPoolExecutor(5)
running `sleep 1` 17 times.

    .venv/bin/python benchmarks/parallel.py --spawn [--repeat 3] [--json] [--baselines-only]
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import harness

COMPONENTS = [
    "SemanticSearchTool",
    "CreateIssueTool",
    "CreateDiscussionTool",
    "AnalyzeOrgProjectsTool",
    "GitHubOperationsTool",
    "ListRepositoriesTool",
    "GetPullRequestTool",
    "MergePullRequestTool",
    "AddLabelsTool",
    "CommentOnIssueTool",
    "SearchCodeTool",
    "ListWorkflowRunsTool",
    "TriggerWorkflowTool",
    "GetFileContentsTool",
    "CreateBranchTool",
    "SummarizeDiscussionTool",
    "TeamMembershipTool",
]
CONCURRENCY = 5
SLEEP_S = 1.0
ARGV = ["sleep", "1"]
IDEAL_S = math.ceil(len(COMPONENTS) / CONCURRENCY) * SLEEP_S
SEQUENTIAL_S = len(COMPONENTS) * SLEEP_S


def task_arguments() -> dict[str, Any]:
    return {
        "task": {
            "type": "benchmark-parallel",
            "description": "17 components, one 1-second step each",
            "components": COMPONENTS,
            "steps": [{"name": "sleep", "action": {"kind": "shell", "argv": ARGV}}],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": CONCURRENCY},
        "wait": True,
        "timeoutSeconds": 120,
    }


def one_run(server: harness.Server | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if server is not None:
        result, wall_s = harness.orchestrate(server, task_arguments())
        harness.require_success(result)
        metrics = result.get("metrics", {})
        row |= {
            "taskId": result.get("taskId"),
            "makespanS": wall_s,
            "efficiency": IDEAL_S / wall_s,
            "speedupVsSequential": SEQUENTIAL_S / wall_s,
            "serverMakespanS": metrics.get("makespanSeconds"),
            "serverSpeedup": metrics.get("speedup"),
            "serverOverhead": metrics.get("orchestrationOverhead"),
        }
    row["xargsS"] = harness.xargs_seconds(len(COMPONENTS), CONCURRENCY, ARGV)
    row["processPoolS"] = harness.process_pool_seconds(len(COMPONENTS), CONCURRENCY, ARGV)
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    if args.baselines_only:
        runs = [one_run(None) for _ in range(args.repeat)]
    else:
        with harness.server_for(args) as server:
            runs = [one_run(server) for _ in range(args.repeat)]
    report: dict[str, Any] = {
        "benchmark": "parallel",
        "components": len(COMPONENTS),
        "maxConcurrency": CONCURRENCY,
        "idealS": IDEAL_S,
        "sequentialEstimateS": SEQUENTIAL_S,
        "machine": harness.machine(),
        "runs": runs,
        "summary": {
            key: harness.best_median([r[key] for r in runs])
            for key in ("makespanS", "xargsS", "processPoolS")
            if key in runs[0]
        },
    }
    if "makespanS" in report["summary"]:
        best = report["summary"]["makespanS"]["best"]
        report["summary"]["efficiency"] = {"best": IDEAL_S / best}
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    runs = report["runs"]
    print(
        f"parallel: {report['components']} × `sleep 1` at maxConcurrency {CONCURRENCY}; "
        f"ideal {IDEAL_S:.0f} s, sequential {SEQUENTIAL_S:.0f} s (computed, not run); "
        f"{report['machine']['cpus']} CPUs"
    )
    headers = [
        "run",
        "reynolds s",
        "efficiency",
        "vs sequential",
        "server makespan s",
        "server speedup",
        "server overhead",
        "xargs -P5 s",
        "ProcessPool(5) s",
    ]
    rows = [
        [i, r.get("makespanS"), r.get("efficiency"), r.get("speedupVsSequential"),
         r.get("serverMakespanS"), r.get("serverSpeedup"), r.get("serverOverhead"),
         r["xargsS"], r["processPoolS"]]
        for i, r in enumerate(runs, 1)
    ]  # fmt: skip
    print(harness.table(headers, rows))
    summary = report["summary"]
    lines = [[name, s["best"], s["median"]] for name, s in summary.items() if "median" in s]
    print()
    print(harness.table(["", "best s", "median s"], lines))
    if "efficiency" in summary:
        print(f"efficiency (ideal / best makespan): {summary['efficiency']['best']:.1%}")


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--baselines-only", action="store_true", help="time only xargs and the pool")
    args = p.parse_args()
    return harness.main_guard(run, args)


if __name__ == "__main__":
    sys.exit(main())
