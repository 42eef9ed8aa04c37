"""The engine on real processes and a real SQLite store."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.polling import wait_for_async
from tests.helpers.processes import is_running

from reynolds.bootstrap import Container, build
from reynolds.core.models import Strategy, TaskSpec
from reynolds.settings import Settings

pytestmark = pytest.mark.anyio
PY = sys.executable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Container]:
    settings = Settings(home=tmp_path / "home", retry_base_s=0.05, retry_cap_s=0.2)
    container = await build(settings)
    try:
        yield container
    finally:
        await container.aclose()


def shell(*argv: str, **extra: Any) -> dict[str, Any]:
    return {"action": {"kind": "shell", "argv": list(argv)}, **extra}


async def run_task(
    app: Container,
    task: dict[str, Any],
    strategy: dict[str, Any] | None = None,
    timeout_s: float = 30,
) -> dict[str, Any]:
    spec = TaskSpec.model_validate(task)
    run = await app.engine.submit(spec, Strategy.model_validate(strategy) if strategy else None)
    assert await app.engine.wait(run, timeout_s), "task did not finish in time"
    return await app.engine.result(run.id)


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["subtasks"]}


def ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_a_diamond_runs_in_order_with_its_branches_overlapping(app: Container) -> None:
    nap = (PY, "-c", "import time; time.sleep(0.4)")
    result = await run_task(
        app,
        {
            "type": "x",
            "subtasks": [
                {"id": "a", **shell("true")},
                {"id": "b", "dependsOn": ["a"], **shell(*nap)},
                {"id": "c", "dependsOn": ["a"], **shell(*nap)},
                {"id": "d", "dependsOn": ["b", "c"], **shell("true")},
            ],
        },
        {"maxConcurrency": 4},
    )
    assert result["status"] == "succeeded", result
    s = by_id(result)
    assert ts(s["a"]["finishedAt"]) <= ts(s["b"]["startedAt"])
    assert ts(s["b"]["startedAt"]) < ts(s["c"]["finishedAt"])
    assert ts(s["c"]["startedAt"]) < ts(s["b"]["finishedAt"])
    assert ts(s["d"]["startedAt"]) >= max(ts(s["b"]["finishedAt"]), ts(s["c"]["finishedAt"]))
    assert result["plan"]["parallelGroups"] == [["a"], ["b", "c"], ["d"]]


async def test_component_names_with_shell_metacharacters_stay_plain_text(
    app: Container, tmp_path: Path
) -> None:
    names = [
        f"a; touch {tmp_path}/p1",
        f"$(touch {tmp_path}/p2)",
        f"`touch {tmp_path}/p3`",
        "x | cat > /tmp/never",
        "*",
    ]
    result = await run_task(
        app,
        {
            "type": "x",
            "components": names,
            "steps": [{"name": "echo", **shell("printf", "%s", "{component}")}],
        },
    )
    assert result["status"] == "succeeded"
    assert sorted(s["output"] for s in result["subtasks"]) == sorted(names)
    assert not list(tmp_path.glob("p*"))


async def test_a_value_that_looks_like_an_option_is_denied(app: Container) -> None:
    result = await run_task(
        app,
        {
            "type": "x",
            "components": ["--output=/etc/x"],
            "steps": [{"name": "cat", **shell("cat", "{component}")}],
        },
    )
    sub = result["subtasks"][0]
    assert (result["status"], sub["status"], sub["reason"]) == ("failed", "failed", "denied")


async def test_a_timeout_kills_the_whole_process_group(app: Container, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = await run_task(
        app,
        {"type": "x", "steps": [{"name": "hang", "timeoutSeconds": 1, **shell(PY, "-c", code)}]},
    )
    assert time.monotonic() - started < 10
    sub = result["subtasks"][0]
    assert (sub["status"], sub["reason"]) == ("failed", "timeout")
    assert not is_running(int(pidfile.read_text()))


async def test_cancel_stops_running_processes(app: Container, tmp_path: Path) -> None:
    code = "import os,sys,time; open(sys.argv[1],'w').write(str(os.getpid())); time.sleep(60)"
    spec = TaskSpec.model_validate(
        {
            "type": "x",
            "components": ["a", "b", "c"],
            "steps": [{"name": "nap", **shell(PY, "-c", code, f"{tmp_path}/{{component}}.pid")}],
        }
    )
    run = await app.engine.submit(spec, Strategy(max_concurrency=2))
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    await wait_for_async(lambda: all(p.exists() and p.read_text() for p in pids))
    result = await app.engine.cancel(run.id)
    assert result["status"] == "cancelled"
    assert {s["status"] for s in result["subtasks"]} == {"cancelled"}
    for p in pids:
        await wait_for_async(lambda p=p: not is_running(int(p.read_text())))
    assert not (tmp_path / "c.pid").exists()


async def test_retries_back_off_and_then_succeed(app: Container, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    code = (
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1)); sys.exit(0 if n >= 2 else 3)\n"
    )
    result = await run_task(
        app,
        {
            "type": "x",
            "steps": [{"name": "flaky", "retries": 3, **shell(PY, "-c", code, str(counter))}],
        },
    )
    sub = result["subtasks"][0]
    assert (sub["status"], sub["attempts"]) == ("succeeded", 3)
    events = await asyncio.to_thread(app.store.events, result["taskId"])
    starts = [e["at"] for e in events if e["kind"] == "subtask_started"]
    delays = [e["data"]["delaySeconds"] for e in events if e["kind"] == "subtask_retry"]
    assert len(starts) == 3 and len(delays) == 2
    for gap, delay in zip([b - a for a, b in itertools.pairwise(starts)], delays, strict=True):
        assert gap >= delay


async def test_downstream_subtasks_are_skipped_when_an_upstream_fails(app: Container) -> None:
    result = await run_task(
        app,
        {
            "type": "x",
            "subtasks": [
                {"id": "a", **shell("false")},
                {"id": "b", "dependsOn": ["a"], **shell("true")},
                {"id": "c", "dependsOn": ["b"], **shell("true")},
                {"id": "z", **shell("true")},
            ],
        },
    )
    s = by_id(result)
    assert result["status"] == "failed" and not result["success"]
    assert (s["a"]["status"], s["b"]["status"], s["c"]["status"], s["z"]["status"]) == (
        "failed",
        "skipped",
        "skipped",
        "succeeded",
    )
    assert s["a"]["exitCode"] == 1


async def test_a_second_run_uses_learned_durations_to_start_the_longest_first(
    app: Container,
) -> None:
    task = {
        "type": "skewed",
        "components": ["0.05", "0.06", "0.07", "0.6"],
        "steps": [
            {
                "name": "nap",
                # `sleep` starts in a millisecond, so a loaded machine cannot blur the skew.
                **shell("sleep", "{component}"),
            }
        ],
    }
    first = await run_task(app, task, {"maxConcurrency": 1})
    second = await run_task(app, task, {"maxConcurrency": 1})

    def order(result: dict[str, Any]) -> list[str]:
        return [
            s["component"] for s in sorted(result["subtasks"], key=lambda s: ts(s["startedAt"]))
        ]

    assert order(first)[0] == "0.05"
    assert order(second)[0] == "0.6"
    assert second["plan"]["criticalPath"] == ["nap:0.6"]


async def test_output_is_capped_and_marked(app: Container) -> None:
    result = await run_task(
        app, {"type": "x", "steps": [{"name": "loud", **shell(PY, "-c", "print('x' * 200000)")}]}
    )
    out = result["subtasks"][0]["output"]
    assert "output truncated" in out and len(out) < 70_000


async def test_a_missing_executable_fails_with_127(app: Container) -> None:
    result = await run_task(
        app, {"type": "x", "steps": [{"name": "n", **shell("no-such-tool-xyz")}]}
    )
    assert result["subtasks"][0]["exitCode"] == 127


@pytest.fixture
async def custom(tmp_path: Path) -> AsyncIterator[Container]:
    """A server whose pools declare an executor, callables, an executables list and a host."""
    import yaml

    config = yaml.safe_load(Settings().agents_file.read_text())
    code = config["pools"]["code"]
    code["executor"] = {"kind": "shell", "argv": ["printf", "%s/%s", "{step}", "{component}"]}
    code["callables"] = ["tests.helpers.callables:add"]
    config["pools"]["platform"]["executables"] = ["printf"]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "agents.yaml").write_text(yaml.safe_dump(config))
    settings = Settings(home=tmp_path / "home", config_dir=tmp_path / "config")
    container = await build(settings)
    try:
        yield container
    finally:
        await container.aclose()


async def test_a_pattern_task_runs_the_pools_configured_executor(custom: Container) -> None:
    result = await run_task(custom, {"type": "db-migration", "components": ["users", "orders"]})
    assert result["status"] == "succeeded", result
    outputs = {s["id"]: s["output"] for s in result["subtasks"]}
    assert outputs == {
        "migrate:users": "migrate/users",
        "migrate:orders": "migrate/orders",
        "validate": "validate/",
    }
    assert {s["agentType"] for s in result["subtasks"]} == {"code"}


async def test_python_actions_run_only_callables_the_pool_declares(custom: Container) -> None:
    result = await run_task(
        custom,
        {
            "type": "x",
            "subtasks": [
                {
                    "id": "ok",
                    "agent": "code",
                    "action": {
                        "kind": "python",
                        "callable": "tests.helpers.callables:add",
                        "kwargs": {"a": 2, "b": 3},
                    },
                },
                {
                    "id": "shell-by-another-name",
                    "agent": "code",
                    "action": {
                        "kind": "python",
                        "callable": "os:system",
                        "kwargs": {"command": "touch /tmp/x"},
                    },
                },
            ],
        },
    )
    s = by_id(result)
    assert s["ok"]["status"] == "succeeded" and '"sum": 5' in s["ok"]["output"]
    assert (s["shell-by-another-name"]["status"], s["shell-by-another-name"]["reason"]) == (
        "failed",
        "denied",
    )


async def test_a_pools_executables_list_is_enforced(custom: Container) -> None:
    result = await run_task(
        custom,
        {
            "type": "x",
            "subtasks": [
                {"id": "listed", "agent": "platform", **shell("printf", "ok")},
                {"id": "unlisted", "agent": "platform", **shell("touch", "/tmp/never")},
            ],
        },
    )
    s = by_id(result)
    assert s["listed"]["status"] == "succeeded"
    assert (s["unlisted"]["status"], s["unlisted"]["reason"]) == ("failed", "denied")


async def test_http_actions_reach_loopback_and_are_denied_elsewhere(app: Container) -> None:
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/"
        result = await run_task(
            app,
            {
                "type": "x",
                "subtasks": [
                    {"id": "local", "action": {"kind": "http", "method": "GET", "url": url}},
                    {
                        "id": "distributed",
                        "action": {"kind": "http", "method": "GET", "url": "http://10.1.2.3/"},
                    },
                ],
            },
        )
    finally:
        srv.shutdown()
    s = by_id(result)
    assert (s["local"]["status"], s["local"]["exitCode"], s["local"]["output"]) == (
        "succeeded",
        200,
        "hello",
    )
    assert (s["distributed"]["status"], s["distributed"]["reason"]) == ("failed", "denied")


async def test_a_pools_resource_limits_reach_its_actions(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load(Settings().agents_file.read_text())
    config["pools"]["code"]["limits"] = {"openFiles": 64}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "agents.yaml").write_text(yaml.safe_dump(config))
    container = await build(Settings(home=tmp_path / "home", config_dir=tmp_path / "config"))
    code = (
        "import resource, time\n"
        "deadline = time.monotonic() + 5\n"
        "while resource.getrlimit(resource.RLIMIT_NOFILE)[0] != 64:\n"
        "    assert time.monotonic() < deadline\n"
        "    time.sleep(0.001)\n"
        "print('limited')\n"
    )
    try:
        result = await run_task(
            container,
            {
                "type": "x",
                "subtasks": [{"id": "limited", "agent": "code", **shell(PY, "-c", code)}],
            },
        )
    finally:
        await container.aclose()
    assert result["subtasks"][0]["output"].strip() == "limited"


async def test_a_task_no_longer_in_memory_is_answered_whole_from_the_store(
    app: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reynolds.services import live_runs

    monkeypatch.setattr(live_runs, "_RECENT_RUNS", 1)
    engine = app.engine
    spec = {"type": "evict", "components": ["a", "b"], "steps": [shell("sleep", "0.1", name="t")]}
    # Two runs ending together: the second to end evicts the first from memory while the
    # first's last writes are still waiting for the store's next commit.
    runs = [await engine.submit(TaskSpec.model_validate(spec)) for _ in range(2)]
    for run in runs:
        assert await engine.wait(run, 30)
    evicted = [run for run in runs if engine.find(run.id) is None]
    assert len(evicted) == 1

    answer = await engine.result(evicted[0].id)

    assert answer["status"] == "succeeded"
    assert sorted((s["id"], s["status"], s["exitCode"]) for s in answer["subtasks"]) == [
        ("t:a", "succeeded", 0),
        ("t:b", "succeeded", 0),
    ]


async def test_a_task_accepted_without_a_commit_is_committed_before_its_result_is_read(
    tmp_path: Path,
) -> None:
    """`submit(durable=False)` (a client waiting for the end) queues the task's rows without
    committing them; the result read afterwards commits everything first, so what the client
    is told is in the store. A writer that would otherwise sleep 30 s before committing shows
    that nothing but that read's flush committed it."""
    import sqlite3

    settings = Settings(home=tmp_path / "home", store_batch_interval_s=30.0)
    container = await build(settings)
    try:
        spec = TaskSpec.model_validate(
            {"type": "quick", "subtasks": [{"id": "t", **shell("true")}]}
        )
        run = await container.engine.submit(spec, durable=False)
        assert await container.engine.wait(run, 30)
        db = settings.home / "reynolds.db"
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT count(*) FROM tasks").fetchone() == (0,)

        answer = await container.engine.result(run.id)

        with sqlite3.connect(db) as connection:
            task = connection.execute("SELECT status FROM tasks WHERE id = ?", (run.id,))
            assert task.fetchone() == (answer["status"],) == ("succeeded",)
            subtask = connection.execute("SELECT status FROM subtasks WHERE task_id = ?", (run.id,))
            assert subtask.fetchall() == [("succeeded",)]
    finally:
        await container.aclose()
