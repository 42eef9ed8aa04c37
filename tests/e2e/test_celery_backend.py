"""The Celery backend end to end: a real server, real `reynolds agent` workers and a Redis
broker the test starts (and restarts) itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery_support import LEASE_S, Cluster, running_cluster
from cli_support import free_port
from tests.helpers.polling import wait_for
from tests.helpers.processes import descendants, is_running
from tests.helpers.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def lease_s() -> float:
    """The lease the cluster's server gives a dispatch; a test may parametrize its own."""
    return LEASE_S


@pytest.fixture
def cluster(tmp_path: Path, redis_broker: RedisServer, lease_s: float) -> Iterator[Cluster]:
    with running_cluster(tmp_path, redis_broker, lease_s) as cluster:
        yield cluster


def ran_on(task: dict[str, Any], worker: subprocess.Popen[bytes]) -> int:
    """How many of the task's subtasks a process of `worker` ran (by their printed parent)."""
    pids = {str(p) for p in descendants(worker.pid)}
    return sum(1 for s in task["subtasks"] if (s.get("output") or "").strip() in pids)


def test_a_task_of_twenty_subtasks_spreads_over_two_workers(cluster: Cluster) -> None:
    health_port = free_port()
    first = cluster.start_worker("devops", 2, health_port=health_port)
    second = cluster.start_worker("devops", 2)
    wait_for(lambda: cluster.slots("devops") == 4, 60)

    task = cluster.finished(cluster.submit(20, 0.3), 60)

    assert task["status"] == "succeeded", cluster.logs()
    assert len(task["subtasks"]) == 20
    assert all(s["status"] == "succeeded" for s in task["subtasks"])
    on_first, on_second = ran_on(task, first), ran_on(task, second)
    assert on_first + on_second == 20
    assert on_first > 0 and on_second > 0
    with httpx.Client() as client:
        health = client.get(f"http://127.0.0.1:{health_port}/health").json()
    assert health["status"] == "healthy"
    assert health["agentType"] == "devops"
    # Each worker keeps its own log, JSON lines about the subtasks it ran: one line an attempt,
    # written after its report (so perhaps a moment after the task ended), and no line of
    # Celery's own received / succeeded.
    logs = cluster.server.home / "logs"

    def attempts_logged() -> dict[Path, list[dict[str, Any]]]:
        paths = [
            p for p in logs.glob("devops-*.log") if re.fullmatch(r"devops-[0-9a-f]{8}", p.stem)
        ]
        found = {}
        for path in paths:
            records = [json.loads(line) for line in path.read_text().splitlines()]
            assert not [r for r in records if r.get("logger") == "celery.worker.strategy"]
            found[path] = [r for r in records if r["event"].startswith("attempt done")]
        done = [r for lines in found.values() for r in lines]
        return found if len(paths) == 2 and len(done) >= 20 else {}

    logged = wait_for(attempts_logged, 10, "the workers did not log every attempt")
    ran = set()
    for path, done in logged.items():
        assert done, path
        assert {r["event"] for r in done} == {"attempt done: reported"}
        assert {r["taskId"] for r in done} == {task["taskId"]}
        ran |= {r["subtaskId"] for r in done}
    assert ran == {s["id"] for s in task["subtasks"]}


def test_a_sigkilled_worker_s_subtasks_finish_on_the_other_within_a_minute(
    cluster: Cluster,
) -> None:
    doomed = cluster.start_worker("devops", 2)
    survivor = cluster.start_worker("devops", 2)
    wait_for(lambda: cluster.slots("devops") == 4, 60)
    task_id = cluster.submit(20, 1.0)
    # Both workers busy: then the first dies whole, main process and pool children at once.
    wait_for(lambda: cluster.celery()["claimed"] >= 4, 30, interval_s=0.05)
    killed_at = time.monotonic()
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()

    task = cluster.finished(task_id, 60)

    assert time.monotonic() - killed_at < 60
    assert task["status"] == "succeeded", cluster.logs()
    assert sorted(s["component"] for s in task["subtasks"]) == [f"c{i:02d}" for i in range(20)]
    assert all(s["status"] == "succeeded" for s in task["subtasks"])
    assert ran_on(task, survivor) >= 18  # the doomed worker finished at most its first two
    assert cluster.celery()["expiredLeases"] >= 1


