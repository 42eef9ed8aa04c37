"""What Celery workers tell the orchestrator: claims, heartbeats and results of dispatches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import answers
from reynolds.errors import Conflict
from reynolds.services.actions import JobResult
from reynolds.services.ports import DistributedExecutor


class LeaseRequest(BaseModel):
    """A worker claims a dispatch (`claim`) or renews its lease (`heartbeat`)."""

    model_config = ConfigDict(extra="forbid")
    dispatchId: str = Field(min_length=1, max_length=100)
    worker: str = Field(min_length=1, max_length=300)
    kind: Literal["claim", "heartbeat"] = "heartbeat"


class Lease(BaseModel):
    model_config = ConfigDict(extra="allow")
    dispatchId: str
    leaseSeconds: float


class ResultReport(BaseModel):
    """A worker's report of how a dispatched action ended."""

    model_config = ConfigDict(extra="forbid")
    dispatchId: str = Field(min_length=1, max_length=100)
    worker: str = Field(min_length=1, max_length=300)
    result: JobResult


class Accepted(BaseModel):
    model_config = ConfigDict(extra="allow")
    accepted: bool


def agents_router(container: Callable[[], Container]) -> APIRouter:
    """`POST /agents/leases` and `POST /agents/results`."""
    router = APIRouter()

    def distributed() -> DistributedExecutor:
        executor = container().engine.distributed
        if executor is None:
            raise Conflict("this server runs the local backend: it dispatches nothing")
        return executor

    @router.post(
        "/agents/leases",
        response_model=None,
        responses=answers(Lease, 400, 409, 415, 422),
        summary="A worker claims a dispatch or renews its lease (409: stop, it is stale)",
    )
    async def lease(body: LeaseRequest) -> dict[str, object]:
        executor = distributed()
        if body.kind == "claim":
            seconds = executor.claim(body.dispatchId, body.worker)
        else:
            seconds = executor.heartbeat(body.dispatchId, body.worker)
        return {"dispatchId": body.dispatchId, "leaseSeconds": seconds}

    @router.post(
        "/agents/results",
        response_model=None,
        responses=answers(Accepted, 400, 409, 415, 422),
        summary="A worker reports how a dispatch ended (409: stale, the result is dropped)",
    )
    async def result(body: ResultReport) -> dict[str, object]:
        distributed().report(body.dispatchId, body.worker, body.result)
        return {"accepted": True}

    return router
