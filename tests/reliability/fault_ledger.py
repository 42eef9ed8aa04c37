"""The invariant every fault of the suite is checked against, in one place.

Every accepted task reaches exactly one terminal state, and every attempt is in the ledger:

- the task, as `GET /tasks/{id}` reports it and as its row in the store says, has ended, and
  so has each of its subtasks; the store holds exactly one `task_finished` event for it, with
  that status;
- a subtask that reports `attempts: n` has exactly the attempt rows 1..n in the store's
  `attempts` table, each ended (succeeded, failed or cancelled), a succeeded one only last,
  and the last one agreeing with the subtask's own status;
- every run the actions' journal saw (tests/helpers/faults.py) has its attempt in the table.

Counted as `lost`: a task or subtask that never ended, an attempt reported or run but missing
from the table. `unexpected`: rows or runs the reports do not account for (an attempt past the
reported count, a row still `running`, a run of a task nobody accepted, a second end event, a
status the rows contradict). `duplicates`: runs of an attempt beyond its first — a re-dispatch
after a lease ran out runs the same attempt again, so they may not exceed the expired leases.

One more source of duplicates is the README's own rule for a crash: an idempotent step runs
"at least once", and its `running` mark is not committed before it starts (a non-idempotent
one's is). A start the store had not seen when the server died is run again under the same
attempt number. Tests that kill the server count those starts from the store as it was left
(`unrecorded_starts`) and allow that many duplicates besides, no more.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from reynolds.adapters.store.schema import attempts, events, subtasks, tasks

TASK_ENDS = frozenset({"succeeded", "failed", "cancelled", "loop_blocked"})
SUBTASK_ENDS = frozenset({"succeeded", "failed", "cancelled", "skipped", "loop_blocked"})
ATTEMPT_ENDS = frozenset({"succeeded", "failed", "cancelled"})

Key = tuple[str, str]  # (task id, subtask id)


@dataclass(frozen=True)
class Run:
    """One line of a journal: a run of an action starting or ending."""

    kind: str
    task: str
    subtask: str
    attempt: int
    pid: int
    ppid: int


def read_journal(path: Path, aliases: Mapping[str, str] | None = None) -> list[Run]:
    """The journal's runs; `aliases` maps the tags callables wrote to their task ids."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        kind, task, subtask, attempt, pid, ppid = line.split("\t")
        task = (aliases or {}).get(task, task)
        runs.append(Run(kind, task, subtask, int(attempt), int(pid), int(ppid)))
    return runs


def starts(runs: Iterable[Run], task: str | None = None, subtask: str | None = None) -> list[Run]:
    """The runs that started, of one task and subtask when given."""
    return [
        r
        for r in runs
        if r.kind == "start"
        and (task is None or r.task == task)
        and (subtask is None or r.subtask == subtask)
    ]


@dataclass
class Figures:
    """What the check counted; `problems` says what each non-zero figure is made of."""

    tasks: int = 0
    ended: int = 0
    subtasks: int = 0
    attempts: int = 0
    runs: int = 0
    lost: int = 0
    unexpected: int = 0
    duplicates: int = 0
    lease_expirations: int = 0
    unrecorded_starts: int = 0
    problems: list[str] = field(default_factory=list)

    def lose(self, why: str) -> None:
        self.lost += 1
        self.problems.append(f"lost: {why}")

    def surprise(self, why: str) -> None:
        self.unexpected += 1
        self.problems.append(f"unexpected: {why}")

    def line(self) -> str:
        return (
            f"ledger: tasks={self.tasks} ended={self.ended} subtasks={self.subtasks} "
            f"attempts={self.attempts} runs={self.runs} lost={self.lost} "
            f"unexpected={self.unexpected} duplicates={self.duplicates} "
            f"lease_expirations={self.lease_expirations} "
            f"unrecorded_starts={self.unrecorded_starts}"
        )


@dataclass
class _Store:
    """What the store holds about the accepted tasks."""

    tasks: dict[str, dict[str, Any]]
    subtasks: dict[Key, dict[str, Any]]
    attempts: dict[Key, list[dict[str, Any]]]
    finished: dict[str, list[str]]