def test_a_redis_restart_mid_run_loses_nothing(cluster: Cluster) -> None:
    cluster.start_worker("devops", 2)
    cluster.start_worker("devops", 2)
    wait_for(lambda: cluster.slots("devops") == 4, 60)
    task_id = cluster.submit(20, 0.5)
    wait_for(
        lambda: sum(s["status"] == "succeeded" for s in cluster.task(task_id)["subtasks"]) >= 4,
        30,
        interval_s=0.05,
    )

    cluster.redis.stop()
    time.sleep(1.0)  # an outage the workers and the orchestrator both notice
    cluster.redis.start()

    task = cluster.finished(task_id, 90)
    assert task["status"] == "succeeded", cluster.logs()
    assert len(task["subtasks"]) == 20
    assert all(s["status"] == "succeeded" for s in task["subtasks"])


def test_python_actions_run_on_a_worker_within_its_declared_callables(cluster: Cluster) -> None:
    cluster.start_worker("devops", 1)
    wait_for(lambda: cluster.slots("devops") == 1, 60)
    step = {"agent": "devops"}
    allowed = {
        "kind": "python",
        "callable": "tests.helpers.callables:add",
        "kwargs": {"a": 2, "b": 3},
    }
    refused = {"kind": "python", "callable": "os:system", "kwargs": {"command": "true"}}
    task_id = cluster.submit_task(
        {
            "type": "celery-python",
            "subtasks": [
                {"id": "allowed", **step, "action": allowed},
                {"id": "refused", **step, "action": refused},
            ],
        }
    )
    task = cluster.finished(task_id, 60)
    by_id = {s["id"]: s for s in task["subtasks"]}
    assert by_id["allowed"]["status"] == "succeeded", cluster.logs()
    assert json.loads(by_id["allowed"]["output"]) == {"sum": 5}
    assert by_id["refused"]["status"] == "failed"
    assert by_id["refused"]["reason"] == "denied"


def test_mcp_actions_run_on_a_worker_over_its_own_session(cluster: Cluster) -> None:
    worker = cluster.start_worker("devops", 2)
    wait_for(lambda: cluster.slots("devops") == 2, 60)
    echo = {"kind": "mcp", "server": "downstream", "tool": "echo"}
    task_id = cluster.submit_task(
        {
            "type": "celery-mcp",
            "components": ["api", "web"],
            "steps": [
                {
                    "name": "echo",
                    "agent": "devops",
                    "action": {**echo, "arguments": {"value": "{component}/{taskType}"}},
                },
                {
                    "name": "who",
                    "agent": "devops",
                    "action": {"kind": "mcp", "server": "downstream", "tool": "whoami"},
                },
                {
                    "name": "elsewhere",
                    "agent": "devops",
                    "action": {"kind": "mcp", "server": "jira", "tool": "search"},
                },
            ],
        }
    )
    task = cluster.finished(task_id, 90)
    steps = {(s["component"], s["step"]): s for s in task["subtasks"]}
    for component in ("api", "web"):
        echoed = steps[(component, "echo")]
        assert echoed["status"] == "succeeded", (echoed["error"], cluster.logs()[-3000:])
        assert json.loads(echoed["output"].splitlines()[-1]) == {"value": f"{component}/celery-mcp"}
        assert steps[(component, "elsewhere")]["reason"] == "denied"
    # The stdio server is a child of a process of the worker, not of the orchestrator.
    pids = {json.loads(steps[(c, "who")]["output"].splitlines()[-1])["pid"] for c in ("api", "web")}
    assert pids <= set(descendants(worker.pid))


