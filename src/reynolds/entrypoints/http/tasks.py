"""`GET /tasks`, `GET /tasks/{taskId}`, `POST /tasks/{taskId}/cancel`; errors go through the
app's ReynoldsError handler (404 unknown task, 409 already ended)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from reynolds.bootstrap import Container
from reynolds.core.models import ListTasksRequest, SubtasksRequest, format_validation_errors
from reynolds.entrypoints.http.schemas import (
    LIST_LIMIT,
    LIST_STATUS,
    PAGE_CURSOR,
    PAGE_LIMIT,
    SubtaskPage,
    TaskList,
    TaskResult,
    answers,
)
from reynolds.services.tools import subtasks_page


def tasks_router(container: Callable[[], Container]) -> APIRouter:
    router = APIRouter()

    @router.get("/tasks", response_model=None, responses=answers(TaskList, 422))
    async def list_tasks(
        status: str | None = Query(None, json_schema_extra=LIST_STATUS),
        limit: int = Query(50, json_schema_extra=LIST_LIMIT),
    ) -> Any:
        try:
            req = ListTasksRequest.model_validate({"status": status, "limit": limit})
        except ValidationError as exc:
            return JSONResponse(
                {"error": "invalid query", "errors": format_validation_errors(list(exc.errors()))},
                status_code=422,
            )
        return {"tasks": await container().engine.list_tasks(req.status, req.limit)}

    @router.get("/tasks/{task_id}", response_model=None, responses=answers(TaskResult, 404, 422))
    async def get_task(task_id: str) -> dict[str, Any]:
        return await container().engine.result(task_id)

    @router.get(
        "/tasks/{task_id}/subtasks",
        response_model=None,
        responses=answers(SubtaskPage, 404, 422),
    )
    async def get_subtasks(
        task_id: str,
        cursor: str = Query("0", json_schema_extra=PAGE_CURSOR),
        limit: int | None = Query(None, json_schema_extra=PAGE_LIMIT),
        status: str | None = Query(None, json_schema_extra=LIST_STATUS),
    ) -> Any:
        arguments = {"taskId": task_id, "cursor": cursor, "limit": limit, "status": status}
        try:
            req = SubtasksRequest.model_validate(arguments)
        except ValidationError as exc:
            return JSONResponse(
                {"error": "invalid query", "errors": format_validation_errors(list(exc.errors()))},
                status_code=422,
            )
        return await subtasks_page(container().engine, req)

    @router.post(
        "/tasks/{task_id}/cancel",
        response_model=None,
        responses=answers(TaskResult, 404, 409, 415, 422),
    )
    async def cancel_task(task_id: str) -> dict[str, Any]:
        return await container().engine.cancel(task_id)

    return router
