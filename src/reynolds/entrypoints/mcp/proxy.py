"""The MCP host of `reynolds mcp`: a client of a running server's REST API.

Tools are `GET /mcp/tools` and `POST /mcp/tools/{name}`, resources `GET /mcp/resources[/…]`;
progress of a waiting `orchestrate_task` follows `GET /tasks/{taskId}/events`.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from reynolds.entrypoints.mcp.tool_host import ResourceBody, ResourceFailed, ToolFailed
from reynolds.entrypoints.rest_client import (
    ToolRefused,
    client_options,
    error_body,
    resource_path,
    task_path,
    tool_answer,
    tool_path,
)
from reynolds.services.progress import ProgressFn, finished_count, progress_message
from reynolds.services.resources import SCHEME
from reynolds.services.tools import ToolResult

REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# Beyond a waiting call's own timeout: the server answers at that timeout, plus the result.
WAIT_MARGIN_S = 30.0
DEFAULT_WAIT_S = 300.0
MAX_WAIT_S = 3600.0
# The event stream sends a keep-alive every 15 s; silence longer than this is a dead stream.
STREAM_SILENCE_S = 45.0
RECONNECT_S = 0.5


class ProxyHost:
    """Tools and resources of the server at `base_url`, with the bearer token when set."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._http = httpx.AsyncClient(
            **client_options(base_url, token, timeout), transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = (await self._ok("GET", "/mcp/tools", ToolFailed)).json()
        return tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        progress: ProgressFn | None,
        caller: str | None = None,
    ) -> ToolResult:
        wait_s = _wait_s(arguments)
        if progress is None or name != "orchestrate_task" or wait_s is None:
            return await self._tool(name, arguments, wait_s)
        # The REST call cannot report progress: submit, follow the task's events, then read
        # its result, each through the server's registry.
        submitted = await self._tool(name, {**arguments, "wait": False}, None)
        task_id = str(submitted.structured["taskId"])
        await self._follow(task_id, wait_s, progress)
        return await self._tool("get_task_status", {"taskId": task_id}, None)

    async def list_resources(self) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = (
            await self._ok("GET", "/mcp/resources", ResourceFailed)
        ).json()
        return rows

    async def read_resource(self, uri: str) -> ResourceBody:
        if not uri.startswith(SCHEME):
            raise ResourceFailed({"error": f"unknown resource {uri!r}: URIs start with {SCHEME}"})
        response = await self._ok("GET", resource_path(uri[len(SCHEME) :]), ResourceFailed)
        mime = response.headers.get("content-type", "text/plain")
        # The server's framework adds a charset the resource itself does not declare.
        mime = "; ".join(p.strip() for p in mime.split(";") if not p.strip().startswith("charset"))
        return ResourceBody(mime, response.text)

    async def _tool(self, name: str, arguments: dict[str, Any], wait_s: float | None) -> ToolResult:
        timeout = httpx.Timeout(
            REQUEST_TIMEOUT_S if wait_s is None else wait_s + WAIT_MARGIN_S,
            connect=CONNECT_TIMEOUT_S,
        )
        response = await self._ok(
            "POST", tool_path(name), ToolFailed, json={"arguments": arguments}, timeout=timeout
        )
        try:
            answer = tool_answer(name, response.json())
        except ToolRefused as exc:
            raise ToolFailed({"error": exc.message}) from None
        # The server's own text: the result is not encoded again here.
        structured = answer.structured if isinstance(answer.structured, dict) else {}
        return ToolResult(structured, answer.text or json.dumps(structured, separators=(",", ":")))

    async def _ok(
        self,
        method: str,
        path: str,
        failure: type[ToolFailed] | type[ResourceFailed],
        **kwargs: Any,
    ) -> httpx.Response:
        """The response when it succeeded; otherwise `failure` naming the problem."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise failure({"error": f"Reynolds at {self.base_url} did not answer in time"}) from exc
        except httpx.TransportError as exc:
            raise failure({"error": f"Reynolds is not running at {self.base_url} ({exc})"}) from exc
        if response.status_code < 400:
            return response
        raise failure(error_body(response))

    async def _follow(self, task_id: str, wait_s: float, progress: ProgressFn) -> None:
        """Report progress from the task's event stream until it ends or `wait_s` passes;
        a dropped stream is joined again (its snapshot restates everything)."""
        statuses: dict[str, str] = {}
        reported = -1

        async def report() -> None:
            nonlocal reported
            done = finished_count(list(statuses.values()))
            if done > reported:
                reported = done
                await progress(done, len(statuses), progress_message(done, len(statuses)))

        path = task_path(task_id, "/events")
        timeout = httpx.Timeout(STREAM_SILENCE_S, connect=CONNECT_TIMEOUT_S)
        with anyio.move_on_after(wait_s):
            while True:
                try:
                    async with self._http.stream("GET", path, timeout=timeout) as response:
                        if response.status_code >= 400:
                            return
                        async for kind, data in _events(response):
                            if kind == "snapshot":
                                statuses = {s["id"]: s["status"] for s in data["subtasks"]}
                            elif kind == "subtask_finished" and data.get("subtaskId") in statuses:
                                status = (data.get("data") or {}).get("status", "")
                                statuses[data["subtaskId"]] = str(status)
                            elif kind == "end":
                                await report()
                                return
                            await report()
                except httpx.TransportError:
                    pass  # the server went away or restarts: join again
                await anyio.sleep(RECONNECT_S)


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """`(event, data)` pairs of a server-sent event stream."""
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def _wait_s(arguments: dict[str, Any]) -> float | None:
    """How long an orchestrate_task call may wait, or None when it does not wait."""
    if arguments.get("wait") is not True:
        return None
    value = arguments.get("timeoutSeconds", DEFAULT_WAIT_S)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_WAIT_S  # the server refuses it, naming the field
    return min(seconds, MAX_WAIT_S) if math.isfinite(seconds) and seconds > 0 else DEFAULT_WAIT_S
