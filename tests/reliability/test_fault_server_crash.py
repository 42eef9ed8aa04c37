"""The server itself SIGKILLed and started again on the same home: under load with several
tasks in flight, and on SQLite in the middle of a burst of writes."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fault_ledger import starts, unrecorded_starts
from fault_rig import Rig
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool
from tests.helpers.faults import journal_step, quick_journal_argv
from tests.helpers.polling import wait_for
from tests.helpers.processes import is_running

from reynolds.adapters.store.schema import subtasks

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(150)]

TASKS = 3
WORKERS = 4


def stored_statuses(rig: Rig) -> dict[tuple[str, str], str]:
    """Every subtask's status as the store holds it (read with the server dead)."""
    engine = create_engine(rig.store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(subtasks.c.task_id, subtasks.c.id, subtasks.c.status))
            return {(t, s): status for t, s, status in rows}
    finally:
        engine.dispose()


def crash_drill(journal: Path) -> dict[str, Any]:
    """A never-twice subtask that outlasts the crash, and idempotent work beside it."""
    work = [journal_step(f"w{i}", journal, 0.6) for i in range(WORKERS)]
    once = journal_step("once", journal, 40, idempotent=False, estimatedSeconds=40)
    return {"type": "fault-server-kill", "subtasks": [once, *work]}


def test_a_server_killed_under_load_ends_every_task_once_and_reruns_no_never_twice_step(
    rig: Rig,
) -> None:
    task_ids = [
        rig.submit(crash_drill(rig.journal), strategy={"maxConcurrency": 2}) for _ in range(TASKS)
    ]

    def under_way() -> bool:
        running = {r.task for r in starts(rig.runs(), subtask="once")}
        done = [rig.task(t)["subtasks"] for t in task_ids]
        return running == set(task_ids) and all(
            any(s["status"] == "succeeded" for s in subs) for subs in done
        )

    wait_for(under_way, 60, "every task should be running its never-twice step", interval_s=0.1)
    rig.kill()
    before = stored_statuses(rig)
    unrecorded = unrecorded_starts(rig.store_url, rig.runs())
    onces = {r.task: r.pid for r in starts(rig.runs(), subtask="once")}
    assert all(is_running(pid) for pid in onces.values()), "the SIGKILLed server's actions live on"
    print(f"at the kill, the store held: {sorted(Counter(before.values()).items())}")

    rig.start()
    rig.ended(timeout_s=60)

    wait_for(lambda: not any(is_running(p) for p in onces.values()), 10, "orphans live on")
    runs = rig.runs()
    for task_id in task_ids:
        task = rig.task(task_id)
        by_id = {s["id"]: s for s in task["subtasks"]}
        assert task["status"] == "failed", task
        assert (by_id["once"]["status"], by_id["once"]["reason"]) == ("failed", "interrupted")
        assert len(starts(runs, task_id, "once")) == 1, "a never-twice step ran twice"
        for i in range(WORKERS):
            assert by_id[f"w{i}"]["status"] == "succeeded", by_id[f"w{i}"]
            if before.get((task_id, f"w{i}")) == "succeeded":
                assert len(starts(runs, task_id, f"w{i}")) == 1, f"w{i} succeeded, then ran again"
    rig.check(unrecorded=unrecorded)


BURST = 1500


def test_sqlite_killed_mid_write_passes_integrity_check_and_resumes(rig: Rig) -> None:
    task_id = rig.submit(
        {
            "type": "fault-sqlite-kill",
            "components": [f"c{i:04d}" for i in range(BURST)],
            "steps": [
                {
                    "name": "finish",
                    "action": {"kind": "shell", "argv": quick_journal_argv(rig.journal)},
                }
            ],
        },
        strategy={"maxConcurrency": 8},
    )

    def busy_writing() -> bool:
        return len(starts(rig.runs(), task_id)) >= BURST // 4

    wait_for(busy_writing, 60, "the burst did not get going", interval_s=0.01)
    rig.kill()
    ran_before = len(starts(rig.runs(), task_id))
    assert ran_before < BURST, "the task ended before the kill: nothing was cut mid-write"

    db = rig.server.home / "reynolds.db"
    with sqlite3.connect(db) as conn:
        checked = conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    assert checked == [("ok",)], checked
    before = Counter(stored_statuses(rig).values())
    unrecorded = unrecorded_starts(rig.store_url, rig.runs())
    print(f"{ran_before} of {BURST} ran before the kill; the store held {sorted(before.items())}")

    rig.start()
    rig.ended(timeout_s=90)

    task = rig.task(task_id, every_subtask=True)
    assert task["status"] == "succeeded", task["results"]
    assert Counter(s["status"] for s in task["subtasks"]) == {"succeeded": BURST}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    rig.check(unrecorded=unrecorded)
