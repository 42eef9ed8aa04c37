"""The tool registry over REST: `GET /mcp/capabilities`, `GET /mcp/tools` and
`POST /mcp/tools/{toolName}`; errors go through the app's ReynoldsError handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from reynolds import __version__
from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import (
    TOOL_CALL_BODY,
    Capabilities,
    ToolInfo,
    answers,
)
from reynolds.entrypoints.http.schemas import ToolResult as ToolResultSchema
from reynolds.services.tools import TOOLS, CallContext, ToolResult, call_tool, list_tools

PROTOCOL_VERSION = "2025-06-18"


def tools_router(container: Callable[[], Container]) -> APIRouter:
    router = APIRouter()

    @router.get("/mcp/capabilities", response_model=None, responses=answers(Capabilities))
    async def capabilities() -> dict[str, Any]:
        return {
            "capabilities": {"tools": {"listChanged": False}, "resources": {}},
            "protocolVersion": PROTOCOL_VERSION,
            "serverInfo": {"name": "reynolds", "version": __version__},
        }

    @router.get("/mcp/tools", response_model=None, responses=answers(list[ToolInfo]))
    async def tools() -> list[dict[str, Any]]:
        return list_tools()

    @router.post(
        "/mcp/tools/{tool_name}",
        responses=answers(ToolResultSchema, 403, 404, 409, 415, 422),
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
        c = container()
        ctx = CallContext(getattr(request.state, "token_name", None), c.analyses, c.bus)
        result = ToolResult.of(await call_tool(c.engine, tool_name, arguments, ctx))
        return JSONResponse(
            {
                "content": [{"type": "text", "text": result.text}],
                "structuredContent": result.structured,
                "isError": False,
            }
        )

    return router


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
