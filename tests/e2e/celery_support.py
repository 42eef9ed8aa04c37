"""A Celery cluster for the end-to-end tests: a real server on the Celery backend, real
`reynolds agent` workers and a Redis broker the test starts itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, make_server, output
from tests.helpers.polling import wait_for
from tests.helpers.redis_server import RedisServer

LEASE_S = 3
ROOT = Path(__file__).resolve().parents[2]
# Each subtask prints the pid of the worker process that ran it (its parent).
MCP_DOWNSTREAM = ROOT / "tests" / "helpers" / "mcp_downstream.py"
REPORT_PARENT = ["import os, sys, time", "time.sleep(float(sys.argv[1]))", "print(os.getppid())"]


def work(seconds: float) -> list[str]:
    return [sys.executable, "-c", "; ".join(REPORT_PARENT), str(seconds)]


@dataclass
class Cluster:
    server: Server
    redis: RedisServer
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(
        self, pool: str, concurrency: int, health_port: int = 0, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """A `reynolds agent` for `pool`; `cwd` is its workspace (the server's by default)."""
        log = (self.server.home / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "reynolds", "agent", "--type", pool),
                *("--concurrency", str(concurrency), "--health-port", str(health_port)),
            ],
            env={**self.server.env, **self.env},
            cwd=cwd or self.server.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the test kills it whole
        )
        self.workers.append(proc)
        return proc

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=60)

    def slots(self, pool: str) -> int:
        with self.client() as client:
            status = client.get("/status").json()
        return next(p["replicas"] for p in status["pools"] if p["type"] == pool)

    def celery(self) -> dict[str, Any]:
        with self.client() as client:
            result: dict[str, Any] = client.get("/status").json()["celery"]
            return result

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A tool's structured answer, called over the REST API."""
        with self.client() as client:
            answer = client.post(f"/mcp/tools/{name}", json={"arguments": arguments})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["structuredContent"]
        return result

    def metrics(self) -> str:
        with self.client() as client:
            return client.get("/metrics").text

    def submit(self, components: int, seconds: float) -> str:
        return self.submit_task(
            {
                "type": "celery-e2e",
                "components": [f"c{i:02d}" for i in range(components)],
                "steps": [
                    {
                        "name": "work",
                        "agent": "devops",
                        "action": {"kind": "shell", "argv": work(seconds)},
                    }
                ],
            }
        )

    def submit_task(self, task: dict[str, Any]) -> str:
        task_id: str = self.tool("orchestrate_task", {"task": task, "wait": False})["taskId"]
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        with self.client() as client:
            result: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
            return result

    def finished(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            task = self.task(task_id)
            return task if task["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(ended, timeout_s, interval_s=0.2)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.server.home.glob("**/*.log"))
        )


@contextlib.contextmanager
def running_cluster(
    root: Path, redis: RedisServer, lease_s: float, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A server on the Celery backend in `root`, with `env` on top of the cluster's own;
    its workers are killed and the server stopped at the end."""
    server = make_server(root)
    # The shipped pools, with the test callables and the test MCP server declared for devops.
    config = root / "config"
    config.mkdir()
    pools = (ROOT / "config" / "agents.yaml").read_text()
    downstream = json.dumps({"command": sys.executable, "args": [str(MCP_DOWNSTREAM)]})
    declared = (
        '    callables: ["tests.helpers.callables:*"]\n'
        f"    mcpServers: {{downstream: {downstream}}}"
    )
    (config / "agents.yaml").write_text(pools.replace("    callables: []", declared, 1))
    cluster_env = {
        "REYNOLDS_BACKEND": "celery",
        "REYNOLDS_REDIS_URL": redis.url,
        "REYNOLDS_LEASE_S": str(lease_s),
        "REYNOLDS_CONFIG_DIR": str(config),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    started = server.run("start", env=cluster_env)
    if started.returncode != 0:
        server.run("stop")  # a server that never became healthy may still be running
        pytest.fail(output(started))
    cluster = Cluster(server, redis, cluster_env)
    try:
        yield cluster
    finally:
        for proc in cluster.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        server.run("stop")
