"""Ports for tests."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port where nothing listens (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
