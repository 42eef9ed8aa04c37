"""Resubmission loops: the same task (its input's fingerprint) submitted again and again, each
run ending failed the same way — what a looping assistant does. After enough evidence
(core/loops.resubmission), the next submission is refused at once with it, unless forced."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reynolds.core.fingerprints import outcome, task_outcome
from reynolds.core.loops import LoopVerdict, resubmission
from reynolds.core.models import Status
from reynolds.services.runs import TaskRun

# Runs remembered per task fingerprint, and fingerprints remembered in all (least recently
# submitted forgotten first).
RUNS_PER_TASK = 10
TASKS_REMEMBERED = 10_000


class Refused(Exception):
    """A submission not run: the same task ended failed the same way often enough."""

    def __init__(self, verdict: LoopVerdict) -> None:
        super().__init__(verdict.detector)
        self.verdict = verdict


@dataclass(frozen=True, slots=True)
class Ended:
    """One finished run of a task: its id, whether it failed, and how (None: succeeded)."""

    task_id: str
    failed: bool
    outcome: str | None


class Resubmissions:
    """The latest runs of each task fingerprint; judges whether running it again would only
    end the same failed way."""

    def __init__(self, level: float) -> None:
        self.level = level
        self._runs: OrderedDict[str, list[Ended]] = OrderedDict()

    def seed(self, rows: Iterable[dict[str, Any]]) -> None:
        """Finished task rows (`fingerprint`, `status`, `outcome`), oldest first."""
        for row in rows:
            if row.get("fingerprint") and Status(row["status"]).finished:
                failed = row["status"] in (Status.FAILED, Status.LOOP_BLOCKED)
                self._add(row["fingerprint"], Ended(row["id"], failed, row.get("outcome")))

    def judge(self, fingerprint: str) -> LoopVerdict | None:
        """The verdict on running the task with `fingerprint` once more: None to run it."""
        runs = self._runs.get(fingerprint)
        if not runs:
            return None
        verdict = resubmission(
            [r.outcome for r in runs], self.level, ended_failed=[r.failed for r in runs]
        )
        if verdict is None:
            return None
        count = verdict.evidence["count"]
        evidence = {**verdict.evidence, "task": fingerprint}
        evidence["taskIds"] = [r.task_id for r in runs[-count:]]
        return LoopVerdict(verdict.detector, verdict.confidence, evidence)

    def ended(self, run: TaskRun) -> str | None:
        """Remember how `run` ended; its outcome fingerprint when it failed."""
        if run.fingerprint is None:
            return None
        failed = run.status in (Status.FAILED, Status.LOOP_BLOCKED)
        how = _how_it_failed(run) if failed else None
        self._add(run.fingerprint, Ended(run.id, failed, how))
        return how

    def _add(self, fingerprint: str, ended: Ended) -> None:
        runs = self._runs.pop(fingerprint, [])
        runs.append(ended)
        del runs[:-RUNS_PER_TASK]
        self._runs[fingerprint] = runs
        while len(self._runs) > TASKS_REMEMBERED:
            self._runs.popitem(last=False)


def _how_it_failed(run: TaskRun) -> str:
    parts = []
    for nid, sub in run.subs.items():
        if sub.status is Status.SUCCEEDED:
            continue
        ended = outcome(False, sub.exit_code, sub.output, sub.error, sub.reason)
        parts.append((nid, str(sub.status), ended.fingerprint))
    return task_outcome(parts)
