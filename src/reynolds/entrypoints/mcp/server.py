"""The MCP server (the SDK's low-level `Server`): tools and resources from a ToolHost.

The low-level server passes each tool's input schema through exactly as the registry
generates it, so MCP clients see the schemas of `GET /mcp/tools`.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from reynolds import __version__
from reynolds.entrypoints.mcp.tool_host import ResourceFailed, ToolFailed, ToolHost
from reynolds.services.progress import ProgressFn
from reynolds.services.resources import TASK_DESCRIPTION, TASK_TEMPLATE

INSTRUCTIONS = (
    "Reynolds decomposes a task into a DAG of subtasks and runs them in parallel on agent "
    "pools. Start with orchestrate_task (wait: true to get the result in one call)."
)
Context = ServerRequestContext[Any, Any]


def build_server(host: ToolHost) -> Server[Any]:
    """A server whose tools and resources are the host's."""
    handlers = _Handlers(host)
    return Server(
        "reynolds",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_list_resource_templates=handlers.list_templates,
        on_read_resource=handlers.read_resource,
    )


class _Handlers:
    """The server's request handlers, each mapping the host's answer or failure to MCP."""

    def __init__(self, host: ToolHost) -> None:
        self.host = host

    async def list_tools(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            tools = await self.host.list_tools()
        except ToolFailed as exc:
            raise MCPError(types.INTERNAL_ERROR, exc.message, exc.body) from None
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=t["name"], description=t["description"], input_schema=t["inputSchema"]
                )
                for t in tools
            ]
        )

    async def call_tool(
        self, ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            result = await self.host.call_tool(
                params.name, params.arguments or {}, _progress(ctx), caller=_caller(ctx)
            )
        except ToolFailed as exc:
            return types.CallToolResult(
                content=[types.TextContent(text=exc.message)],
                structured_content=exc.body,
                is_error=True,
            )
        return types.CallToolResult(
            content=[types.TextContent(text=result.text)], structured_content=result.structured
        )

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        try:
            rows = await self.host.list_resources()
        except ResourceFailed as exc:
            raise MCPError(types.INTERNAL_ERROR, exc.message, exc.body) from None
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=r["uri"],
                    name=r["name"],
                    mime_type=r["mimeType"],
                    description=r.get("description"),
                )
                for r in rows
                if r["uri"] != TASK_TEMPLATE
            ]
        )

    async def list_templates(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=TASK_TEMPLATE,
            name="task",
            mime_type="application/json",
            description=TASK_DESCRIPTION,
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(
        self, ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            body = await self.host.read_resource(params.uri)
        except ResourceFailed as exc:
            # The SDK's own convention for a resource that cannot be read.
            raise MCPError(types.INVALID_PARAMS, exc.message, exc.body) from None
        contents = types.TextResourceContents(
            uri=params.uri, mime_type=body.mime_type, text=body.text
        )
        return types.ReadResourceResult(contents=[contents])


def _progress(ctx: Context) -> ProgressFn | None:
    """Progress reporting for this request, or None when the client asked for none."""
    meta = ctx.meta or {}
    if meta.get("progress_token") is None and meta.get("progressToken") is None:
        return None

    async def report(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    return report


def _caller(ctx: Context) -> str | None:
    """The bearer token's name, which the HTTP middleware put on the request's state."""
    state = getattr(ctx.request, "state", None)
    name = getattr(state, "token_name", None)
    return name if isinstance(name, str) else None
