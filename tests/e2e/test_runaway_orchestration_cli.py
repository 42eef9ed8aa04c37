"""Runaway orchestration, end to end: a step that runs `reynolds orchestrate` on its own task
file starts a task that does the same and waits for it, and so on; loop prevention refuses
the generation too deep, and the chain stops there with the evidence, each waiting ancestor
failing in turn."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cli_support import Server, output
from tests.helpers.polling import wait_for

DEPTH_REFUSED = 5  # core/loops: DEPTH_FREE 2 + 3 units of evidence at ρ = 0.1


def all_tasks(server: Server) -> list[dict[str, Any]]:
    listed = server.run("tasks", "list", "--json", "--limit", "100")
    assert listed.returncode == 0, output(listed)
    tasks: list[dict[str, Any]] = json.loads(listed.stdout)["tasks"]
    return tasks


def result_of(server: Server, task_id: str) -> dict[str, Any]:
    shown = server.run("tasks", "show", task_id, "--json")
    assert shown.returncode == 0, output(shown)
    result: dict[str, Any] = json.loads(shown.stdout)
    return result


def test_a_task_that_orchestrates_itself_is_stopped_at_the_refused_depth(
    live_server: Server, tmp_path: Path
) -> None:
    task_file = tmp_path / "itself.json"
    env = {"REYNOLDS_HOST": "127.0.0.1", "REYNOLDS_PORT": str(live_server.port)}
    argv = [sys.executable, "-m", "reynolds", "orchestrate", str(task_file)]
    task = {
        "task": {
            "type": "recursion",
            "description": f"orchestrates itself ({tmp_path.name})",
            "subtasks": [{"id": "again", "action": {"kind": "shell", "argv": argv, "env": env}}],
        }
    }
    task_file.write_text(json.dumps(task), encoding="utf-8")
    before = {t["taskId"] for t in all_tasks(live_server)}

    first = live_server.run("orchestrate", str(task_file), "--json")
    assert first.returncode == 1, output(first)  # its child failed, and so on down

    def chain() -> list[dict[str, Any]] | None:
        mine = [t for t in all_tasks(live_server) if t["taskId"] not in before]
        done = [result_of(live_server, t["taskId"]) for t in mine]
        if len(done) == DEPTH_REFUSED and all(r["status"] != "running" for r in done):
            finished = [r for r in done if r["status"] in ("succeeded", "failed")]
            return done if len(finished) == DEPTH_REFUSED else None
        return None

    tasks = wait_for(chain, 120, "the chain of tasks to stop")
    by_depth = {t.get("depth", 0): t for t in tasks}
    assert sorted(by_depth) == list(range(DEPTH_REFUSED))
    for depth in range(1, DEPTH_REFUSED):
        assert by_depth[depth]["parentTaskId"] == by_depth[depth - 1]["taskId"]
    deepest = by_depth[DEPTH_REFUSED - 1]
    step = deepest["subtasks"][0]
    # Its `reynolds orchestrate` was refused: exit 4, the verdict in its output.
    assert deepest["status"] == "failed" and step["exitCode"] == 4, step
    assert "generation of tasks started by tasks" in step["output"] + step["error"]
    for depth in range(DEPTH_REFUSED - 1):
        assert by_depth[depth]["status"] == "failed"
        assert by_depth[depth]["subtasks"][0]["exitCode"] == 1
