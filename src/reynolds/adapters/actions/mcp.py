"""The `mcp` action runner: tool calls on the MCP servers a pool declares.

One session is kept per (pool, server), opened by the first call and shared by the calls after
it, at most `maxConcurrency` of them in flight at once. A session belongs to a task of its own
(the SDK's transports are anyio task groups, which must be left by the task that entered them);
calls only send requests on it. A call that finds its server gone (a stdio process that died,
an HTTP server that refuses the connection) fails, and the session is closed, so that the next
call opens a new one.

A stdio server is started in the contract's child environment plus its declared `env` (the SDK
adds HOME, LOGNAME, PATH, SHELL, TERM and USER of its own), in its own process group, and
stopped when its session closes. An HTTP server's `tokenFile` is read from the secrets folder
when its session opens and sent as a bearer token; it is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, TextContent

from reynolds.adapters.actions.shell import child_environment
from reynolds.core.mcp_servers import McpHttpServer, McpServer, McpStdioServer
from reynolds.core.models import McpAction
from reynolds.services.ports import ActionContext, ActionResult

log = logging.getLogger("reynolds.mcp")

# Connecting and sending; a tool's answer may take as long as the subtask's timeout allows.
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=None)
Opener = Callable[[], AbstractAsyncContextManager[ClientSession]]


class McpUnavailable(Exception):
    """A session could not be opened: the server did not start, or did not answer."""


class _Link:
    """One session, owned by a task of its own from opening to closing."""

    def __init__(self, opener: Opener) -> None:
        self.ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        self.closing = asyncio.Event()
        self.dead = False
        self.owner = asyncio.create_task(self._own(opener))

    async def _own(self, opener: Opener) -> None:
        try:
            async with opener() as session:
                self.ready.set_result(session)
                await self.closing.wait()
        except Exception as exc:
            if not self.ready.done():
                self.ready.set_exception(McpUnavailable(_describe(exc)))
            else:
                log.info("an MCP session ended: %s", _describe(exc))
        finally:
            self.dead = True
            if not self.ready.done():  # cancelled while opening
                self.ready.set_exception(McpUnavailable("the session was closed while opening"))

    async def session(self) -> ClientSession:
        # Shielded: a call that times out while waiting must not cancel the opening itself.
        return await asyncio.shield(self.ready)

    async def close(self) -> None:
        self.dead = True
        self.closing.set()
        # The SDK bounds its own shutdown of a stdio server (stdin closed, then TERM, KILL).
        await asyncio.gather(self.owner, return_exceptions=True)


class McpRunner:
    """Runs `mcp` actions over sessions kept per (pool, server)."""

    def __init__(self, *, secrets_dir: Path, errlog: TextIO | None = None) -> None:
        self._secrets_dir = secrets_dir
        self._errlog = errlog
        self._links: dict[tuple[str, str], _Link] = {}
        self._limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._devnull: TextIO | None = None

    async def run(
        self,
        action: McpAction,
        ctx: ActionContext,
        *,
        pool: str,
        server: McpServer,
        arguments: dict[str, Any],
    ) -> ActionResult:
        """Call the tool within the subtask's timeout (waiting for a free slot included)."""
        key = (pool, action.server)
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = asyncio.Semaphore(server.max_concurrency)
        try:
            async with asyncio.timeout(ctx.timeout_s), limit:
                return await self._call(key, server, action, arguments, ctx)
        except TimeoutError:
            return ActionResult(
                ok=False,
                reason="timeout",
                error=f"no answer from MCP server {action.server!r} within {ctx.timeout_s:g} s",
            )

    async def _call(
        self,
        key: tuple[str, str],
        server: McpServer,
        action: McpAction,
        arguments: dict[str, Any],
        ctx: ActionContext,
    ) -> ActionResult:
        link = self._link(key, server, ctx.workspace)
        try:
            session = await link.session()
            result = await session.call_tool(action.tool, arguments)
        except McpUnavailable as exc:
            self._drop(key, link)
            return ActionResult(
                ok=False, reason="error", error=f"MCP server {action.server!r}: {exc}"
            )
        except MCPError as exc:
            # The server answered with an error (an unknown tool, bad arguments): it is there
            # and well, as after an error result; unless the error is that the connection closed.
            gone = exc.code == CONNECTION_CLOSED
            if gone:
                self._drop(key, link)
            return ActionResult(
                ok=False,
                reason="error" if gone else None,
                error=f"MCP server {action.server!r}: {exc.message} (code {exc.code})",
            )
        except Exception as exc:
            self._drop(key, link)
            return ActionResult(
                ok=False, reason="error", error=f"MCP server {action.server!r}: {_describe(exc)}"
            )
        if not isinstance(result, CallToolResult):
            return ActionResult(
                ok=False, reason="error", error=f"unexpected answer {type(result).__name__}"
            )
        return tool_result(result, ctx.output_cap_bytes)

    def _link(self, key: tuple[str, str], server: McpServer, workspace: str) -> _Link:
        link = self._links.get(key)
        if link is None or link.dead:
            link = self._links[key] = _Link(self._opener(server, workspace))
        return link

    def _drop(self, key: tuple[str, str], link: _Link) -> None:
        """Forget `link` (the next call opens a new session) and close it in the background."""
        if self._links.get(key) is link:
            del self._links[key]
        task = asyncio.create_task(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _opener(self, server: McpServer, workspace: str) -> Opener:
        if isinstance(server, McpStdioServer):
            params = StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=child_environment(os.environ, server.env),
                cwd=workspace,
            )
            return lambda: _stdio_session(params, self._errlog or self._stderr())
        assert isinstance(server, McpHttpServer)
        return lambda: _http_session(server.url, self._token(server))

    def _stderr(self) -> TextIO:
        """Where a stdio server's stderr goes: this process's, when it is a file (a Celery
        worker's `sys.stderr` is a logging proxy; its original stream is the file), else
        nowhere."""
        for stream in (sys.stderr, sys.__stderr__):
            try:
                if stream is not None and stream.fileno() >= 0:
                    return stream
            except (AttributeError, OSError, ValueError):
                continue
        if self._devnull is None:
            # Kept open for the servers started later (no `with`): aclose closes it.
            self._devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        return self._devnull

    def _token(self, server: McpHttpServer) -> str | None:
        if server.token_file is None:
            return None
        path = self._secrets_dir / server.token_file
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise McpUnavailable(f"cannot read its token file {path}: {exc.strerror}") from None

    async def aclose(self) -> None:
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links), *self._closing)
        if self._devnull is not None:
            self._devnull.close()


