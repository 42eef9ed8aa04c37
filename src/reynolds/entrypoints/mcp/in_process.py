"""The MCP host inside the server process: the tool and resource registries on its engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reynolds.bootstrap import Container
from reynolds.entrypoints.mcp.tool_host import ResourceBody, ResourceFailed, ToolFailed
from reynolds.errors import ReynoldsError
from reynolds.services import resources
from reynolds.services.progress import ProgressFn
from reynolds.services.tools import CallContext, ToolResult, call_tool, list_tools


class InProcessHost:
    """Tools and resources of this process's engine; `container` is read per call because the
    app builds it in its lifespan, after this host exists."""

    def __init__(self, container: Callable[[], Container]) -> None:
        self._container = container

    async def list_tools(self) -> list[dict[str, Any]]:
        return list_tools()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        progress: ProgressFn | None,
        caller: str | None = None,
    ) -> ToolResult:
        c = self._container()
        ctx = CallContext(caller, c.analyses, c.bus)
        try:
            return ToolResult.of(await call_tool(c.engine, name, arguments, ctx, progress))
        except ReynoldsError as exc:
            raise ToolFailed(exc.to_dict()) from None

    async def list_resources(self) -> list[dict[str, str]]:
        return resources.listing()

    async def read_resource(self, uri: str) -> ResourceBody:
        try:
            contents = await resources.read(self._container().engine, resources.name_of(uri))
        except ReynoldsError as exc:
            raise ResourceFailed(exc.to_dict()) from None
        return ResourceBody(contents.mime_type, contents.text)
