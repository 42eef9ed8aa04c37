"""Two orchestrators on one PostgreSQL: one SIGKILLed mid-task and never restarted, whose task
the other finishes; one paused past the takeover interval, whose writes after it wakes are left
out (fenced by ownership) and whose run of the task stops; a cancel and an event stream asked of
the server that does not run the task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from cli_support import free_port
from event_stream import EventStream
from tests.helpers.polling import wait_for
from tests.helpers.postgres import dedicated_database, unreachable

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TAKEOVER_S = 3.0
# Writes its name to `marks` when it starts, sleeps, then prints the pid of the server that
# started it (its parent: actions are spawned by the server itself).
STEP = (
    "import os, sys, time\n"
    "fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, (sys.argv[1] + '\\n').encode()); os.close(fd)\n"
    "time.sleep(float(sys.argv[3]))\n"
    "print(os.getppid())\n"
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Orchestrator:
    """`python -m reynolds serve` on its own home and port, on the shared database."""

    def __init__(self, root: Path, url: str) -> None:
        self.home = root / "home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.out"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REYNOLDS_")}
        self.env.update(
            REYNOLDS_HOME=str(self.home),
            REYNOLDS_PORT=str(self.port),
            REYNOLDS_DATABASE_URL=url,
            REYNOLDS_TAKEOVER_INTERVAL_S=str(TAKEOVER_S),
            REYNOLDS_RETRY_BASE_S="0.05",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = self.log.parent
        root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [PY, "-m", "reynolds", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self._healthy, 60, f"the server on :{self.port} did not become healthy")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def submit(self, subtasks: list[dict[str, Any]]) -> str:
        arguments = {
            "task": {"type": "takeover", "subtasks": subtasks},
            "strategy": {"approach": "parallel_optimized", "maxConcurrency": 5},
        }
        answer = httpx.post(
            f"{self.url}/mcp/tools/orchestrate_task", json={"arguments": arguments}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["structuredContent"]["taskId"])

    def result(self, task_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/tasks/{task_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pair(
    tmp_path: Path, require_service: Callable[[str, str], NoReturn]
) -> Iterator[tuple[Orchestrator, Orchestrator]]:
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_takeover") as url:
        a, b = Orchestrator(tmp_path / "a", url), Orchestrator(tmp_path / "b", url)
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            a.stop()
            b.stop()


def step(name: str, marks: Path, seconds: float, **fields: Any) -> dict[str, Any]:
    argv = [PY, "-c", STEP, name, str(marks), str(seconds)]
    return {"id": name, "action": {"kind": "shell", "argv": argv}, **fields}


def ended(server: Orchestrator, task_id: str) -> dict[str, Any] | None:
    result = server.result(task_id)
    return result if result["status"] not in ("pending", "ready", "running") else None


def started(marks: Path) -> list[str]:
    return marks.read_text().split() if marks.exists() else []


def test_a_dead_servers_task_is_finished_by_the_other_and_nothing_runs_twice(
    pair: tuple[Orchestrator, Orchestrator], tmp_path: Path
) -> None:
    a, b = pair
    marks = tmp_path / "marks"
    subtasks = [step("once", marks, 30, idempotent=False)]
    subtasks += [step(f"n{i}", marks, 1.0) for i in range(3)]
    subtasks.append({**step("last", marks, 0.1), "dependsOn": ["n0", "n1", "n2"]})
    task_id = a.submit(subtasks)
    wait_for(lambda: {"once", "n0", "n1", "n2"} <= set(started(marks)), 30, "nothing started")

    assert a.proc is not None
    a.proc.kill()  # and never started again
    a.proc.wait()
    killed_at = time.monotonic()

    result = wait_for(lambda: ended(b, task_id), 60, "the other server did not finish the task")

    assert time.monotonic() - killed_at < 60
    subs = {s["id"]: s for s in result["subtasks"]}
    assert subs["once"]["status"] == "failed" and subs["once"]["reason"] == "interrupted"
    assert all(subs[n]["status"] == "succeeded" for n in ("n0", "n1", "n2", "last"))
    # What was left to run ran on b (its output is b's pid); the other never ran again.
    assert b.proc is not None
    assert subs["last"]["output"].strip() == str(b.proc.pid)
    assert started(marks).count("once") == 1


def test_a_paused_server_writes_nothing_over_its_successor_and_stops_its_run(
    pair: tuple[Orchestrator, Orchestrator], tmp_path: Path
) -> None:
    a, b = pair
    marks = tmp_path / "marks"
    task_id = a.submit([step(f"p{i}", marks, 1.5) for i in range(4)])
    wait_for(lambda: len(started(marks)) == 4, 30, "nothing started on a")
    assert a.proc is not None

    a.proc.send_signal(signal.SIGSTOP)  # its actions go on and end while it sleeps
    try:
        result = wait_for(lambda: ended(b, task_id), 60, "b did not take the task over")
    finally:
        a.proc.send_signal(signal.SIGCONT)

    assert result["status"] == "succeeded"
    assert b.proc is not None
    outputs = {s["id"]: s["output"].strip() for s in result["subtasks"]}
    assert outputs == {f"p{i}": str(b.proc.pid) for i in range(4)}
    # a wakes up with four ended attempts to record: the store leaves them out, and a says so.
    wait_for(
        lambda: "taken over by another server" in a.log.read_text(),
        30,
        "a did not notice that its task was taken over",
    )
    for reader in (a, b):
        again = reader.result(task_id)
        assert again["status"] == "succeeded"
        assert {s["id"]: s["output"].strip() for s in again["subtasks"]} == outputs
    assert started(marks).count("p0") == 2  # once on a, once again on b (idempotent)


def test_a_cancel_sent_to_the_other_server_cancels_the_task_where_it_runs(
    pair: tuple[Orchestrator, Orchestrator], tmp_path: Path
) -> None:
    a, b = pair
    marks = tmp_path / "marks"
    task_id = a.submit([step(f"c{i}", marks, 60) for i in range(3)])
    wait_for(lambda: len(started(marks)) == 3, 30, "nothing started on a")

    asked = time.monotonic()
    answer = httpx.post(f"{b.url}/tasks/{task_id}/cancel", json={}, timeout=30)
    took = time.monotonic() - asked

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert took < 10  # a looks for such marks every half second
    result = a.result(task_id)
    assert result["status"] == "cancelled"
    assert {s["status"] for s in result["subtasks"]} == {"cancelled"}
    assert "as asked through another server" in a.log.read_text()
    # Asked again, either server says it has ended.
    for server in (a, b):
        again = httpx.post(f"{server.url}/tasks/{task_id}/cancel", json={}, timeout=30)
        assert again.status_code == 409, again.text


def test_the_other_server_streams_the_events_of_a_task_it_does_not_run(
    pair: tuple[Orchestrator, Orchestrator], tmp_path: Path
) -> None:
    a, b = pair
    marks = tmp_path / "marks"
    first = step("first", marks, 1.0)
    task_id = a.submit([first, {**step("second", marks, 0.5), "dependsOn": ["first"]}])
    wait_for(lambda: "first" in started(marks), 30, "nothing started on a")

    seen: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{b.url}/tasks/{task_id}/events", timeout=30) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
                if event == "end":
                    break

    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "snapshot" and seen[0][1]["status"] == "running"
    assert kinds[-2:] == ["task_finished", "end"]
    finished = [d["subtaskId"] for k, d in seen if k == "subtask_finished"]
    assert "second" in finished  # it started and ended after the stream began
    seqs = [d["seq"] for k, d in seen if k not in ("snapshot", "end")]
    assert seqs == sorted(set(seqs))  # each once, in order


def test_every_servers_stream_of_all_tasks_carries_the_other_servers_tasks_once(
    pair: tuple[Orchestrator, Orchestrator], tmp_path: Path
) -> None:
    a, b = pair
    marks = tmp_path / "marks"
    with EventStream(b.url) as events:
        on_a = a.submit([step("x1", marks, 0.3), {**step("x2", marks, 0.3), "dependsOn": ["x1"]}])
        on_b = b.submit([step("y1", marks, 0.3)])
        wait_for(
            lambda: {row["taskId"] for row in events.of_kind("task_finished")} == {on_a, on_b},
            60,
            "b's stream did not carry both tasks to their end",
        )

    def kinds(task_id: str) -> list[tuple[str, str | None]]:
        return [(row["kind"], row["subtaskId"]) for row in events.rows if row["taskId"] == task_id]

    # Each event once, in its server's order: a's through the store, b's own as committed.
    assert kinds(on_a) == [
        ("task_submitted", None),
        ("subtask_started", "x1"),
        ("subtask_finished", "x1"),
        ("subtask_started", "x2"),
        ("subtask_finished", "x2"),
        ("task_finished", None),
    ]
    assert kinds(on_b) == [
        ("task_submitted", None),
        ("subtask_started", "y1"),
        ("subtask_finished", "y1"),
        ("task_finished", None),
    ]
    seqs = [row["seq"] for row in events.rows]
    assert len(seqs) == len(set(seqs))