def _read_store(store_url: str, task_ids: list[str]) -> _Store:
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            task_rows = conn.execute(select(tasks).where(tasks.c.id.in_(task_ids))).mappings()
            sub_rows = conn.execute(
                select(subtasks).where(subtasks.c.task_id.in_(task_ids))
            ).mappings()
            attempt_rows = conn.execute(
                select(attempts).where(attempts.c.task_id.in_(task_ids))
            ).mappings()
            ends = conn.execute(
                select(events.c.task_id, events.c.data)
                .where(events.c.task_id.in_(task_ids), events.c.kind == "task_finished")
                .order_by(events.c.seq)
            ).all()
            store = _Store(
                tasks={r["id"]: dict(r) for r in task_rows},
                subtasks={(r["task_id"], r["id"]): dict(r) for r in sub_rows},
                attempts=defaultdict(list),
                finished=defaultdict(list),
            )
            for row in attempt_rows:
                store.attempts[(row["task_id"], row["subtask_id"])].append(dict(row))
            for task_id, data in ends:
                store.finished[task_id].append(str((data or {}).get("status")))
    finally:
        engine.dispose()
    return store


def count_rows(store_url: str, task_id: str) -> int:
    """How many attempt rows the store holds for a task."""
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(attempts).where(attempts.c.task_id == task_id)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def unrecorded_starts(store_url: str, runs: list[Run]) -> int:
    """How many of the journal's starts the store does not know of (its subtask row counts
    fewer attempts): read after a crash, before the restart."""
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            query = select(subtasks.c.task_id, subtasks.c.id, subtasks.c.attempts)
            counted = {(t, s): n or 0 for t, s, n in conn.execute(query)}
    finally:
        engine.dispose()
    return sum(1 for r in starts(runs) if r.attempt > counted.get((r.task, r.subtask), 0))


def complete(client: httpx.Client, task: dict[str, Any]) -> dict[str, Any]:
    """`task` (an answer of `GET /tasks/{id}`) with every subtask: an answer that lists only
    the first ones says so in `truncated`, and where the others are paged."""
    cut = (task.get("truncated") or {}).get("subtasks")
    if not cut:
        return task
    listed = list(task["subtasks"])
    cursor: str | None = cut["nextCursor"]
    while cursor is not None:
        page = client.get(task["truncated"]["pages"], params={"cursor": cursor})
        assert page.status_code == 200, page.text
        listed += page.json()["subtasks"]
        cursor = page.json()["nextCursor"]
    return {**task, "subtasks": listed}


def _reported(base_url: str, task_ids: list[str], figures: Figures) -> dict[str, dict[str, Any]]:
    """Each accepted task as `GET /tasks/{id}` reports it; a task it does not know is lost."""
    found = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for task_id in task_ids:
            answer = client.get(f"/tasks/{task_id}")
            if answer.status_code != 200:
                figures.lose(f"task {task_id}: GET /tasks answered {answer.status_code}")
                continue
            found[task_id] = complete(client, answer.json())
    return found


def _check_task(task: dict[str, Any], store: _Store, figures: Figures) -> None:
    """One terminal state: reported, stored and announced once, and the same everywhere."""
    task_id, status = task["taskId"], task["status"]
    if status not in TASK_ENDS:
        figures.lose(f"task {task_id} is still {status}")
    else:
        figures.ended += 1
    row = store.tasks.get(task_id)
    if row is None:
        figures.lose(f"task {task_id} has no row in the store")
    elif row["status"] != status:
        figures.surprise(f"task {task_id} is {status} but its row says {row['status']}")
    ends = store.finished.get(task_id, [])
    if status in TASK_ENDS and ends != [status]:
        figures.surprise(f"task {task_id} ended {status} with task_finished events {ends}")
    statuses = {s["status"] for s in task["subtasks"]}
    if status == "succeeded" and statuses != {"succeeded"}:
        figures.surprise(f"task {task_id} succeeded with subtasks {sorted(statuses)}")
    if status == "failed" and statuses == {"succeeded"}:
        figures.surprise(f"task {task_id} failed though every subtask succeeded")


