"""How `/mcp` keeps streams for resumption: which event store the session manager gets, and
the per-session scope each request runs under (so one session never replays another's)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from reynolds.adapters.cache.memory import MemoryCache
from reynolds.adapters.event_store.base import ScopedEventStore
from reynolds.adapters.event_store.memory import MemoryEventStore
from reynolds.bootstrap import make_cache, make_event_store
from reynolds.entrypoints.mcp.streamable_http import McpEndpoint, SessionScopes, event_scope
from reynolds.settings import Settings


def settings(tmp_path: Path, redis_url: str | None = None) -> Settings:
    return Settings(home=tmp_path / "home", secrets_dir=tmp_path / "secrets", redis_url=redis_url)


def served_store(event_store: ScopedEventStore) -> Any:
    """The event store the endpoint's session manager keeps streams in, given a container
    holding `event_store` (the bootstrap builds it; the endpoint only takes it)."""
    container: Any = SimpleNamespace(event_store=event_store)
    endpoint = McpEndpoint(lambda: container)

    async def running() -> Any:
        async with endpoint.run():
            assert endpoint.session_manager is not None
            return endpoint.session_manager.event_store

    return anyio.run(running)


def test_by_default_the_session_manager_keeps_streams_in_process(tmp_path: Path) -> None:
    event_store = make_event_store(settings(tmp_path))
    assert isinstance(event_store, MemoryEventStore)
    assert served_store(event_store) is event_store
    assert isinstance(make_cache(settings(tmp_path)), MemoryCache)


def test_with_a_redis_url_streams_and_cache_go_to_redis_without_connecting_yet(
    tmp_path: Path,
) -> None:
    from reynolds.adapters.cache.redis import RedisCache
    from reynolds.adapters.event_store.redis import RedisEventStore

    configured = settings(tmp_path, "redis://127.0.0.1:1/0")  # nothing listens
    event_store = make_event_store(configured)
    cache = make_cache(configured)
    assert isinstance(event_store, RedisEventStore)
    assert served_store(event_store) is event_store
    assert isinstance(cache, RedisCache)
    anyio.run(event_store.aclose)
    anyio.run(cache.aclose)


class App:
    """Records the scope each request ran under; answers with `answer` headers."""

    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.answer: dict[bytes, bytes] = {}
        self.status = 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(event_scope())
        headers = list(self.answer.items())
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def call(app: SessionScopes, method: str = "POST", session: str | None = None) -> None:
    headers = [(b"mcp-session-id", session.encode())] if session else []
    scope = {"type": "http", "method": method, "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    anyio.run(app, scope, receive, send)


@pytest.fixture
def inner() -> App:
    return App()


def test_a_session_keeps_the_scope_of_the_request_that_opened_it(inner: App) -> None:
    scopes = SessionScopes(inner)
    inner.answer = {b"mcp-session-id": b"s1"}
    call(scopes)  # initialize: no session id yet
    inner.answer = {}
    call(scopes, session="s1")
    call(scopes, "GET", session="s1")
    assert len(set(inner.scopes)) == 1 and inner.scopes[0] != "-"


def test_sessions_and_unknown_session_ids_get_scopes_of_their_own(inner: App) -> None:
    scopes = SessionScopes(inner)
    for session in ("s1", "s2"):
        inner.answer = {b"mcp-session-id": session.encode()}
        call(scopes)
    inner.answer = {}
    call(scopes, session="s1")
    call(scopes, session="s2")
    call(scopes, session="forged")
    call(scopes, session="forged")
    assert len(set(inner.scopes[2:])) == 4


def test_a_refused_opening_or_a_deleted_session_is_forgotten(inner: App) -> None:
    scopes = SessionScopes(inner)
    inner.answer, inner.status = {b"mcp-session-id": b"refused"}, 400
    call(scopes)
    inner.answer, inner.status = {b"mcp-session-id": b"s1"}, 200
    call(scopes)
    inner.answer = {}
    call(scopes, "DELETE", session="s1")
    call(scopes, session="s1")
    assert inner.scopes[1] == inner.scopes[2] != inner.scopes[3]
    assert scopes._scopes == {}


def test_at_most_limit_sessions_are_remembered_the_least_recently_used_going_first(
    inner: App,
) -> None:
    scopes = SessionScopes(inner, limit=2)
    for n in range(2):
        inner.answer = {b"mcp-session-id": f"s{n}".encode()}
        call(scopes)
    inner.answer = {}
    call(scopes, session="s0")
    inner.answer = {b"mcp-session-id": b"s2"}
    call(scopes)
    assert list(scopes._scopes) == ["s0", "s2"]
