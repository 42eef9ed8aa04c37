"""Round trip: one task of one no-op subtask submitted with `wait: true` and awaited, one after
another, as a client that waits for each answer feels it.

Two kinds of subtask: the python no-op `os:getpid` (allowed through a private config
directory) and the shell `true`. Each is submitted `--calls` times (default 200) after 20
warm-up calls, on one persistent HTTP connection; the clock runs from just before the POST to
just after the whole answer is read, so it holds HTTP, validation, planning, the store's commit
of everything the task wrote (before the answer is sent), the action and the rendering of the
result. Reports p50 and p95 against the aims (python < 1.5 ms, shell < 2.5 ms at the p50). Each
call's description is distinct, so that loop prevention sees no resubmission.

    .venv/bin/python benchmarks/roundtrip.py --spawn [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import harness

NOOP = "os:getpid"
WARM_UP = 20
AIMS_MS = {"python": 1.5, "shell": 2.5}
ACTIONS: dict[str, dict[str, Any]] = {
    "python": {"kind": "python", "callable": NOOP},
    "shell": {"kind": "shell", "argv": ["true"]},
}


def measure(server: harness.Server, kind: str, calls: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "arguments": {
            "task": {
                "type": "benchmark-roundtrip",
                "components": ["one"],
                "steps": [{"name": "noop", "action": ACTIONS[kind]}],
            },
            "wait": True,
        }
    }
    samples = []
    with server.client() as client:
        for i in range(WARM_UP + calls):
            body["arguments"]["task"]["description"] = f"round trip {kind} {i}"
            started = time.perf_counter()
            response = client.post("/mcp/tools/orchestrate_task", json=body)
            elapsed = time.perf_counter() - started
            result = response.json().get("structuredContent") or {}
            if response.status_code != 200 or result.get("status") != "succeeded":
                raise harness.BenchmarkError(
                    f"{kind}: {response.status_code} {response.text[:300]}"
                )
            if i >= WARM_UP:
                samples.append(elapsed)
    samples.sort()
    return {
        "kind": kind,
        "calls": calls,
        "p50Ms": round(statistics.median(samples) * 1000, 3),
        "p95Ms": round(samples[int(len(samples) * 0.95) - 1] * 1000, 3),
        "aimMs": AIMS_MS[kind],
        "answerBytes": len(response.content),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "REYNOLDS_CONFIG_DIR": str(harness.config_allowing([NOOP])),
        "REYNOLDS_RATE_LIMIT_PER_S": "0",  # one client calling as fast as it can
    }
    runs: list[dict[str, Any]] = []
    with harness.server_for(args, env) as server:
        for _ in range(args.repeat):
            runs.extend(measure(server, kind, args.calls) for kind in ACTIONS)
    summary = {
        f"{kind}P50Ms": statistics.median(r["p50Ms"] for r in runs if r["kind"] == kind)
        for kind in ACTIONS
    }
    report = {"machine": harness.machine(), "runs": runs, "summary": summary}
    if not args.json:
        headers = ["kind", "calls", "p50 ms", "p95 ms", "aim p50 ms", "answer bytes"]
        rows = [
            [r["kind"], r["calls"], r["p50Ms"], r["p95Ms"], r["aimMs"], r["answerBytes"]]
            for r in runs
        ]
        print(f"round trip: {report['machine']}")
        print(harness.table(headers, rows))
    return report


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0], repeat=1)
    p.add_argument("--calls", type=int, default=200)
    return harness.main_guard(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
