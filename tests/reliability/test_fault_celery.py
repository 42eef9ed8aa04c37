"""Faults of the Celery backend, with real `reynolds agent` workers and a Redis of the test's
own (tests/e2e/celery_support.py): a worker SIGKILLed mid-subtask, a worker paused past its
lease, a poison subtask that kills its worker's process every time, and Redis restarted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from celery_support import LEASE_S, Cluster, running_cluster
from cli_support import free_port
from fault_ledger import TASK_ENDS, Figures, Run, assert_ledger, read_journal, starts
from fault_rig import BASE_ENV, marked
from tests.helpers.faults import journal_step
from tests.helpers.polling import wait_for
from tests.helpers.processes import descendants, kill_carrying
from tests.helpers.redis_server import RedisServer

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(180)]


@dataclass
class Work:
    """One test's share of the module's cluster: its workers, its tasks, the journal their
    actions keep, the cluster's counters when it began, and the ledger check over its tasks."""

    cluster: Cluster
    journal: Path
    mark: str = field(default_factory=lambda: f"REYNOLDS_TEST_MARK={uuid.uuid4().hex}")
    accepted: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)

    def start_worker(self, pool: str, concurrency: int) -> subprocess.Popen[bytes]:
        worker = self.cluster.start_worker(pool, concurrency)
        self.workers.append(worker)
        return worker

    def counter(self, name: str) -> int:
        """How much a /status → celery counter grew since the test began."""
        return int(self.cluster.celery()[name]) - int(self.baseline.get(name, 0))

    def submit(self, pool: str, subtasks: list[dict[str, Any]]) -> str:
        """Accept a task of these subtasks, every one on `pool`."""
        pinned = [{"agent": pool, **s} for s in subtasks]
        task = marked({"type": "fault-celery", "subtasks": pinned}, self.mark)
        task_id = self.cluster.submit_task(task)
        self.accepted.append(task_id)
        return task_id

    def runs(self) -> list[Run]:
        return read_journal(self.journal)

    def subtasks(self, task_id: str) -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in self.cluster.task(task_id)["subtasks"]}

    def is_over(self, task_id: str) -> bool:
        return self.cluster.task(task_id)["status"] in TASK_ENDS

    def ended(self, task_id: str, timeout_s: float = 60) -> dict[str, dict[str, Any]]:
        """Wait for the task's end (any of them); its subtasks by id."""
        try:
            wait_for(lambda: self.is_over(task_id), timeout_s, interval_s=0.1)
        except AssertionError:
            statuses = {k: (s["status"], s["attempts"]) for k, s in self.subtasks(task_id).items()}
            raise AssertionError(
                f"task {task_id} did not end in {timeout_s} s: {statuses}\n"
                f"celery: {self.cluster.celery()}\n{self.cluster.logs()}"
            ) from None
        return self.subtasks(task_id)

    def check(self) -> Figures:
        celery = self.cluster.celery()
        print(f"celery: { ({k: v for k, v in celery.items() if k != 'workers'}) }")
        return assert_ledger(
            self.cluster.server.base_url,
            f"sqlite:///{self.cluster.server.home}/reynolds.db",
            self.accepted,
            journal=self.runs(),
            # Leases that ran out, and those a worker's next process took over from a dead one.
            lease_expirations=self.counter("expiredLeases") + self.counter("takenOver"),
        )

    def stop(self) -> None:
        """Kill this test's workers and whatever their actions left; cancel what still runs."""
        for task_id in self.accepted:
            if not self.is_over(task_id):
                with self.cluster.client() as client:
                    client.post(f"/tasks/{task_id}/cancel", json={})
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        kill_carrying(self.mark)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, require_service: Callable[[str, str], NoReturn]
) -> Iterator[Cluster]:
    """One server on the Celery backend and its Redis for the module: each test runs its
    own workers on a pool of its own, so that what one test breaks never reaches another."""
    if shutil.which("redis-server") is None:
        require_service("redis-server", "not on PATH; the Celery fault tests start their own")
    root = tmp_path_factory.mktemp("celery-faults")
    (root / "redis").mkdir()
    redis = RedisServer(root / "redis", free_port())
    redis.start()
    try:
        with running_cluster(root / "cluster", redis, LEASE_S, env=BASE_ENV) as cluster:
            yield cluster
    finally:
        redis.stop()


