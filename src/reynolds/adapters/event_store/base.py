"""What both event stores share: event ids, the session scope, messages kept as JSON.

The SDK names a stream by its request id ("1", "2", …, and one GET stream), and every session
numbers its requests the same way, so one stream id is many sessions' streams. Each event is
kept under the *scope* of the session that produced it (a random token the HTTP entrypoint
gives each session) and its id carries that scope: a replay in another session finds nothing.
An event id is `SCOPE.STREAM.POSITION` — the scope, a digest of the stream id, and the
event's position in the store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from mcp.server.streamable_http import EventStore
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

Scope = Callable[[], str]
_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9a-f]{16})\.([0-9]{1,20}(?:-[0-9]{1,20})?)")


# Set by the HTTP entrypoint around each request of an MCP session, to that session's scope.
SESSION_SCOPE: ContextVar[str] = ContextVar("reynolds_mcp_event_scope", default="-")


def no_scope() -> str:
    """The scope outside any session (tests, a store used on its own)."""
    return "-"


def session_scope() -> str:
    """The scope of the MCP session being served ("-" outside any)."""
    return SESSION_SCOPE.get()


def stream_digest(stream_id: str) -> str:
    """A short, header-safe name for a stream id (which a client chooses freely)."""
    return hashlib.sha256(stream_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EventRef:
    """An event id, parsed."""

    scope: str
    stream: str
    position: str

    def __str__(self) -> str:
        return f"{self.scope}.{self.stream}.{self.position}"

    @classmethod
    def parse(cls, event_id: str) -> EventRef | None:
        """None for anything that is not an id this store gave out (it comes from a header)."""
        match = _EVENT_ID.fullmatch(event_id)
        return cls(*match.groups()) if match else None


def encode(message: JSONRPCMessage | None) -> str:
    """A message as it goes on the wire; "" for a priming event, which has none."""
    if message is None:
        return ""
    return message.model_dump_json(by_alias=True, exclude_unset=True)


def decode(text: str) -> JSONRPCMessage:
    message: JSONRPCMessage = jsonrpc_message_adapter.validate_json(text, by_name=False)
    return message


class ScopedEventStore(EventStore):
    """The SDK's EventStore, per session scope, and closed with the app."""

    def __init__(self, scope: Scope = no_scope) -> None:
        self.scope = scope

    def ref(self, last_event_id: str) -> EventRef | None:
        """The event a replay starts after, if it is one of this session's."""
        ref = EventRef.parse(last_event_id)
        return ref if ref is not None and ref.scope == self.scope() else None

    async def aclose(self) -> None:
        return None
