"""`GET /experiments`, `GET /experiments/{id}` (the report as JSON),
`GET /experiments/{id}/report.png` and `POST /experiments/{id}/cancel`; errors go through the
app's ReynoldsError handler (404 unknown experiment, 409 no report yet, or nothing to cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import (
    ExperimentList,
    ExperimentReport,
    answers,
    error_responses,
)
from reynolds.errors import Conflict
from reynolds.services.experiments import LIST_LIMIT, Experiments


def experiments_router(container: Callable[[], Container]) -> APIRouter:
    router = APIRouter()

    @router.get("/experiments", response_model=None, responses=answers(ExperimentList, 422))
    async def list_experiments(limit: int = Query(50)) -> Any:
        if not 1 <= limit <= LIST_LIMIT:
            return JSONResponse(
                {
                    "error": "invalid query",
                    "errors": [{"field": "limit", "reason": f"must be 1 to {LIST_LIMIT}"}],
                },
                status_code=422,
            )
        return {"experiments": await Experiments(container().engine).recent(limit)}

    @router.get(
        "/experiments/{experiment_id}",
        response_model=None,
        responses=answers(ExperimentReport, 404, 422),
    )
    async def get_experiment(experiment_id: str) -> dict[str, Any]:
        return await Experiments(container().engine).get(experiment_id)

    @router.post(
        "/experiments/{experiment_id}/cancel",
        response_model=None,
        responses=answers(ExperimentReport, 404, 409, 415, 422),
    )
    async def cancel_experiment(experiment_id: str) -> dict[str, Any]:
        return await Experiments(container().engine).cancel(experiment_id)

    @router.get(
        "/experiments/{experiment_id}/report.png",
        response_model=None,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **error_responses(404, 409, 422)},
    )
    async def report_png(experiment_id: str) -> Response:
        report = await Experiments(container().engine).get(experiment_id)
        if report.get("status") != "completed":
            raise Conflict(
                f"experiment {experiment_id} is {report.get('status')}: no report to draw yet",
                status=report.get("status"),
            )
        png = await asyncio.to_thread(_report_png, report)
        return Response(png, media_type="image/png")

    return router


def _report_png(report: dict[str, Any]) -> bytes:
    """The report drawn, off the event loop; matplotlib (0.5 s to import) only once asked."""
    from reynolds.adapters import charts

    return charts.report_png(report)
