"""`GET /experiments`, `GET /experiments/{id}` (the report as JSON); errors go through the
app's ReynoldsError handler (404 unknown experiment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import ExperimentList, ExperimentReport, answers
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
        return {"experiments": await Experiments(container().engine).list(limit)}

    @router.get(
        "/experiments/{experiment_id}",
        response_model=None,
        responses=answers(ExperimentReport, 404, 422),
    )
    async def get_experiment(experiment_id: str) -> dict[str, Any]:
        return await Experiments(container().engine).get(experiment_id)

    return router
