"""The HTTP API (FastAPI): the app around a container, its routers and its middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from reynolds import __version__
from reynolds.bootstrap import Container, build
from reynolds.entrypoints.http.audit import audit_router
from reynolds.entrypoints.http.cross_site import CrossSiteGuard, SiteRules
from reynolds.entrypoints.http.dashboard import dashboard_router
from reynolds.entrypoints.http.errors import ErrorsAsJson, add_error_handlers
from reynolds.entrypoints.http.events import events_router
from reynolds.entrypoints.http.experiments import experiments_router
from reynolds.entrypoints.http.health import health_router
from reynolds.entrypoints.http.resources import resources_router
from reynolds.entrypoints.http.security import (
    ApiGuard,
    BodyLimit,
    RequestTiming,
    load_tokens,
    make_limiter,
)
from reynolds.entrypoints.http.tasks import tasks_router
from reynolds.entrypoints.http.tools import tools_router
from reynolds.entrypoints.mcp.streamable_http import McpEndpoint
from reynolds.settings import Settings


def create_app(
    settings: Settings, *, hold_lock: bool = True, container: Container | None = None
) -> FastAPI:
    """A new app for these settings, serving `container` (built already, and closed with the
    app), or a new engine built in its lifespan."""
    state: dict[str, Container] = {}
    tokens = load_tokens(settings)

    def c() -> Container:
        return state["c"]

    mcp = McpEndpoint(c)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = container if container is not None else await build(settings, hold_lock=hold_lock)
        state["c"] = serving
        try:
            # A route's app has no lifespan of its own: the MCP sessions live in this one.
            async with mcp.run():
                yield
        finally:
            await serving.aclose()

    def observe(method: str, path: str, status: int, seconds: float) -> None:
        if "c" in state:
            state["c"].metrics.http_duration.labels(method, path, str(status)).observe(seconds)

    app = FastAPI(title="Reynolds", version=__version__, lifespan=lifespan)
    add_error_handlers(app)
    app.include_router(health_router(settings, c))
    app.include_router(tools_router(c))
    app.include_router(resources_router(c))
    app.include_router(tasks_router(c))
    app.include_router(experiments_router(c))
    app.include_router(events_router(c))
    app.include_router(dashboard_router(tokens))
    # MCP Streamable HTTP at exactly /mcp, after the REST routes (and under their middleware).
    app.router.routes.append(mcp.route())
    app.include_router(audit_router(c))

    # Outermost last: timing sees every answer, 401, 421 and 429 included; the guards refuse
    # before a body is read.
    app.add_middleware(
        BodyLimit, trusted_limit=settings.max_body_bytes, everyone_trusted=not tokens
    )
    app.add_middleware(ApiGuard, tokens=tokens, limiter=make_limiter(settings))
    # Outside the guard: a cross-site or rebound request is refused before a token is looked at.
    app.add_middleware(CrossSiteGuard, rules=SiteRules.from_settings(settings))
    app.add_middleware(RequestTiming, observe=observe)
    # Outermost of all: whatever any route or middleware lets escape is answered in JSON.
    app.add_middleware(ErrorsAsJson)
    return app
