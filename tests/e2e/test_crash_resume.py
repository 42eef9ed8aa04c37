"""A server killed with SIGKILL mid-task resumes every unfinished task when started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers.polling import wait_for
from tests.helpers.processes import DAEMON, carrying, is_running, kill_carrying

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
STEP = (
    "import os, sys, time\n"
    "name, out, pids = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "open(os.path.join(pids, name.replace('/', '_')), 'w').write(str(os.getpid()))\n"
    "time.sleep(2.0 if name.startswith('slow') else 0.3)\n"
    "fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, (name + '\\n').encode()); os.close(fd)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REYNOLDS_HOME": str(home), "REYNOLDS_PORT": str(self.port)}
        self.env.pop("REYNOLDS_API_TOKEN", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.home.parent / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "reynolds", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        wait_for(lambda: self._healthy(), 30, "server did not become healthy")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError((self.home.parent / "server.log").read_text()[-3000:])
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/mcp/tools/{tool}", json={"arguments": arguments}, timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json()["structuredContent"])

    def task(self, task_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/tasks/{task_id}", timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "home")
    try:
        yield srv
    finally:
        srv.stop()


def test_sigkill_mid_task_then_start_finishes_every_component_without_rerunning_successes(
    server: Server, tmp_path: Path
) -> None:
    out, pids = tmp_path / "done.txt", tmp_path / "pids"
    pids.mkdir()
    components = ["slow-one", *[f"c{i:02d}" for i in range(11)]]
    server.start()
    task = server.call(
        "orchestrate_task",
        task={
            "type": "crash-drill",
            "components": components,
            "steps": [
                {
                    "name": "work",
                    "action": {
                        "kind": "shell",
                        "argv": [PY, "-c", STEP, "{component}", str(out), str(pids)],
                    },
                }
            ],
        },
        strategy={"maxConcurrency": 3},
    )
    fragile = server.call(
        "orchestrate_task",
        task={
            "type": "crash-drill",
            "steps": [
                {
                    "name": "once",
                    "idempotent": False,
                    "action": {"kind": "shell", "argv": [PY, "-c", "import time; time.sleep(60)"]},
                }
            ],
        },
    )

    def reported_successes() -> set[str]:
        return {
            s["component"]
            for s in server.task(task["taskId"])["subtasks"]
            if s["status"] == "succeeded"
        }

    wait_for(lambda: len(reported_successes()) >= 3, 30, "no progress before the crash")
    succeeded_before = reported_successes()
    slow_pid = int((pids / "slow-one").read_text())
    assert is_running(slow_pid), "the slow subtask should still be running at the crash"
    server.kill()
    assert is_running(slow_pid), "a SIGKILLed server leaves its process groups behind"

    server.start()
    wait_for(lambda: not is_running(slow_pid), 10, "the restarted server did not kill the orphan")
    wait_for(
        lambda: server.task(task["taskId"])["status"] not in ("running", "pending"),
        60,
        "the resumed task did not finish",
    )
    final = server.task(task["taskId"])
    assert final["status"] == "succeeded", final
    lines = out.read_text().split()
    assert set(lines) == set(components)
    for name in succeeded_before:
        assert lines.count(name) == 1, f"{name} succeeded before the crash and ran again"

    once = server.task(fragile["taskId"])["subtasks"][0]
    assert (once["status"], once["reason"]) == ("failed", "interrupted")


@pytest.fixture
def mark() -> Iterator[str]:
    """An environment entry that only this test's action processes carry."""
    entry = f"REYNOLDS_TEST_MARK={uuid.uuid4().hex}"
    yield entry
    kill_carrying(entry)


# A process in a session of its own ($1 gets its pid) and a double-fork daemon ($4 its pid).
ESCAPE = 'setsid sleep 41.5 & echo $! > "$1"; "$2" -c "$3" "$4" 41.5 & sleep 41.5'


def test_processes_that_escaped_a_killed_server_die_when_it_starts_again(
    server: Server, tmp_path: Path, mark: str
) -> None:
    escaped_pid, daemon_pid = tmp_path / "escaped.pid", tmp_path / "daemon.pid"
    name, _, value = mark.partition("=")
    server.start()
    server.call(
        "orchestrate_task",
        task={
            "type": "crash-drill",
            "steps": [
                {
                    "name": "escape",
                    "idempotent": False,
                    "action": {
                        "kind": "shell",
                        "argv": [
                            *("sh", "-c", ESCAPE, "sh", str(escaped_pid)),
                            *(PY, DAEMON, str(daemon_pid)),
                        ],
                        "env": {name: value},
                    },
                }
            ],
        },
    )
    wait_for(
        lambda: daemon_pid.exists() and escaped_pid.read_text().strip().isdigit(),
        30,
        "the action did not start its processes",
    )
    escaped = [int(escaped_pid.read_text()), int(daemon_pid.read_text())]
    server.kill()
    assert all(is_running(pid) for pid in escaped), "they should outlive the killed server"

    server.start()
    wait_for(lambda: not any(is_running(pid) for pid in escaped), 10, "escaped processes live on")
    wait_for(lambda: not carrying(mark), 10, f"processes of the action live on: {carrying(mark)}")
