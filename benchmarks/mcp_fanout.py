"""MCP fan-out: 100 calls of a ~50 ms downstream tool at maxConcurrency 8, against the SDK client.

The downstream is a Reynolds server's own `/mcp` (the running one, or a private one with
`--spawn`): its `orchestrate_task` with `wait: true` on one `sleep 0.05` step is the tool. A
second, private Reynolds server declares it as the MCP server `downstream` in every pool and
runs one task of 100 mcp subtasks calling it, at maxConcurrency 8. In the same run the SDK's own
client (`ClientSession` over Streamable HTTP) calls the same tool 100 times in a sequential
loop, then 100 times eight at a time (each warmed up by one call first). Figures: the speed-up
of Reynolds over the sequential loop (aim ≥ 6×), and Reynolds' per-call overhead (aim < 5 ms):
the time one of its eight slots spends per call (wall × 8 / 100) less the SDK client's own round
trip at the same concurrency (its wall × 8 / 100), since a downstream answers slower when eight
calls share it. The slot time less the sequential round trip is reported too.

    .venv/bin/python benchmarks/mcp_fanout.py --spawn [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import httpx2
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

CALLS = 100
CONCURRENCY = 8
STEP_S = 0.05
TARGET_SPEEDUP = 6.0
TARGET_OVERHEAD_MS = 5.0
SERVER = "downstream"
TOKEN_FILE = "downstream_token.txt"  # noqa: S105  (the name of a file, not its content)


def tool_arguments(label: str) -> dict[str, Any]:
    """orchestrate_task's arguments for one call: one `sleep 0.05` step, waited for. Each call
    names itself in the description, and `force` keeps loop prevention from reading a hundred
    like tasks as a resubmission loop."""
    return {
        "task": {
            "type": "benchmark-mcp-step",
            "description": f"one 50 ms step, {label}",
            "steps": [{"name": "nap", "action": {"kind": "shell", "argv": ["sleep", str(STEP_S)]}}],
        },
        "wait": True,
        "force": True,
        "timeoutSeconds": 60,
    }


def fanout_arguments(calls: int = CALLS) -> dict[str, Any]:
    action = {"kind": "mcp", "server": SERVER, "tool": "orchestrate_task"}
    subtasks = [
        {"id": f"call{i:03d}", "action": {**action, "arguments": tool_arguments("{subtaskId}")}}
        for i in range(calls)
    ]
    return {
        "task": {"type": "benchmark-mcp-fanout", "subtasks": subtasks},
        "strategy": {"approach": "parallel_optimized", "maxConcurrency": CONCURRENCY},
        "wait": True,
        "timeoutSeconds": 600,
    }


@asynccontextmanager
async def session(server: harness.Server) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        streamable_http_client(f"{server.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def sdk_seconds(server: harness.Server, parallel: int) -> float:
    """Seconds for CALLS calls on one SDK session, `parallel` at a time."""
    async with session(server) as client:
        await client.call_tool("orchestrate_task", tool_arguments("warm-up"))
        slots = asyncio.Semaphore(parallel)

        async def one(i: int) -> None:
            async with slots:
                result = await client.call_tool("orchestrate_task", tool_arguments(f"sdk {i}"))
            if result.is_error or not (result.structured_content or {}).get("success"):
                raise harness.BenchmarkError(f"the SDK call {i} failed: {result.content}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(CALLS)))
        return time.perf_counter() - started


def orchestrator_config(root: Path, downstream: harness.Server) -> dict[str, str]:
    """A config folder whose pools all declare the downstream, and a secrets folder with its
    token; the environment that points a server at them."""
    config, secrets = root / "config", root / "secrets"
    config.mkdir()
    secrets.mkdir()
    pools = yaml.safe_load((harness.REPO_ROOT / "config" / "agents.yaml").read_text())
    declared: dict[str, Any] = {"url": f"{downstream.url}/mcp"}
    if downstream.token:
        (secrets / TOKEN_FILE).write_text(downstream.token)
        declared["tokenFile"] = TOKEN_FILE
    for pool in pools["pools"].values():
        pool["mcpServers"] = {SERVER: declared}
    (config / "agents.yaml").write_text(yaml.safe_dump(pools))
    return {"REYNOLDS_CONFIG_DIR": str(config), "REYNOLDS_SECRETS_DIR": str(secrets)}


def one_run(downstream: harness.Server, orchestrator: harness.Server) -> dict[str, Any]:
    sequential_s = asyncio.run(sdk_seconds(downstream, 1))
    parallel_s = asyncio.run(sdk_seconds(downstream, CONCURRENCY))
    # As the SDK client warms up with one call first, so does the orchestrator: the session to
    # the downstream is opened by this one and kept for the hundred.
    warm_up, _ = harness.orchestrate(orchestrator, fanout_arguments(1))
    harness.require_success(warm_up)
    result, wall_s = harness.orchestrate(orchestrator, fanout_arguments())
    harness.require_success(result)
    round_trip_s = sequential_s / CALLS
    parallel_round_trip_s = parallel_s * CONCURRENCY / CALLS
    durations = [subtask_seconds(s) for s in result.get("subtasks", [])]
    busy_s = sum(durations)
    slot_s = wall_s * CONCURRENCY / CALLS
    return {
        "taskId": result.get("taskId"),
        "reynoldsS": wall_s,
        "sdkSequentialS": sequential_s,
        "sdkParallelS": parallel_s,
        "sdkRoundTripMs": round_trip_s * 1000,
        "sdkParallelRoundTripMs": parallel_round_trip_s * 1000,
        "speedup": sequential_s / wall_s,
        "sdkParallelSpeedup": sequential_s / parallel_s,
        # Against the SDK client at the same concurrency: the downstream answers both alike.
        "overheadPerCallMs": (slot_s - parallel_round_trip_s) * 1000,
        "slotOverSequentialRoundTripMs": (slot_s - round_trip_s) * 1000,
        "ratioVsSdkParallel": wall_s / parallel_s,
        "serverMakespanS": result.get("metrics", {}).get("makespanSeconds"),
        # Inside the orchestrator: a subtask's mean time from start to end, and how many ran
        # at once on average over the makespan.
        "meanSubtaskMs": busy_s / max(len(durations), 1) * 1000,
        "meanConcurrency": busy_s / (result.get("metrics", {}).get("makespanSeconds") or 1),
    }


def subtask_seconds(subtask: dict[str, Any]) -> float:
    started, finished = subtask.get("startedAt"), subtask.get("finishedAt")
    if not started or not finished:
        return 0.0
    return (
        datetime.fromisoformat(finished.replace("Z", "+00:00"))
        - datetime.fromisoformat(started.replace("Z", "+00:00"))
    ).total_seconds()


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="reynolds-bench-mcp-"))
    try:
        with harness.server_for(args) as downstream:
            private = argparse.Namespace(spawn=True, url=None)
            extra = orchestrator_config(root, downstream)
            with harness.server_for(private, extra_env=extra) as orchestrator:
                runs = [one_run(downstream, orchestrator) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    keys = (
        "reynoldsS",
        "sdkSequentialS",
        "sdkParallelS",
        "speedup",
        "sdkParallelSpeedup",
        "overheadPerCallMs",
        "slotOverSequentialRoundTripMs",
        "meanConcurrency",
    )
    summary = {key: harness.best_median([r[key] for r in runs]) for key in keys}
    # The best speed-up is the largest.
    for key in ("speedup", "sdkParallelSpeedup", "meanConcurrency"):
        summary[key]["best"] = max(r[key] for r in runs)
    report: dict[str, Any] = {
        "benchmark": "mcp_fanout",
        "calls": CALLS,
        "maxConcurrency": CONCURRENCY,
        "targetSpeedup": TARGET_SPEEDUP,
        "targetOverheadMs": TARGET_OVERHEAD_MS,
        "machine": harness.machine(),
        "runs": runs,
        "summary": summary,
        "meetsTarget": summary["speedup"]["median"] >= TARGET_SPEEDUP
        and summary["overheadPerCallMs"]["median"] < TARGET_OVERHEAD_MS,
    }
    if not args.json:
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"mcp fan-out: {CALLS} calls of orchestrate_task (one {STEP_S * 1000:.0f} ms step) "
        f"at maxConcurrency {CONCURRENCY}; {report['machine']['cpus']} CPUs"
    )
    headers = [
        "run",
        "reynolds s",
        "sdk sequential s",
        "sdk ×8 s",
        "sdk round trip ms",
        "sdk ×8 round trip ms",
        "speed-up",
        "sdk ×8 speed-up",
        "overhead/call ms",
        "reynolds/sdk×8",
    ]
    rows = [
        [i, r["reynoldsS"], r["sdkSequentialS"], r["sdkParallelS"], r["sdkRoundTripMs"],
         r["sdkParallelRoundTripMs"], r["speedup"], r["sdkParallelSpeedup"],
         r["overheadPerCallMs"], r["ratioVsSdkParallel"]]
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
    verdict = "meets" if report["meetsTarget"] else "misses"
    print(f"median speed-up {summary['speedup']['median']:.2f}×, overhead "
          f"{summary['overheadPerCallMs']['median']:.2f} ms a call: {verdict} the targets "
          f"(≥ {TARGET_SPEEDUP}×, < {TARGET_OVERHEAD_MS} ms)")  # fmt: skip


def main() -> int:
    p = harness.parser(__doc__.splitlines()[0])
    return harness.main_guard(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