@asynccontextmanager
async def _stdio_session(
    params: StdioServerParameters, errlog: TextIO
) -> AsyncIterator[ClientSession]:
    async with (
        stdio_client(params, errlog=errlog) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def _http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    refusals: list[httpx2.Response] = []

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            refusals.append(response)

    # trust_env=False: a proxy from the environment would be a host nobody declared.
    async with (
        httpx2.AsyncClient(
            headers=headers,
            timeout=HTTP_TIMEOUT,
            trust_env=False,
            event_hooks={"response": [note]},
        ) as http,
        streamable_http_client(url, http_client=http) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        try:
            await session.initialize()
        except MCPError as exc:
            if not refusals:
                raise
            # The SDK's error says only that the server refused; its status says why (401).
            refused = refusals[-1]
            status = f"HTTP {refused.status_code} {refused.reason_phrase}".rstrip()
            raise McpUnavailable(f"{status}: {exc.message}") from None
        yield session


def tool_result(result: CallToolResult, cap_bytes: int) -> ActionResult:
    """A tool's result as an action's: its text content, then its structured content as JSON,
    in at most `cap_bytes`; an `isError` result is a failure with that text as its error."""
    parts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    data = "\n".join(parts).encode("utf-8", errors="replace")
    text = data[:cap_bytes].decode("utf-8", errors="ignore")
    truncated = len(data) > cap_bytes
    if truncated:
        text += f"\n[truncated: showing the first {cap_bytes} of {len(data)} bytes]"
    if result.is_error:
        return ActionResult(
            ok=False,
            output=text,
            error=text or "the tool reported an error",
            output_bytes=len(data),
            truncated=truncated,
        )
    return ActionResult(ok=True, output=text, output_bytes=len(data), truncated=truncated)


def _describe(exc: BaseException) -> str:
    """One line for an exception, the first of a group's (anyio task groups raise groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpUnavailable):
        return str(exc)
    if isinstance(exc, httpx2.ConnectError):  # worded so that it is classified as connection
        return f"could not connect: {exc}"
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
