"""What every client of the Reynolds REST API shares, whatever its I/O: the CLI's synchronous
client (cli/client.py) and the stdio MCP proxy's asynchronous one (mcp/proxy.py).

Where and as whom to connect, the paths (an id or a name is always one path segment), how an
error answer reads, and how a tool's answer is unwrapped: its structured result and its text,
as the server encoded it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

AUTH_HINT = "(set REYNOLDS_API_TOKEN or secrets/api_token.txt)"


def client_options(base_url: str, token: str | None, timeout: httpx.Timeout) -> dict[str, Any]:
    """The keyword arguments of an `httpx.Client` or `httpx.AsyncClient` for this server."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def segment(value: str) -> str:
    """`value` as one path segment, so an id can never reach another route."""
    return quote(value, safe="")


def tool_path(name: str) -> str:
    return f"/mcp/tools/{segment(name)}"


def resource_path(name: str) -> str:
    """The REST path of the resource `reynolds://{name}` (`tasks/{taskId}` keeps its slash)."""
    return f"/mcp/resources/{quote(name, safe='/')}"


def task_path(task_id: str, tail: str = "") -> str:
    return f"/tasks/{segment(task_id)}{tail}"


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The `{error, ...}` of an error answer; its text as `error` when the body is not a JSON
    object, and on a 401 how to give the token."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": response.text.strip()[:500] or f"HTTP {response.status_code}"}
    if response.status_code == 401:
        error = body.get("error") or body.get("detail") or f"HTTP {response.status_code}"
        body["error"] = f"{error} {AUTH_HINT}"
    return body


class ToolRefused(Exception):
    """A tool call answered with an error result (or with a body of another shape)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """A tool's result as the server sent it: structured, and as JSON text ("" if none)."""

    structured: Any
    text: str


def tool_answer(name: str, body: Any) -> ToolAnswer:
    """The result in a `POST /mcp/tools/{name}` answer's body; ToolRefused if it is an error."""
    if not isinstance(body, dict):
        raise ToolRefused(f"{name} answered with an unexpected shape")
    text = content_text(body)
    if body.get("isError"):
        raise ToolRefused(text or f"{name} failed")
    if "structuredContent" in body:
        return ToolAnswer(body["structuredContent"], text)
    return ToolAnswer(json.loads(text) if text else None, text)


def content_text(body: dict[str, Any]) -> str:
    """The text parts of a tool result's `content`, joined."""
    parts = [c.get("text", "") for c in body.get("content") or [] if isinstance(c, dict)]
    return "\n".join(p for p in parts if p)
