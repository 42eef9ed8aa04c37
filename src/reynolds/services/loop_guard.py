"""Loop prevention on the scheduler: each failed attempt's outcome fingerprinted, the
subtask's failures judged by the detectors of core/loops.py, and a subtask that makes no
progress stopped (`loop_blocked`) with the verdict in its detail, an event and a metric."""

from __future__ import annotations

from collections import deque
from typing import Any

from reynolds.core.fingerprints import outcome
from reynolds.core.loops import LoopVerdict, first_loop, retry_storm
from reynolds.core.models import Status
from reynolds.services.ports import ActionResult, SchedulerMetrics
from reynolds.services.recording import Recorder
from reynolds.services.runs import SubState, TaskRun

# Detections kept for the loop-prevention resource, newest last.
RECENT_DETECTIONS = 100
# A subtask's failures kept for judging. `retries` allows at most 11 attempts, so the
# detectors never meet this bound; it keeps memory bounded should that limit ever grow.
KEPT_FAILURES = 32


class LoopGuard:
    """Judges failed attempts; remembers the latest detections."""

    def __init__(self, level: float, metrics: SchedulerMetrics, recorder: Recorder) -> None:
        self.level = level
        self.metrics = metrics
        self.record = recorder
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DETECTIONS)

    def judge(self, sub: SubState, result: ActionResult) -> LoopVerdict | None:
        """The verdict on `sub` after its failed attempt `result`: None to carry on."""
        failures = sub.failures
        failures.append(
            outcome(False, result.exit_code, result.output, result.error, result.reason)
        )
        if len(failures) > KEPT_FAILURES:
            del failures[0]
        return first_loop(failures, self.level)

    def storm(self, run: TaskRun, sub: SubState, ok: bool) -> LoopVerdict | None:
        """Count a retry of `sub` that ended (`ok` or not) against its task; the task's retry
        storm, once its retries fail far more than they succeed. Only steps that loop
        prevention watches count; the storm, once found, stays."""
        if run.storm is None and sub.attempts > 1 and sub.node.loop_prevention:
            run.retry_outcomes.append(ok)
            if not ok:
                run.storm = retry_storm(list(run.retry_outcomes), self.level)
                if run.storm is not None:
                    self.metrics.loop_detected(run.storm.detector)
        return run.storm

    def resubmission_refused(self, verdict: LoopVerdict) -> None:
        """Count and remember a submission refused as a resubmission loop."""
        self.metrics.loop_detected(verdict.detector)
        at = self.record.clock()
        self.recent.append({"taskId": None, "subtaskId": None, "at": at, **verdict.view()})

    def block(
        self, run: TaskRun, sub: SubState, verdict: LoopVerdict, now: float, count: bool = True
    ) -> None:
        """End `sub` as `loop_blocked`, saying why, where and how sure (`count`: a detection
        of its own, not one already counted for its task)."""
        view = verdict.view()
        sub.status = Status.LOOP_BLOCKED
        sub.detail = {**(sub.detail or {}), "loop": view}
        sub.reason = "loop_detected"
        said = (
            f"stopped by loop prevention: {verdict.detector}, confidence {verdict.confidence:.4g}"
        )
        sub.error = f"{said}\n{sub.error}" if sub.error else said
        if count:
            self.metrics.loop_detected(verdict.detector)
        self.record.event(run, sub, "loop_detected", {"attempt": sub.attempts, **view})
        self.recent.append(
            {
                "taskId": run.id,
                "subtaskId": sub.node.id,
                "attempts": sub.attempts,
                "at": now,
                **view,
            }
        )
