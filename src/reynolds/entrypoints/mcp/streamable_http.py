"""MCP over Streamable HTTP at `/mcp`, in the process (and the app) of the REST API."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import (
    DEFAULT_MAX_SESSIONS,
    StreamableHTTPSessionManager,
)
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reynolds.adapters.event_store.base import SESSION_SCOPE, session_scope
from reynolds.bootstrap import Container
from reynolds.entrypoints.mcp.in_process import InProcessHost
from reynolds.entrypoints.mcp.server import build_server

PATH = "/mcp"
SESSION_HEADER = b"mcp-session-id"


def event_scope() -> str:
    """The event-store scope of the MCP session being served (see `SessionScopes`)."""
    return session_scope()


class McpEndpoint:
    """The SDK's session manager for one app, keeping streams in the container's event store
    so a client resumes a stream after reconnecting (Last-Event-ID); run `run()` in the app's
    lifespan, once the container is built (a manager runs once, so every run gets its own)."""

    def __init__(self, container: Callable[[], Container]) -> None:
        self._container = container
        self._server = build_server(InProcessHost(container))
        self.session_manager: StreamableHTTPSessionManager | None = None
        self.sessions = SessionScopes(self._serve)

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        self.session_manager = StreamableHTTPSessionManager(
            app=self._server,
            event_store=self._container().event_store,
            security_settings=transport_security(),
        )
        async with self.session_manager.run():
            yield

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.session_manager is None:
            raise RuntimeError("the MCP endpoint serves only while the app runs")
        await self.session_manager.handle_request(scope, receive, send)

    def route(self) -> Route:
        """`/mcp` exactly: a route, not a mount, so `/mcp/...` stays REST and nothing redirects."""
        return Route(
            PATH,
            endpoint=self.sessions,
            methods=["GET", "POST", "DELETE"],
            include_in_schema=False,
        )


def transport_security() -> TransportSecuritySettings:
    """The SDK's own Host/Origin/Content-Type checks, off: `CrossSiteGuard` applies the same
    rules to every route, `/mcp` included, from one configuration (REYNOLDS_ALLOWED_HOSTS and
    REYNOLDS_ALLOWED_ORIGINS), so the two can never disagree about a request."""
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


class SessionScopes:
    """Gives each MCP session a random event-store scope, so a Last-Event-ID replays only that
    session's own events: the SDK names streams by request id, which every session reuses.

    A request without a session id (one that opens a session) gets a new scope; the SDK starts
    the session's tasks from that request, so they inherit it, and the session id in the
    answer is mapped to it for the session's later requests. An unknown session id gets a
    scope that matches nothing. At most `limit` sessions are remembered (the SDK's own
    session limit; the least recently used is forgotten first), and a session its client
    deleted is forgotten at once.
    """

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_SESSIONS) -> None:
        self.app = app
        self.limit = limit
        self._scopes: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = _header(scope.get("headers", ()), SESSION_HEADER)
        known = self._scopes.get(session) if session is not None else None
        if known and session is not None:
            self._scopes.move_to_end(session)  # the least recently used goes first
        token = known or secrets.token_hex(8)
        answered: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])
                opened = _header(message.get("headers", ()), SESSION_HEADER)
                if session is None and opened is not None and message["status"] < 400:
                    self._remember(opened, token)
            await send(message)

        reset = SESSION_SCOPE.set(token)
        try:
            await self.app(scope, receive, watch)
        finally:
            SESSION_SCOPE.reset(reset)
        if known and scope.get("method") == "DELETE" and answered and answered[0] < 400:
            self._scopes.pop(session or "", None)

    def _remember(self, session: str, token: str) -> None:
        self._scopes[session] = token
        while len(self._scopes) > self.limit:
            self._scopes.popitem(last=False)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    value = next((v for k, v in headers if k.lower() == name), None)
    return value.decode("latin-1") if value is not None else None
