"""`GET /health`, `GET /status` and `GET /metrics`: thin shells over services/health."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from reynolds import __version__
from reynolds.adapters.redis_link import masked
from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import HealthReport, ServerStatus, answers, error_responses
from reynolds.services.health import check_health, server_status
from reynolds.settings import Settings

HEALTH_ANSWERS: dict[int | str, dict[str, Any]] = {
    **answers(HealthReport, edge=False),
    503: {"model": HealthReport, "description": "A check is failing."},
    # Exempt from tokens, rate limits and the Host check (security.OPEN_PATHS, cross_site.OPEN).
    **error_responses(413, edge=False),
}


def health_router(settings: Settings, container: Callable[[], Container]) -> APIRouter:
    router = APIRouter()

    # HEAD too: load balancers probe with it, and the status code is the whole answer.
    @router.head("/health", responses=HEALTH_ANSWERS)
    @router.get("/health", responses=HEALTH_ANSWERS)
    async def health(request: Request) -> Response:
        c = container()
        store_url = redact(settings.effective_database_url)
        report = await check_health(
            c.engine,
            c.store,
            store_url=store_url,
            version=__version__,
            probes=c.probes,
            cache=(c.analyses.cache, masked(settings.redis_url))
            if c.analyses is not None and settings.redis_url
            else None,
        )
        if request.method == "HEAD":
            return Response(status_code=report.status_code, media_type="application/json")
        return JSONResponse(report.body, status_code=report.status_code)

    @router.get("/status", response_model=None, responses=answers(ServerStatus))
    async def status() -> dict[str, Any]:
        c = container()
        return await server_status(
            c.engine,
            c.store,
            version=__version__,
            backend=settings.backend,
            store_url=redact(settings.effective_database_url),
            started_at=c.started_at,
            resumed=c.resumed,
        )

    @router.get("/metrics", response_class=PlainTextResponse, responses=error_responses())
    async def metrics() -> Response:
        c = container()
        c.engine.pool_status()  # refreshes the pool gauges
        return Response(c.metrics.render(), media_type="text/plain; version=0.0.4")

    return router


def redact(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
