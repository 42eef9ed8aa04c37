"""A Reynolds server a fault test may kill and start again on the same home: the e2e suite's
`cli_support.Server` (started and stopped with the CLI) plus what the faults need — its pid,
the tasks it accepted, a journal, and the ledger check on its own store."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, make_server, output
from fault_ledger import TASK_ENDS, Figures, Run, assert_ledger, complete, read_journal
from tests.helpers.faults import ROOT, pools_yaml, read_pid
from tests.helpers.polling import wait_for
from tests.helpers.processes import is_running, kill_carrying

# Quick retries, breakers that never open on the failures the faults cause on purpose, no
# rate limit on the polling, and the test callables importable by the python workers.
BASE_ENV = {
    "REYNOLDS_RETRY_BASE_S": "0.05",
    "REYNOLDS_RETRY_CAP_S": "0.2",
    "REYNOLDS_BREAKER_FAILURES": "1000",
    "REYNOLDS_RATE_LIMIT_PER_S": "0",
    "PYTHONPATH": str(ROOT),
}
CALLABLES = ["tests.helpers.faults:*"]


class Rig:
    """One test's server, its configuration, journal and the tasks it accepted."""

    def __init__(
        self, root: Path, env: Mapping[str, str] | None = None, platform_limits: str | None = None
    ) -> None:
        self.server: Server = make_server(root)
        config = root / "config"
        config.mkdir(exist_ok=True)
        (config / "agents.yaml").write_text(pools_yaml(CALLABLES, platform_limits))
        self.env = {**BASE_ENV, "REYNOLDS_CONFIG_DIR": str(config), **(env or {})}
        self.journal = root / "journal.tsv"
        # Every shell action of the rig carries this entry: whatever is left is found by it.
        self.mark = f"REYNOLDS_TEST_MARK={uuid.uuid4().hex}"
        self.accepted: list[str] = []
        # The tags callables journal under (they know no task id), and the tasks they stand for.
        self.aliases: dict[str, str] = {}

    # -- the server's life ------------------------------------------------------------

    def start(self) -> None:
        started = self.server.run("start", env=self.env)
        if started.returncode != 0:
            self.server.run("stop", env=self.env)
            pytest.fail(output(started) + self.logs())

    def stop(self) -> None:
        self.server.run("stop", env=self.env)
        kill_carrying(self.mark)

    @property
    def pid(self) -> int:
        pid = read_pid(self.server.home / "reynolds.pid")
        assert pid is not None, "the server wrote no pid file"
        return pid

    def kill(self) -> None:
        """SIGKILL the server, and wait until it is gone."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not is_running(pid), 10, f"the server {pid} outlived SIGKILL")

    @property
    def store_url(self) -> str:
        return self.env.get("REYNOLDS_DATABASE_URL") or f"sqlite:///{self.server.home}/reynolds.db"

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.server.home.glob("**/*.log"))
        )

    # -- tasks ------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)

    def submit(self, task: dict[str, Any], **arguments: Any) -> str:
        """Accept a task (not waiting for it); its id is kept for the ledger check."""
        task = marked(task, self.mark)
        with self.client() as client:
            answer = client.post(
                "/mcp/tools/orchestrate_task",
                json={"arguments": {"task": task, "wait": False, **arguments}},
            )
        assert answer.status_code == 200, answer.text
        task_id: str = answer.json()["structuredContent"]["taskId"]
        assert task_id, answer.text
        self.accepted.append(task_id)
        return task_id

    def task(self, task_id: str, every_subtask: bool = False) -> dict[str, Any]:
        """`GET /tasks/{id}`; with `every_subtask`, the subtasks a long answer pages too."""
        with self.client() as client:
            answer = client.get(f"/tasks/{task_id}")
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()
            return complete(client, result) if every_subtask else result

    def ended(self, task_ids: list[str] | None = None, timeout_s: float = 60) -> None:
        """Wait until every task (the accepted ones by default) has ended."""
        ids = task_ids if task_ids is not None else self.accepted

        def all_ended() -> bool:
            return all(self.task(t)["status"] in TASK_ENDS for t in ids)

        wait_for(all_ended, timeout_s, f"tasks still running:\n{self.logs()}", interval_s=0.1)

    def runs(self) -> list[Run]:
        return read_journal(self.journal, self.aliases)

    def check(self, expirations: int = 0, unrecorded: int = 0) -> Figures:
        """The ledger check over every task this rig accepted."""
        journal = self.runs()
        return assert_ledger(
            self.base_url,
            self.store_url,
            self.accepted,
            journal=journal,
            lease_expirations=expirations,
            unrecorded=unrecorded,
        )

    def health(self) -> httpx.Response:
        with self.client() as client:
            return client.get("/health")


def marked(task: dict[str, Any], mark: str) -> dict[str, Any]:
    """`task` with `mark` (`NAME=value`) in the environment of each of its shell actions."""
    name, _, value = mark.partition("=")
    out = dict(task)
    for key in ("steps", "subtasks"):
        if key in task:
            out[key] = [_mark_step(step, name, value) for step in task[key]]
    return out


def _mark_step(step: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    action = step.get("action") or {}
    if action.get("kind") != "shell":
        return step
    env = {**action.get("env", {}), name: value}
    return {**step, "action": {**action, "env": env}}
