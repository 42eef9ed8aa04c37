"""Learning from history: the same skewed task twice at maxConcurrency 2.

Ten components: nine sleep 0.2 s and one, listed last, sleeps 1.8 s (each name ends in its
duration, which the step reads). Knowing nothing, the first run starts them in list order, so
the long one starts only after four short ones ran on a slot: 4 × 0.2 + 1.8 = 2.6 s. Having
recorded the first run's durations, the server should start the long one first in the second
run: about 1.8 s (the long one on one slot, the nine short ones on the other). Each invocation
uses fresh component names, so history from earlier invocations does not count.

    .venv/bin/python benchmarks/learning.py --spawn [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

import harness

CONCURRENCY = 2
SHORT_MS, SHORT_COUNT = 200, 9
LONG_MS = 1800
# The component's last dash-separated part is its duration, e.g. `a1b2c3-short-4-200ms`.
SLEEPER = "import sys, time; time.sleep(int(sys.argv[1].rsplit('-', 1)[1][:-2]) / 1000)"
# This interpreter, by path and without site: a version-manager shim named `python3` can add
# a tenth of a second to every start, which would blur 0.2-second steps.
PYTHON = [sys.executable, "-I", "-S", "-c", SLEEPER]
# list order: the long one waits for the first slot to free, after SHORT_COUNT // 2 short ones
NAIVE_S = SHORT_COUNT // 2 * SHORT_MS / 1000 + LONG_MS / 1000
LEARNED_S = max(LONG_MS, SHORT_COUNT * SHORT_MS) / 1000


def components(tag: str) -> list[str]:
    short = [f"{tag}-short-{i}-{SHORT_MS}ms" for i in range(1, SHORT_COUNT + 1)]
    return [*short, f"{tag}-long-{LONG_MS}ms"]


def task_arguments(tag: str) -> dict[str, Any]:
    return {
        "task": {
            "type": "benchmark-learning",
            "description": "nine short components and one long one, the long one last",
            "components": components(tag),
            "steps": [
                {
                    "name": "work",
                    "action": {"kind": "shell", "argv": [*PYTHON, "{component}"]},
                }
            ],
        },
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": CONCURRENCY},
        "wait": True,
        "timeoutSeconds": 120,
    }


def short_name(component: str | None) -> str:
    """`a1b2c3-short-4-200ms` → `short-4`."""
    parts = (component or "?").split("-")
    return "-".join(parts[1:-1]) or (component or "?")


def describe(result: dict[str, Any], wall_s: float) -> dict[str, Any]:
    subtasks = result.get("subtasks", [])
    by_id = {s["id"]: s for s in subtasks}
    started = sorted(subtasks, key=lambda s: s.get("startedAt") or "")
    start_order = [short_name(s.get("component")) for s in started]
    plan = result.get("plan", {})
    groups = [
        [short_name(by_id.get(sid, {}).get("component", sid)) for sid in group]
        for group in plan.get("parallelGroups", [])
    ]
    long_rank = next((i for i, name in enumerate(start_order) if name.startswith("long")), None)
    return {
        "taskId": result.get("taskId"),
        "makespanS": wall_s,
        "serverMakespanS": result.get("metrics", {}).get("makespanSeconds"),
        "estimatedParallelS": plan.get("estimatedParallelSeconds"),
        "startOrder": start_order,
        "parallelGroups": groups,
        "longStartedAt": long_rank,
        "longStartedFirst": long_rank is not None and long_rank < CONCURRENCY,
    }


def one_pair(server: harness.Server) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    runs = []
    for _ in range(2):
        result, wall_s = harness.orchestrate(server, task_arguments(tag))
        harness.require_success(result)
        runs.append(describe(result, wall_s))
    return {"tag": tag, "first": runs[0], "second": runs[1]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with harness.server_for(args) as server:
        pairs = [one_pair(server) for _ in range(args.repeat)]
    report = {
        "benchmark": "learning",
        "maxConcurrency": CONCURRENCY,
        "expectedFirstS": NAIVE_S,
        "expectedLearnedS": LEARNED_S,
        "machine": harness.machine(),
        "pairs": pairs,
        "learned": all(p["second"]["longStartedFirst"] for p in pairs),
    }
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"learning: {SHORT_COUNT} × {SHORT_MS} ms + 1 × {LONG_MS} ms (listed last) at "
        f"maxConcurrency {CONCURRENCY}; list order ≈ {NAIVE_S:.1f} s, "
        f"long first ≈ {LEARNED_S:.1f} s"
    )
    for pair in report["pairs"]:
        rows = []
        for label in ("first", "second"):
            r = pair[label]
            rows.append([label, r["makespanS"], r["serverMakespanS"], r["estimatedParallelS"],
                         r["longStartedAt"], r["longStartedFirst"]])  # fmt: skip
        print()
        print(harness.table(
            ["run", "makespan s", "server makespan s", "plan estimate s",
             "long starts at #", "long first"], rows))  # fmt: skip
        for label in ("first", "second"):
            r = pair[label]
            print(f"  {label} run, start order: {' '.join(r['startOrder'])}")
            print(f"  {label} run, parallelGroups: {r['parallelGroups']}")
    print()
    verdict = "yes" if report["learned"] else "NO"
    print(f"second run started the long component first: {verdict}")


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0], repeat=1)
    return harness.main_guard(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
