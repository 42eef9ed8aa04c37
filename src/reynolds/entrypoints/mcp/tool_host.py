"""What the MCP server needs from Reynolds: the in-process engine, or a running server's API.

ToolFailed      a tool call that failed; an `isError` result naming the problem
ResourceFailed  a resource that cannot be read; an MCP error naming why
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from reynolds.services.progress import ProgressFn
from reynolds.services.tools import ToolResult


class ToolFailed(Exception):
    """A tool call failed; `body` is the `{error, ...}` the REST API answers with."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.message = describe(body)
        super().__init__(self.message)


class ResourceFailed(Exception):
    """A resource cannot be read; `body` is the `{error, ...}` the REST API answers with."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.message = describe(body)
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class ResourceBody:
    """A resource's contents as text, with its MIME type."""

    mime_type: str
    text: str


class ToolHost(Protocol):
    """The tool and resource registries, wherever they live."""

    async def list_tools(self) -> list[dict[str, Any]]:
        """`[{name, description, inputSchema}]`, as `GET /mcp/tools`."""
        ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        progress: ProgressFn | None,
        caller: str | None = None,
    ) -> ToolResult:
        """The tool's result; raises ToolFailed. `caller` names the token, when known."""
        ...

    async def list_resources(self) -> list[dict[str, str]]:
        """`[{uri, name, mimeType, description}]`, as `GET /mcp/resources`."""
        ...

    async def read_resource(self, uri: str) -> ResourceBody:
        """A `reynolds://` resource; raises ResourceFailed."""
        ...


def describe(body: dict[str, Any]) -> str:
    """One line naming the problem: the error, then each field and why, or what exists."""
    message = str(body.get("error") or "failed")
    fields = [
        f"{e.get('field', '?')}: {e.get('reason', 'invalid')}"
        for e in body.get("errors") or []
        if isinstance(e, dict)
    ]
    if fields:
        message += " — " + "; ".join(fields)
    for key in ("availableTools", "availableResources"):
        if body.get(key):
            message += f" (available: {', '.join(str(v) for v in body[key])})"
    return message
