"""`GET /audit`: the audit log a page at a time, pages going back from the newest."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from reynolds.bootstrap import Container
from reynolds.core.audit import PAGE_DEFAULT, PAGE_MAX, audit_view, decode_cursor, parse_since
from reynolds.core.wire_values import NUL_REASON, clean_text
from reynolds.entrypoints.http.schemas import error_responses
from reynolds.services.audit import read_audit


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
    nextCursor: str | None = Field(
        description="Pass as `cursor` for the page of older records; null when there are none."
    )


def audit_router(container: Callable[[], Container]) -> APIRouter:
    """`GET /audit`."""
    router = APIRouter()

    @router.get(
        "/audit",
        responses={200: {"model": AuditList}, **error_responses(422)},
        summary="The audit log, a page at a time: one record per tool call and per action attempt",
    )
    async def read_audit_page(
        task_id: str | None = Query(None, alias="taskId", max_length=64),
        since: str | None = Query(
            None, max_length=64, description="10m, 2h, 1d, an ISO-8601 time or epoch seconds"
        ),
        limit: int = Query(PAGE_DEFAULT, ge=1, le=PAGE_MAX, description="Records on the page."),
        # Its length is checked with the rest of it, so that every bad cursor gets one answer.
        cursor: str | None = Query(None, description="A `nextCursor` from an earlier page."),
    ) -> Any:
        if task_id is not None and not clean_text(task_id):
            return _invalid("taskId", ValueError(NUL_REASON))
        try:
            after = parse_since(since, time.time()) if since else None
            if after is not None and not math.isfinite(after):
                raise ValueError(f"{since!r} is no time")
        except ValueError as exc:
            return _invalid("since", exc)
        try:
            before = decode_cursor(cursor) if cursor is not None else None
        except ValueError as exc:
            return _invalid("cursor", exc)
        page = await read_audit(
            container().store, task_id=task_id, since=after, limit=limit, before=before
        )
        return {
            "records": [audit_view(row) for row in page.records],
            "nextCursor": page.next_cursor,
        }

    return router


def _invalid(field: str, exc: ValueError) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid query", "errors": [{"field": field, "reason": str(exc)}]},
        status_code=422,
    )
