"""The web dashboard under load, in a real browser (Debian's chromium through Playwright):
with 1,000 finished tasks and a running task of 2,000 subtasks, the time from navigation to the
first render of the task list and pools (aim < 2 s), and the time to apply 100 subtask events
to the open task's detail — its DAG nodes and the refreshed result (aim < 1 s).

The events are applied through the page's own handler (`window.ReynoldsDashboard.apply`, what
the event stream calls), then the page waits for the refreshes they ask for: the measure is the
page's, not how fast the server happens to produce events.

    .venv/bin/python benchmarks/dashboard.py --spawn [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness

FINISHED_TASKS = 1000
RUNNING_SUBTASKS = 2000
EVENTS = 100
TARGETS_S = {"firstRenderSeconds": 2.0, "apply100EventsSeconds": 1.0}
CHROMIUM = os.environ.get("REYNOLDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SUBMIT_AT_ONCE = 16


def submit(server: harness.Server, task: dict[str, Any], strategy: dict[str, Any]) -> str:
    arguments = {"task": task, "strategy": strategy, "wait": False, "force": True}
    with server.client() as client:
        answer = client.post("/mcp/tools/orchestrate_task", json={"arguments": arguments})
    if answer.status_code != 200:
        raise harness.BenchmarkError(f"orchestrate_task: {answer.status_code} {answer.text}")
    task_id: str = answer.json()["structuredContent"]["taskId"]
    return task_id


def finished_count(server: harness.Server) -> int:
    with server.client() as client:
        counts = client.get("/status").json()["tasks"]
    return int(counts.get("succeeded", 0))


def load(server: harness.Server) -> str:
    """1,000 finished one-subtask tasks, then a task of 2,000 subtasks left running."""
    from concurrent.futures import ThreadPoolExecutor

    step = {"id": "s", "action": {"kind": "shell", "argv": ["true"]}}

    def one(i: int) -> str:
        task = {"type": "dashboard-bench", "description": f"task {i}", "subtasks": [step]}
        return submit(server, task, {})

    with ThreadPoolExecutor(SUBMIT_AT_ONCE) as pool:
        list(pool.map(one, range(FINISHED_TASKS)))
    deadline = time.monotonic() + 300
    while finished_count(server) < FINISHED_TASKS:
        if time.monotonic() > deadline:
            raise harness.BenchmarkError("the 1,000 tasks did not finish in 5 minutes")
        time.sleep(0.5)
    big = {
        "type": "dashboard-bench-running",
        "description": f"{RUNNING_SUBTASKS} subtasks, running",
        "subtasks": [
            {"id": f"s{i:04d}", "action": {"kind": "shell", "argv": ["sleep", "600"]}}
            for i in range(RUNNING_SUBTASKS)
        ],
    }
    return submit(server, big, {"maxConcurrency": 4})


def measure(server: harness.Server, running: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            if server.token:
                page.goto(f"{server.url}/")
                page.fill("input[name=token]", server.token)
                page.click("button[type=submit]")
                page.wait_for_selector("#tasks")
            page.goto(f"{server.url}/")
            page.wait_for_function(
                "(n) => document.querySelectorAll('#tasks tbody tr').length >= n"
                " && document.querySelectorAll('[data-pool]').length > 0",
                arg=FINISHED_TASKS,
                timeout=60_000,
                polling="raf",
            )
            first_render_ms = page.evaluate("() => performance.now()")
            page.locator(f'tr[data-task-id="{running}"]').click()
            page.wait_for_selector("svg.dag .node", timeout=60_000)
            events = [
                {"kind": "subtask_finished", "taskId": running, "subtaskId": f"s{i:04d}",
                 "data": {"status": "succeeded"}, "at": "2026-12-05T00:00:00Z"}
                for i in range(EVENTS)
            ]  # fmt: skip
            apply_ms = page.evaluate(
                """async (events) => {
                    const t0 = performance.now();
                    await window.ReynoldsDashboard.apply(events);
                    await new Promise((r) => requestAnimationFrame(() => r()));
                    return performance.now() - t0;
                }""",
                events,
            )
        finally:
            browser.close()
    return {"firstRenderSeconds": first_render_ms / 1000, "apply100EventsSeconds": apply_ms / 1000}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not Path(CHROMIUM).is_file():
        raise harness.BenchmarkError(f"no {CHROMIUM}: apt-get install chromium")
    if sys.version_info < (3, 12):
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    rows = []
    with harness.server_for(args) as server:
        running = load(server)
        try:
            for _ in range(args.repeat):
                rows.append(measure(server, running))
        finally:
            with server.client() as client:
                client.post(f"/tasks/{running}/cancel", json={})
    summary = {
        key: {"best": min(r[key] for r in rows), "median": statistics.median(r[key] for r in rows)}
        for key in TARGETS_S
    }  # fmt: skip
    report = {
        "benchmark": "dashboard",
        "machine": harness.machine(),
        "finishedTasks": FINISHED_TASKS,
        "runningSubtasks": RUNNING_SUBTASKS,
        "targets": TARGETS_S,
        "runs": rows,
        "summary": summary,
        "meetsTarget": all(summary[k]["median"] < TARGETS_S[k] for k in TARGETS_S),
    }
    if not args.json:
        table = [
            [key, f"{s['median']:.3f}", f"{s['best']:.3f}", f"< {TARGETS_S[key]:g}"]
            for key, s in summary.items()
        ]
        print(harness.table(["measure", "median (s)", "best (s)", "aim (s)"], table))
    return report


if __name__ == "__main__":
    parser = harness.parser(__doc__ or "", repeat=3)
    raise SystemExit(harness.main_guard(run, parser.parse_args()))