def _check_attempts(task_id: str, sub: dict[str, Any], store: _Store, figures: Figures) -> None:
    """Rows 1..n for `attempts: n`, each ended, and the last agreeing with the subtask."""
    key = (task_id, sub["id"])
    where = f"{task_id}/{sub['id']}"
    if sub["status"] not in SUBTASK_ENDS:
        figures.lose(f"subtask {where} is still {sub['status']}")
    row = store.subtasks.get(key)
    if row is None:
        figures.lose(f"subtask {where} has no row in the store")
    elif row["attempts"] != sub["attempts"]:
        figures.surprise(f"subtask {where}: {sub['attempts']} attempts, row says {row['attempts']}")
    rows = sorted(store.attempts.get(key, []), key=lambda r: r["attempt"])
    numbers = [r["attempt"] for r in rows]
    for missing in sorted(set(range(1, sub["attempts"] + 1)) - set(numbers)):
        figures.lose(f"attempt {missing} of {where} ({sub['status']}) is not in the ledger")
    for extra in sorted(set(numbers) - set(range(1, sub["attempts"] + 1))):
        figures.surprise(f"attempt {extra} of {where} is past its {sub['attempts']} attempts")
    for r in rows:
        if r["status"] not in ATTEMPT_ENDS:
            figures.surprise(f"attempt {r['attempt']} of {where} is {r['status']}")
    wins = [r["attempt"] for r in rows if r["status"] == "succeeded"]
    if wins and (len(wins) > 1 or wins[0] != numbers[-1]):
        figures.surprise(f"{where} succeeded in attempts {wins} of {numbers}")
    if rows and rows[-1]["attempt"] == sub["attempts"]:
        last = rows[-1]["status"]
        if (last == "succeeded") != (sub["status"] == "succeeded"):
            figures.surprise(f"{where} is {sub['status']} but its last attempt {last}")


def _check_runs(runs: list[Run], reported: dict[str, Any], store: _Store, figures: Figures) -> None:
    """Every run the journal saw is an attempt of an accepted subtask, in the ledger."""
    known = {(t, s["id"]) for t, task in reported.items() for s in task["subtasks"]}
    seen = Counter((r.task, r.subtask, r.attempt) for r in starts(runs))
    figures.runs = sum(seen.values())
    for (task_id, subtask_id, attempt), count in sorted(seen.items()):
        where = f"{task_id}/{subtask_id}"
        if (task_id, subtask_id) not in known:
            figures.surprise(f"{count} run(s) of {where}, which no accepted task has")
            continue
        figures.duplicates += count - 1
        numbers = {r["attempt"] for r in store.attempts.get((task_id, subtask_id), [])}
        reported_n = next(
            s["attempts"] for s in reported[task_id]["subtasks"] if s["id"] == subtask_id
        )
        # A reported attempt without its row is counted once, by _check_attempts.
        if attempt not in numbers and attempt > reported_n:
            figures.lose(f"run of attempt {attempt} of {where} is neither reported nor stored")
        elif attempt not in numbers:
            figures.problems.append(f"  (attempt {attempt} of {where} ran {count}x)")


def ledger(
    base_url: str,
    store_url: str,
    task_ids: list[str],
    *,
    journal: list[Run] | None = None,
    lease_expirations: int = 0,
    unrecorded: int = 0,
) -> Figures:
    """Check the invariant over `task_ids` (every task the server accepted); the figures."""
    figures = Figures(
        tasks=len(task_ids), lease_expirations=lease_expirations, unrecorded_starts=unrecorded
    )
    reported = _reported(base_url, task_ids, figures)
    store = _read_store(store_url, task_ids)
    for task_id, task in reported.items():
        _check_task(task, store, figures)
        for sub in task["subtasks"]:
            figures.subtasks += 1
            _check_attempts(task_id, sub, store, figures)
    figures.attempts = sum(len(rows) for rows in store.attempts.values())
    if journal is not None:
        _check_runs(journal, reported, store, figures)
    return figures


def assert_ledger(
    base_url: str,
    store_url: str,
    task_ids: list[str],
    *,
    journal: list[Run] | None = None,
    lease_expirations: int = 0,
    unrecorded: int = 0,
) -> Figures:
    """`ledger`, printed, and asserted: lost = 0, unexpected = 0, and duplicates ≤ expired
    leases (plus, after a crash, the starts the store had not recorded)."""
    figures = ledger(
        base_url,
        store_url,
        task_ids,
        journal=journal,
        lease_expirations=lease_expirations,
        unrecorded=unrecorded,
    )
    print(figures.line())
    for problem in figures.problems:
        print("  " + problem)
    detail = "\n".join([figures.line(), *figures.problems])
    assert figures.lost == 0, detail
    assert figures.unexpected == 0, detail
    assert figures.duplicates <= figures.lease_expirations + figures.unrecorded_starts, detail
    return figures
