"""MCP over Streamable HTTP at `/mcp`, in the process (and the app) of the REST API."""

from __future__ import annotations

import socket
from collections.abc import Callable

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from reynolds.bootstrap import Container
from reynolds.entrypoints.mcp.local import LocalBackend
from reynolds.entrypoints.mcp.server import build_server
from reynolds.settings import Settings

PATH = "/mcp"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  # recognised, never bound here


class McpEndpoint:
    """The SDK's session manager for one app; run `session_manager.run()` in its lifespan
    (a manager runs once, so every app gets its own)."""

    def __init__(self, settings: Settings, container: Callable[[], Container]) -> None:
        self.session_manager = StreamableHTTPSessionManager(
            app=build_server(LocalBackend(container)),
            security_settings=transport_security(settings),
        )

    def route(self) -> Route:
        """`/mcp` exactly: a route, not a mount, so `/mcp/...` stays REST and nothing redirects."""
        return Route(
            PATH,
            endpoint=StreamableHTTPASGIApp(self.session_manager),
            methods=["GET", "POST", "DELETE"],
            include_in_schema=False,
        )


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin checks on every bind address, not only on loopback (the SDK's default)."""
    hosts = allowed_hosts(settings)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=allowed_origins(settings, hosts),
    )


def allowed_hosts(settings: Settings) -> list[str]:
    """`host:port` for the address the server is reached at; every loopback name when bound
    to loopback, and this machine's names when bound to every interface."""
    names = {settings.host}
    if settings.host in LOOPBACK | WILDCARD:
        names |= LOOPBACK
    if settings.host in WILDCARD:
        names = (names - WILDCARD) | {socket.gethostname(), socket.getfqdn()}
    out: list[str] = []
    for name in sorted(names):
        host = f"[{name}]" if ":" in name and not name.startswith("[") else name
        out.append(f"{host}:{settings.port}")
        if settings.port == 80:  # browsers and clients leave the default port out
            out.append(host)
    return out


def allowed_origins(settings: Settings, hosts: list[str]) -> list[str]:
    """REYNOLDS_ALLOWED_ORIGINS (comma-separated), else the server's own origins."""
    given = [o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()]
    return given or [f"http://{h}" for h in hosts]
