"""The server's stream of every event (`GET /mcp/events`), read on a thread of its own: the
events that belong to no task (a circuit breaker's, a pool's scaling) are only seen live."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from types import TracebackType
from typing import Any

import httpx

OPEN_TIMEOUT_S = 30.0


class EventStream:
    """`with EventStream(url) as events:` collects every event from the moment it is entered
    (the server's snapshot has arrived, so it is subscribed) until it is left."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.rows: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, name="events", daemon=True)

    def __enter__(self) -> EventStream:
        self._thread.start()
        if not self._subscribed.wait(OPEN_TIMEOUT_S):
            raise AssertionError(f"no snapshot from /mcp/events within {OPEN_TIMEOUT_S} s")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            # Shutting the socket down wakes the thread's blocked read: the stream ends.
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(OPEN_TIMEOUT_S)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [row for row in list(self.rows) if row["kind"] == kind]

    def _read(self) -> None:
        timeout = httpx.Timeout(OPEN_TIMEOUT_S, read=None)  # it is quiet between events
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=timeout) as client,
                client.stream("GET", "/mcp/events") as response,
            ):
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: ") and kind == "snapshot":
                        self._subscribed.set()
                    elif line.startswith("data: "):
                        self.rows.append(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:
            pass  # the stream ended: left, or the server stopped
