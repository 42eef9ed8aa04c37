"""Failure patterns learned from the newest failed attempts (core/failure_patterns.py), for
`reynolds://patterns`, `analyze_orchestration_potential` and `reynolds patterns`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from reynolds.core.failure_patterns import (
    FailedAttempt,
    FailurePattern,
    action_signature,
    aggregate,
    failure_message,
    relevant_signatures,
)
from reynolds.services.ports import Row, Store

# How many of the newest failed attempts the patterns are learned from.
WINDOW_ATTEMPTS = 5000


def signatures(actions: Iterable[BaseModel | None]) -> set[str]:
    """The signatures of these actions (models, as a task's graph holds them)."""
    seen: dict[int, BaseModel] = {}
    for action in actions:
        if action is not None:
            seen.setdefault(id(action), action)
    return {
        action_signature(a.model_dump(mode="json", by_alias=True, exclude_none=True))
        for a in seen.values()
    }


def signed(rows: Iterable[Row]) -> list[tuple[str, Row]]:
    """Each row of `Store.failure_patterns` with its action's signature. Many attempts share
    an action: each is signed once."""
    known: dict[str, str] = {}
    out = []
    for row in rows:
        action = row.get("action")
        key = json.dumps(action, sort_keys=True)
        signature = known.get(key)
        if signature is None:
            signature = known[key] = action_signature(action)
        out.append((signature, row))
    return out


def failed_attempts(rows: Iterable[tuple[str, Row]]) -> Iterator[FailedAttempt]:
    """Signed rows as the core reads them."""
    for signature, row in rows:
        yield FailedAttempt(
            signature=signature,
            pool=row.get("pool") or "-",
            failure_class=row.get("failure_class") or "unknown",
            message=failure_message(row.get("error"), row.get("output")),
            task_type=row.get("task_type"),
        )


def _patterns(
    rows: list[Row], task_type: str | None, wanted: Iterable[str]
) -> list[FailurePattern]:
    rows_signed = signed(rows)
    if task_type is not None:
        kept = relevant_signatures(
            ((s, row.get("task_type")) for s, row in rows_signed), task_type, wanted
        )
        rows_signed = [(s, row) for s, row in rows_signed if s in kept]
    return aggregate(failed_attempts(rows_signed))


async def learned(
    store: Store,
    *,
    task_type: str | None = None,
    wanted: Iterable[str] = (),
    window: int = WINDOW_ATTEMPTS,
) -> tuple[list[FailurePattern], int]:
    """The patterns of the newest `window` failed attempts, most failures first, and how many
    attempts were read; given a `task_type`, only those of that type's tasks or of the
    `wanted` signatures. What is queued is committed first, so the latest failures count."""
    await store.flush()
    rows = await asyncio.to_thread(store.failure_patterns, window)
    # Masking the messages is CPU work: off the event loop too.
    patterns = await asyncio.to_thread(_patterns, rows, task_type, wanted)
    return patterns, len(rows)


async def failure_patterns(store: Store, window: int = WINDOW_ATTEMPTS) -> dict[str, Any]:
    """`{failurePatterns: [...], window: attempts read}`."""
    patterns, read = await learned(store, window=window)
    return {"failurePatterns": [p.view() for p in patterns], "window": read}


async def patterns_for_task(
    store: Store, task_type: str, wanted: Iterable[str]
) -> list[FailurePattern]:
    """The learned patterns of tasks of `task_type` or of these action signatures."""
    patterns, _ = await learned(store, task_type=task_type, wanted=list(wanted))
    return patterns
