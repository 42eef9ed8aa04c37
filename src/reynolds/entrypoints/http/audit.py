"""`GET /audit`: the audit log, newest records last."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from reynolds.adapters.store.sql import AUDIT_MAX_LIMIT
from reynolds.bootstrap import Container
from reynolds.core.audit import audit_view, parse_since
from reynolds.core.wire_values import NUL_REASON, clean_text
from reynolds.entrypoints.http.schemas import error_responses


class AuditRecord(BaseModel):
    """One tool call (`kind: tool`) or action attempt (`kind: action`). Field names are the
    wire's camelCase."""

    model_config = ConfigDict(extra="allow")
    seq: int
    at: str
    kind: str
    tokenName: str | None = None
    tool: str | None = None
    actionKind: str | None = None
    pool: str | None = None
    taskId: str | None = None
    subtaskId: str | None = None
    attempt: int | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    envNames: list[str] | None = None
    decision: str
    outcome: str | None = None
    detail: str | None = None
    exitCode: int | None = None
    durationSeconds: float | None = None
    outputBytes: int | None = None


class AuditList(BaseModel):
    model_config = ConfigDict(extra="allow")
    records: list[AuditRecord]


def add_audit_routes(app: FastAPI, container: Callable[[], Container]) -> None:
    """Register `GET /audit`."""

    @app.get(
        "/audit",
        responses={200: {"model": AuditList}, **error_responses(422)},
        summary="The audit log: one record per tool call and per action attempt",
    )
    async def read_audit(
        task_id: str | None = Query(None, alias="taskId", max_length=64),
        since: str | None = Query(
            None, max_length=64, description="10m, 2h, 1d, an ISO-8601 time or epoch seconds"
        ),
        limit: int = Query(100, ge=1, le=AUDIT_MAX_LIMIT),
    ) -> Any:
        if task_id is not None and not clean_text(task_id):
            return JSONResponse(
                {"error": "invalid query", "errors": [{"field": "taskId", "reason": NUL_REASON}]},
                status_code=422,
            )
        after = None
        if since:
            try:
                after = parse_since(since, time.time())
                if not math.isfinite(after):
                    raise ValueError(f"{since!r} is no time")
            except ValueError as exc:
                return JSONResponse(
                    {"error": "invalid query", "errors": [{"field": "since", "reason": str(exc)}]},
                    status_code=422,
                )
        store = container().store
        await store.flush()
        rows = await asyncio.to_thread(store.audit, task_id, after, limit)
        return {"records": [audit_view(row) for row in rows]}
