"""The HTTP server process: `reynolds serve` binds its port, builds the container (the store
checked, unfinished tasks resumed), then serves the app with uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from typing import Any

from reynolds.adapters import logs
from reynolds.adapters.home import writing
from reynolds.bootstrap import build, server_process
from reynolds.entrypoints.http.app import create_app
from reynolds.errors import CannotListen
from reynolds.settings import Settings

log = logging.getLogger("reynolds")


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings. None of them ends a request that is still being answered: a
    `wait: true` orchestrate call may take up to an hour (timeoutSeconds ≤ 3600).
    `timeout_keep_alive` closes idle connections between requests only, and the graceful
    shutdown timeout applies only when the server stops."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        # uvicorn's own lines go through the server's logs (adapters/logs.py), not a handler
        # of its own.
        "log_config": None,
        # Off: request lines hold task ids and query strings, and nothing here needs them.
        "access_log": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 10,
        # The rate limit keys on the peer address; a forwarded header must not change it.
        "proxy_headers": False,
    }


def listen(settings: Settings) -> list[socket.socket]:
    """The server's sockets, bound before anything else starts, so that a taken port is
    refused before the store is opened or a task resumed; CannotListen saying why. Made as
    asyncio's create_server makes them (one per address of the host, TCP_NODELAY follows
    from the protocol), as uvicorn would have."""
    where = f"{settings.host}:{settings.port}"
    try:
        infos = socket.getaddrinfo(
            settings.host or None,
            settings.port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE,
        )
    except OSError as exc:
        raise CannotListen(f"cannot listen on {where}: {exc.strerror or exc}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CannotListen(f"cannot listen on {where}: {why or exc}") from None
    return sockets


def serve(settings: Settings) -> None:
    """Run the server in the foreground until SIGTERM/SIGINT. What keeps it from starting is a
    ReynoldsError saying why in one line (the CLI prints it); nothing is served until the store
    is checked, the tasks resumed and the port taken."""
    with server_process(settings):
        # Once the home is known to be ours and writable.
        with writing(settings.home):
            lines = logs.configure(
                settings.log_dir, "server", console=settings.log_console,
                secrets=settings.secret_values(),
            )  # fmt: skip
        # The MCP SDK logs a line per request at INFO; the server's own log keeps to its events.
        logging.getLogger("mcp").setLevel(logging.WARNING)
        try:
            _serve_until_stopped(settings)
        finally:
            lines.close()


def _serve_until_stopped(settings: Settings) -> None:
    sockets = listen(settings)
    try:
        # asyncio's own loop, as uvicorn chooses when uvloop is not installed (it is not a
        # dependency); the container is built in it first, so its failures are ours to show.
        asyncio.run(_serve(settings, sockets))
    except asyncio.CancelledError:
        log.info("stopped while starting")
    finally:
        for sock in sockets:
            sock.close()


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    import uvicorn

    # Until uvicorn takes the signals over, SIGTERM stops the start-up, and build() stops
    # whatever it had started (resumed subtasks included).
    loop = asyncio.get_running_loop()
    starting = asyncio.current_task()
    assert starting is not None
    loop.add_signal_handler(signal.SIGTERM, starting.cancel)
    try:
        container = await build(settings, hold_lock=False)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    app = create_app(settings, container=container)
    server = uvicorn.Server(uvicorn.Config(app, **server_options(settings)))
    # Long-lived start-up objects leave the collector's view, and young collections run
    # every 50,000 allocations rather than 700: under load the default's frequent pauses
    # showed up in status latency (p95 145–177 ms against 68–118 ms with this, same run).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    await server.serve(sockets=sockets)
