"""Each pool's log of what its agents did: a line when an attempt ends (when it started, how
it ended, how long it took), on the logger `reynolds.agent.{pool}` (adapters/logs.py writes
them to `{pool}-agent.log`), with the task, subtask and attempt it is about. One line, not two:
an attempt of `true` takes a millisecond, and its log line must not cost a noticeable part."""

from __future__ import annotations

import logging
from typing import Any

from reynolds.core.reporting import iso
from reynolds.services.ports import ActionResult
from reynolds.services.runs import SubState, TaskRun

PREFIX = "reynolds.agent."


class AgentLog:
    def __init__(self) -> None:
        self._loggers: dict[str, logging.Logger] = {}

    def _logger(self, pool: str) -> logging.Logger:
        found = self._loggers.get(pool)
        if found is None:
            found = self._loggers[pool] = logging.getLogger(PREFIX + pool)
        return found

    def ended(
        self,
        run: TaskRun,
        sub: SubState,
        pool: str,
        status: str,
        result: ActionResult,
        duration_s: float | None,
    ) -> None:
        logger = self._logger(pool)
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = _about(run, sub, pool, sub.downstream)
        fields.update(status=status, exitCode=result.exit_code, reason=result.reason)
        if sub.started_at is not None:
            fields["startedAt"] = iso(sub.started_at)
        if duration_s is not None:
            fields["durationSeconds"] = round(duration_s, 4)
        if sub.detail and "failureClass" in sub.detail:
            fields["failureClass"] = sub.detail["failureClass"]
        _emit(logger, logging.INFO if result.ok else logging.WARNING, "attempt ended", fields)


def _emit(logger: logging.Logger, level: int, event: str, fields: dict[str, Any]) -> None:
    """`logger.log` without looking up the caller's file and line (what the line says is in
    `fields`)."""
    record = logger.makeRecord(logger.name, level, "", 0, event, (), None, extra={"fields": fields})
    logger.handle(record)


def _about(run: TaskRun, sub: SubState, pool: str, downstream: str | None) -> dict[str, Any]:
    node = sub.node
    return {
        "taskId": run.id,
        "subtaskId": node.id,
        "agentType": pool,
        "attempt": sub.attempts,
        "action": getattr(node.action, "kind", None),
        "downstream": downstream,
        **({"component": node.component} if node.component else {}),
        **({"step": node.step} if node.step else {}),
    }