def test_cancelling_a_task_stops_its_action_on_the_worker(cluster: Cluster) -> None:
    worker = cluster.start_worker("devops", 1)
    wait_for(lambda: cluster.slots("devops") == 1, 60)
    marker = f"reynolds-cancel-{uuid.uuid4().hex}"
    argv = [sys.executable, "-c", "import time; time.sleep(120)", marker]
    task_id = cluster.submit_task(
        {
            "type": "celery-cancel",
            "components": ["only"],
            "steps": [
                {"name": "wait", "agent": "devops", "action": {"kind": "shell", "argv": argv}}
            ],
        }
    )

    def sleeper() -> int | None:
        for pid in descendants(worker.pid):
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_text():
                    return pid
            except OSError:
                continue
        return None

    pid = wait_for(sleeper, 30)
    with cluster.client() as client:
        assert client.post(f"/tasks/{task_id}/cancel", json={}).status_code == 200
    # Fenced: the worker's next heartbeat is refused and it kills the action's group.
    wait_for(lambda: not is_running(pid), LEASE_S * 3)
    assert cluster.task(task_id)["status"] == "cancelled"


def test_scaling_a_pool_grows_and_shrinks_its_workers_processes(cluster: Cluster) -> None:
    worker = cluster.start_worker("devops", 1)
    wait_for(lambda: cluster.slots("devops") == 1, 60)

    def scale(replicas: int) -> dict[str, Any]:
        with cluster.client() as client:
            answer = client.post(
                "/mcp/tools/scale_agents",
                json={"arguments": {"agentType": "devops-agent", "replicas": replicas}},
            )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["structuredContent"]
        return result

    assert scale(3)["pool"]["replicas"] == 3
    # Celery's pool control added two processes to the worker.
    wait_for(lambda: len(descendants(worker.pid)) >= 3, 10)  # three pool processes
    assert scale(1)["pool"]["replicas"] == 1
    with cluster.client() as client:
        status = client.post("/mcp/tools/get_agent_status", json={"arguments": {}}).json()
    recent = status["structuredContent"]["recentScaling"]
    assert [(e["from"], e["to"], e["source"]) for e in recent[:2]] == [
        (3, 1, "manual"),
        (1, 3, "manual"),
    ]
    # A pool no worker serves cannot be scaled.
    with cluster.client() as client:
        refused = client.post(
            "/mcp/tools/scale_agents", json={"arguments": {"agentType": "code", "replicas": 2}}
        )
    assert refused.status_code == 422
    assert "no Celery worker serves the code queue" in refused.text


# The takeover needs Celery to hand the message back and the worker to start a new pool
# process that claims it: well under a second on a quiet machine, but more than a 3 s lease
# on two busy cores. With 12 s, a lease running out still means no takeover happened.
@pytest.mark.parametrize("lease_s", [12.0])
def test_a_killed_pool_process_s_subtask_is_taken_over_at_once_by_its_worker(
    cluster: Cluster,
) -> None:
    worker = cluster.start_worker("devops", 2)
    wait_for(lambda: cluster.slots("devops") == 2, 60)
    task_id = cluster.submit(2, 2.0)
    wait_for(lambda: cluster.celery()["claimed"] == 2, 30, interval_s=0.05)
    pool_processes = [p for p in descendants(worker.pid) if _parent(p) == worker.pid]
    os.kill(pool_processes[0], signal.SIGKILL)

    task = cluster.finished(task_id, 60)

    assert task["status"] == "succeeded", cluster.logs()
    # Celery handed the message back and the worker's next process claimed it: no lease ran out.
    assert cluster.celery()["expiredLeases"] == 0


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def test_a_task_workspace_is_refused_with_422_under_celery(
    cluster: Cluster, tmp_path: Path
) -> None:
    task = {
        "type": "celery-worktrees",
        "subtasks": [{"id": "a", "action": {"kind": "shell", "argv": ["true"]}}],
        "workspace": {"repo": str(tmp_path)},
    }
    with cluster.client() as client:
        r = client.post("/mcp/tools/orchestrate_task", json={"arguments": {"task": task}})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "task.workspace"
    assert "Celery" in r.json()["error"]
