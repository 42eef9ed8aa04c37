"""What a log line is about: the task, subtask and pool that code runs on behalf of. Bound for
the asyncio task running an attempt (each has its own copy of the context), and added by the
logs adapter to every line logged meanwhile, whoever logs it."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType

NOTHING: Mapping[str, str] = MappingProxyType({})
LOG_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("reynolds_log_context", default=NOTHING)


def bind(**ids: str) -> None:
    """Add `ids` (taskId=..., subtaskId=...) to what the current context's lines are about."""
    LOG_CONTEXT.set({**LOG_CONTEXT.get(), **ids})
