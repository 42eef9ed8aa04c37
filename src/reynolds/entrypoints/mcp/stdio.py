"""`reynolds mcp`: MCP over stdio for desktop assistants, proxied to a running server."""

from __future__ import annotations

import logging
import sys

import anyio
from mcp.server.stdio import stdio_server

from reynolds.entrypoints.mcp.proxy import ProxyHost
from reynolds.entrypoints.mcp.server import build_server
from reynolds.entrypoints.mcp.tool_host import ToolHost


async def serve(host: ToolHost) -> None:
    """Serve until the client closes stdin. While serving, the SDK points file descriptor 1
    at stderr, so nothing but MCP frames reaches stdout."""
    server = build_server(host)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run(base_url: str, token: str | None) -> None:
    """Proxy stdio to the server at `base_url`; logs go to stderr."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="reynolds mcp: %(levelname)s %(message)s"
    )

    async def main() -> None:
        host = ProxyHost(base_url, token)
        try:
            await serve(host)
        finally:
            await host.aclose()

    anyio.run(main)
