"""The HTTP API (FastAPI): health, status, metrics, the tool registry and tasks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from reynolds import __version__
from reynolds.bootstrap import Container, build
from reynolds.core.models import ListTasksRequest, format_validation_errors
from reynolds.entrypoints.http.agents import add_agent_routes
from reynolds.entrypoints.http.audit import add_audit_routes
from reynolds.entrypoints.http.cross_site import CrossSiteGuard, SiteRules
from reynolds.entrypoints.http.errors import ErrorsAsJson, internal_error
from reynolds.entrypoints.http.events import add_event_routes
from reynolds.entrypoints.http.resources import add_resource_routes
from reynolds.entrypoints.http.schemas import (
    HTML_PAGE,
    LIST_LIMIT,
    LIST_STATUS,
    TOOL_CALL_BODY,
    Capabilities,
    HealthReport,
    ServerStatus,
    TaskList,
    TaskResult,
    ToolInfo,
    ToolResult,
    answers,
    error_responses,
)
from reynolds.entrypoints.http.security import (
    ApiGuard,
    BodyLimit,
    RequestTiming,
    load_tokens,
    make_limiter,
)
from reynolds.entrypoints.mcp.streamable_http import McpEndpoint
from reynolds.errors import ReynoldsError
from reynolds.services.tools import TOOLS, CallContext, call_tool
from reynolds.settings import Settings

PROTOCOL_VERSION = "2025-06-18"


def create_app(
    settings: Settings, *, hold_lock: bool = True, container: Container | None = None
) -> FastAPI:
    """A new app for these settings, serving `container` (built already, and closed with the
    app), or a new engine built in its lifespan."""
    state: dict[str, Container] = {}
    tokens = load_tokens(settings)
    mcp = McpEndpoint(lambda: state["c"])

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

    app = FastAPI(title="Reynolds", version=__version__, lifespan=lifespan)

    def c() -> Container:
        return state["c"]

    def observe(method: str, path: str, status: int, seconds: float) -> None:
        if "c" in state:
            state["c"].metrics.http_duration.labels(method, path, str(status)).observe(seconds)

    @app.exception_handler(ReynoldsError)
    async def reynolds_error(request: Request, exc: ReynoldsError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = format_validation_errors(list(exc.errors()))
        return JSONResponse({"error": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing's own answers (no such path, method not allowed) in the API's `{error}` shape.
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    # Anything else is a bug: 500 `{error}` (see errors.py, and ErrorsAsJson below).
    app.add_exception_handler(Exception, internal_error)

    health_answers: dict[int | str, dict[str, Any]] = {
        **answers(HealthReport, edge=False),
        503: {"model": HealthReport, "description": "A check is failing."},
        # Exempt from tokens, rate limits and the Host check (security.OPEN_PATHS, cross_site.OPEN).
        **error_responses(413, edge=False),
    }

    # HEAD too: load balancers probe with it, and the status code is the whole answer.
    @app.head("/health", responses=health_answers)
    @app.get("/health", responses=health_answers)
    async def health(request: Request) -> Response:
        checks: dict[str, Any] = {}
        store = c().store
        checks["store"] = {"status": "ok", "url": _redact(settings.effective_database_url)}
        try:
            # The writer commits, and the store reads afresh (see SqlStore.probe).
            await store.flush()
            await asyncio.to_thread(store.probe)
        except Exception as exc:
            error = exc.message if isinstance(exc, ReynoldsError) else str(exc)
            checks["store"].update(status="failing", error=error)
        engine = c().engine
        pools = engine.pool_status()
        replicas = {p["type"]: p["replicas"] for p in pools}
        if engine.remote is None:
            checks["pools"] = {
                "status": "ok" if all(replicas.values()) else "failing",
                "replicas": replicas,
            }
        else:
            # Workers come and go on their own; the server is healthy while it reaches the
            # broker. A pool no worker serves is reported, and its subtasks wait.
            remote = engine.remote.describe()
            error = remote["brokerError"]
            checks["broker"] = {"status": "failing", "error": error} if error else {"status": "ok"}
            checks["pools"] = {
                "status": "ok",
                "replicas": replicas,
                "withoutWorkers": [k for k, n in replicas.items() if not n],
            }
        failing = [k for k, v in checks.items() if v["status"] != "ok"]
        body: dict[str, Any] = {
            "status": "unhealthy" if failing else "healthy",
            "checks": checks,
            "version": __version__,
        }
        if failing:
            body["failing"] = failing
            # As every error answer, an `error` line: each failing check and why.
            body["error"] = "; ".join(f"{k}: {checks[k].get('error', 'failing')}" for k in failing)
        status_code = 503 if failing else 200
        if request.method == "HEAD":
            return Response(status_code=status_code, media_type="application/json")
        return JSONResponse(body, status_code=status_code)

    @app.get("/status", response_model=None, responses=answers(ServerStatus))
    async def status() -> dict[str, Any]:
        container = c()
        await container.store.flush()
        counts = await asyncio.to_thread(container.store.task_counts)
        return {
            "service": "reynolds",
            "version": __version__,
            "pools": container.engine.pool_status(),
            "tasks": counts,
            "engine": container.engine.counts(),
            "backend": settings.backend,
            "store": _redact(settings.effective_database_url).split(":", 1)[0],
            "uptimeSeconds": round(time.time() - container.started_at, 3),
            "resumedTasks": container.resumed,
            **(
                {"celery": container.engine.remote.describe()}
                if container.engine.remote is not None
                else {}
            ),
        }

    @app.get("/metrics", response_class=PlainTextResponse, responses=error_responses())
    async def metrics() -> Response:
        c().engine.pool_status()  # refreshes the pool gauges
        return Response(c().metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/mcp/capabilities", response_model=None, responses=answers(Capabilities))
    async def capabilities() -> dict[str, Any]:
        return {
            "capabilities": {"tools": {"listChanged": False}, "resources": {}},
            "protocolVersion": PROTOCOL_VERSION,
            "serverInfo": {"name": "reynolds", "version": __version__},
        }

    @app.get("/mcp/tools", response_model=None, responses=answers(list[ToolInfo]))
    async def list_tools() -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema()}
            for t in TOOLS.values()
        ]

    @app.post(
        "/mcp/tools/{tool_name}",
        responses=answers(ToolResult, 403, 404, 409, 415, 422, 501),
        openapi_extra=TOOL_CALL_BODY,
    )
    async def run_tool(
        request: Request,
        # Documented, not enforced: an unknown name is a 404 listing the tools, not a 422.
        tool_name: str = Path(json_schema_extra={"enum": sorted(TOOLS)}),
    ) -> JSONResponse:
        if tool_name not in TOOLS:
            return JSONResponse(
                {"error": f"unknown tool {tool_name!r}", "availableTools": sorted(TOOLS)},
                status_code=404,
            )
        arguments = await _arguments(request)
        if isinstance(arguments, JSONResponse):
            return arguments
        ctx = CallContext(getattr(request.state, "token_name", None), c().analyses)
        try:
            result = await call_tool(c().engine, tool_name, arguments, ctx)
        except ValidationError as exc:
            errors = [
                {"field": f"arguments.{e['field']}", "reason": e["reason"]}
                for e in format_validation_errors(list(exc.errors()))
            ]
            return JSONResponse({"error": "invalid arguments", "errors": errors}, status_code=422)
        text = json.dumps(result, separators=(",", ":"))
        return JSONResponse(
            {
                "content": [{"type": "text", "text": text}],
                "structuredContent": result,
                "isError": False,
            }
        )

    add_resource_routes(app, c)

    @app.get("/tasks", response_model=None, responses=answers(TaskList, 422))
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
        return {"tasks": await c().engine.list_tasks(req.status, req.limit)}

    @app.get("/tasks/{task_id}", response_model=None, responses=answers(TaskResult, 404, 422))
    async def get_task(task_id: str) -> dict[str, Any]:
        return await c().engine.result(task_id)

    @app.post(
        "/tasks/{task_id}/cancel",
        response_model=None,
        responses=answers(TaskResult, 404, 409, 415, 422),
    )
    async def cancel_task(task_id: str) -> dict[str, Any]:
        return await c().engine.cancel(task_id)

    add_event_routes(app, c)

    @app.get(
        "/",
        response_class=HTMLResponse,
        responses={
            200: HTML_PAGE,
            501: {**HTML_PAGE, "description": "Not available yet."},
            **error_responses(),
        },
    )
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><title>Reynolds</title><h1>Reynolds</h1>"
            "<p>The web dashboard: not available yet. The API is at <a href='/docs'>/docs</a>, "
            "tasks at <a href='/tasks'>/tasks</a>.</p>",
            status_code=501,
        )

    # MCP Streamable HTTP at exactly /mcp, after the REST routes (and under their middleware).
    app.router.routes.append(mcp.route())

    add_audit_routes(app, c)
    add_agent_routes(app, c)

    # Outermost last: timing sees every answer, 401, 421 and 429 included; the guards refuse
    # before a body is read.
    app.add_middleware(BodyLimit)
    app.add_middleware(ApiGuard, tokens=tokens, limiter=make_limiter(settings))
    # Outside the guard: a cross-site or rebound request is refused before a token is looked at.
    app.add_middleware(CrossSiteGuard, rules=SiteRules.from_settings(settings))
    app.add_middleware(RequestTiming, observe=observe)
    # Outermost of all: whatever any route or middleware lets escape is answered in JSON.
    app.add_middleware(ErrorsAsJson)
    return app


async def _arguments(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        # ValueError: malformed JSON, bytes that are not UTF-8, NaN and the infinities, and
        # integers too long for Python to read. RecursionError: nesting deep enough to exhaust
        # the parser's stack.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return JSONResponse(
            {"error": "body is not valid JSON", "errors": [{"field": "(body)", "reason": reason}]},
            status_code=422,
        )
    if not isinstance(body, dict) or not isinstance(body.get("arguments", {}), dict):
        return JSONResponse(
            {
                "error": 'body must be an object {"arguments": {...}}',
                "errors": [{"field": "arguments", "reason": "must be an object"}],
            },
            status_code=422,
        )
    args: dict[str, Any] = body.get("arguments", {})
    return args


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and the infinities; JSON has no such numbers."""
    raise ValueError(f"{constant} is not JSON")


def _redact(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