@pytest.fixture
def work(cluster: Cluster, tmp_path: Path) -> Iterator[Work]:
    work = Work(cluster, tmp_path / "journal.tsv", baseline=cluster.celery())
    try:
        yield work
    finally:
        work.stop()


def worker_of(pid: int, *workers: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """The worker (`reynolds agent` process) `pid` runs under."""
    return next(w for w in workers if pid in descendants(w.pid))


def start_workers(work: Work, pool: str, *concurrencies: int) -> list[subprocess.Popen[bytes]]:
    """Workers for `pool`, once the server counts all their processes (none left over)."""
    wait_for(lambda: work.cluster.slots(pool) == 0, 15, f"workers of {pool} left over")
    workers = [work.start_worker(pool, n) for n in concurrencies]
    wait_for(lambda: work.cluster.slots(pool) == sum(concurrencies), 60, f"{pool} never came up")
    return workers


def test_a_sigkilled_worker_s_subtasks_run_again_or_end_interrupted(work: Work) -> None:
    (doomed,) = start_workers(work, "devops", 2)
    task_id = work.submit(
        "devops",
        [
            journal_step("once", work.journal, 3, idempotent=False, estimatedSeconds=30),
            journal_step("again", work.journal, 3, estimatedSeconds=20),
            *(journal_step(f"w{i}", work.journal, 0.3) for i in range(3)),
        ],
    )

    def both_claimed() -> list[Run] | None:
        runs = starts(work.runs())
        return runs if {r.subtask for r in runs} >= {"once", "again"} else None

    claimed = wait_for(both_claimed, 30, "the doomed worker should run both long subtasks")
    assert all(r.ppid in descendants(doomed.pid) for r in claimed)
    os.killpg(doomed.pid, signal.SIGKILL)  # main process and pool processes at once
    doomed.wait()
    work.start_worker("devops", 2)  # boots while the leases run out

    subs = work.ended(task_id, 60)

    runs = work.runs()
    assert (subs["once"]["status"], subs["once"]["reason"]) == ("failed", "interrupted")
    assert len(starts(runs, task_id, "once")) == 1, "a never-twice step ran again"
    assert subs["again"]["status"] == "succeeded", subs["again"]
    assert [r.attempt for r in starts(runs, task_id, "again")] == [1, 1], "re-dispatched once"
    assert all(subs[f"w{i}"]["status"] == "succeeded" for i in range(3))
    assert work.counter("expiredLeases") >= 2
    work.check()


def stale_outcomes(cluster: Cluster, task_id: str, pid: int) -> list[str]:
    """What the logs say became of the dispatches of pool process `pid` that were refused as
    stale: the worker's own "attempt done: stale …" (a claim or heartbeat refused), or the
    server's "dropped a stale result" from that process (results are not waited for)."""
    found = []
    for path in (cluster.server.home / "logs").glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if task_id in line and "attempt done: stale" in line:
                found.append(json.loads(line)["event"])
            elif "dropped a stale result" in line:
                record = json.loads(line)
                if str(record.get("worker", "")).endswith(f"/{pid}"):
                    found.append(f"{record['event']} of {record['dispatchId']}")
    return found


def test_a_worker_paused_past_its_lease_has_its_late_report_refused(work: Work) -> None:
    cluster = work.cluster
    workers = start_workers(work, "platform", 1, 1)
    task_id = work.submit("platform", [journal_step("late", work.journal, 2)])
    first = wait_for(lambda: starts(work.runs()), 30, "nobody took the subtask")[0]
    pool_process = first.ppid
    paused = worker_of(pool_process, *workers)
    os.kill(pool_process, signal.SIGSTOP)  # its action runs on and ends meanwhile
    try:
        wait_for(lambda: work.counter("expiredLeases") >= 1, 4 * LEASE_S, "no lease expired")
        subs = work.ended(task_id, 30)
    finally:
        os.kill(pool_process, signal.SIGCONT)
    wait_for(lambda: work.counter("staleReports") >= 1, 30, "the late report was accepted")

    runs = starts(work.runs(), task_id, "late")
    assert [r.attempt for r in runs] == [1, 1]
    redispatch = runs[1]
    assert worker_of(redispatch.ppid, *workers) is not paused
    late = subs["late"]
    assert (late["status"], late["attempts"]) == ("succeeded", 1), late
    assert late["output"].strip() == str(redispatch.ppid), "the result is the re-dispatch's"
    # The paused process's late word was refused: its result dropped, or its action stopped.
    told = wait_for(
        lambda: stale_outcomes(cluster, task_id, pool_process),
        15,
        "the late result was not refused",
    )
    print(f"the paused worker: {told}; refused reports: {work.counter('staleReports')}")
    work.check()


def test_a_poison_subtask_that_kills_its_worker_fails_within_bounds(work: Work) -> None:
    retries = 1
    most = 2 * (retries + 1)  # each attempt taken over once by the worker's next process
    (worker,) = start_workers(work, "code", 1)
    started = time.monotonic()
    task_id = work.submit(
        "code", [journal_step("poison", work.journal, 0, mode="kill-parent", retries=retries)]
    )

    def over_or_looping() -> bool:
        return work.is_over(task_id) or len(starts(work.runs())) > most

    wait_for(over_or_looping, 60, "the poison neither failed nor ran past its bound")

    took = time.monotonic() - started
    runs = starts(work.runs(), task_id, "poison")
    poison = work.subtasks(task_id)["poison"]
    print(f"poison on Celery: {len(runs)} runs, {poison['status']} after {took:.1f} s")
    assert len(runs) <= most, (
        f"a hot loop: {len(runs)} runs of attempts {[r.attempt for r in runs]} in {took:.1f} s "
        f"for a poison with {retries} retries; the subtask is {poison['status']} "
        f"at attempt {poison['attempts']}"
    )
    assert poison["status"] == "failed", poison
    assert poison["attempts"] <= retries + 1, poison
    assert worker.poll() is None, "the worker itself should survive its pool processes"
    work.check()


def test_a_redis_restart_mid_task_ends_cleanly_and_the_server_recovers(work: Work) -> None:
    cluster = work.cluster
    start_workers(work, "devops", 2)
    task_id = work.submit("devops", [journal_step(f"w{i}", work.journal, 0.4) for i in range(8)])
    wait_for(lambda: len(starts(work.runs())) >= 3, 30, "no progress before the outage")

    cluster.redis.stop()
    try:
        with cluster.client() as client:
            wait_for(lambda: _broker_failing(client), 15, "/health never noticed Redis was gone")
    finally:
        cluster.redis.start()

    subs = work.ended(task_id, 90)
    assert all(s["status"] in ("succeeded", "failed") for s in subs.values()), subs
    with cluster.client() as client:
        wait_for(lambda: client.get("/health").status_code == 200, 30, "/health stays unhealthy")
    after = work.submit("devops", [journal_step(f"after{i}", work.journal, 0) for i in range(2)])
    assert all(s["status"] == "succeeded" for s in work.ended(after, 60).values())
    print(f"after the restart: {sorted(s['status'] for s in subs.values())}")
    work.check()


def _broker_failing(client: httpx.Client) -> bool:
    answer = client.get("/health")
    broker = answer.json().get("checks", {}).get("broker", {})
    return answer.status_code == 503 and broker.get("status") == "failing"
