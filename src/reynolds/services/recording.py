"""What the scheduler writes about a running task: its events, subtask rows, attempts and
audit records, each leaving the task's write mark on the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reynolds.core.audit import redact_text
from reynolds.services.audit import record_attempt
from reynolds.services.ports import ActionResult, Store
from reynolds.services.runs import SubState, TaskRun


class Recorder:
    """Queues a task's writes on the store (they commit in batches)."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def event(self, run: TaskRun, sub: SubState | None, kind: str, data: dict[str, Any]) -> None:
        self.store.add_event(
            {
                "task_id": run.id,
                "subtask_id": sub.node.id if sub else None,
                "kind": kind,
                "data": data,
                "at": self.clock(),
            }
        )
        run.mark = self.store.write_mark()

    def running(
        self, run: TaskRun, sub: SubState, pid: int | None, pid_start: int | None = None
    ) -> None:
        """The subtask's `running` row, with the pid of its process once that exists."""
        self.store.put_subtask(
            {
                "task_id": run.id,
                "id": sub.node.id,
                "status": "running",
                "attempts": sub.attempts,
                "agent_type": sub.agent_type,
                "started_at": sub.started_at,
                "finished_at": None,
                "pid": pid,
                "pid_start": pid_start,
            }
        )
        run.mark = self.store.write_mark()

    def subtask(self, run: TaskRun, sub: SubState, finished_at: float | None) -> None:
        """The subtask's status and outcome as they stand."""
        self.store.put_subtask(
            {
                "task_id": run.id,
                "id": sub.node.id,
                "status": str(sub.status),
                "attempts": sub.attempts,
                "exit_code": sub.exit_code,
                "output": sub.output,
                "error": sub.error,
                "reason": sub.reason,
                "finished_at": finished_at,
                "pid": None,
                "pid_start": None,
                **({"detail": sub.detail} if sub.detail is not None else {}),
            }
        )
        run.mark = self.store.write_mark()

    def attempt(
        self,
        run: TaskRun,
        sub: SubState,
        pool: str,
        status: str,
        result: ActionResult,
        now: float,
    ) -> None:
        self.store.put_attempt(
            {
                "task_id": run.id,
                "subtask_id": sub.node.id,
                "attempt": sub.attempts,
                "agent_type": pool,
                "status": status,
                "started_at": sub.started_at,
                "exit_code": result.exit_code,
                "reason": result.reason,
                "error": result.error[-2000:],
                "finished_at": now,
                "failure_class": (sub.detail or {}).get("failureClass")
                if status == "failed"
                else None,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "cost": result.cost,
            }
        )

    def audit(
        self,
        run: TaskRun,
        sub: SubState,
        pool: str,
        result: ActionResult,
        now: float,
        secret_names: Sequence[str] = (),
    ) -> str:
        """One audit record per attempt, small: no output text, argv redacted and bounded;
        returns its decision (allowed or denied)."""
        denied = result.reason == "denied"
        decision = "denied" if denied else "allowed"
        started = sub.started_at if sub.started_at is not None else now
        fields = {
            "at": started,
            "kind": "action",
            "token_name": run.token_name,
            "action": getattr(sub.node.action, "kind", None),
            "pool": pool,
            "task_id": run.id,
            "subtask_id": sub.node.id,
            "attempt": sub.attempts,
            "decision": decision,
            "outcome": "succeeded" if result.ok else (result.reason or "failed"),
            "detail": redact_text(result.error) if denied else None,
            "exit_code": result.exit_code,
            "duration_s": now - started,
            "output_bytes": result.output_bytes,
        }
        record_attempt(self.store, fields, sub.node.action, sub.argv, secret_names)
        return decision
