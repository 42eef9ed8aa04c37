"""HTTP edge protection: body size limit, bearer tokens, rate limits and request timing.

Each is a pure ASGI middleware: cheaper per request than `@app.middleware("http")`, and it
leaves streaming responses (server-sent events, MCP) and their cancellation alone.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reynolds.core.ratelimit import TokenBuckets, retry_after_s
from reynolds.entrypoints.http import sessions
from reynolds.settings import Settings

MAX_BODY_BYTES = 1024 * 1024
# Exempt from tokens and rate limits, so that probes and load balancers need no secret.
OPEN_PATHS = frozenset({"/health"})
_OPEN_METHODS = frozenset({"GET", "HEAD"})
# Reached without a token (still rate-limited): the dashboard's page answers a login form to a
# browser without a session, the login form's POST checks the token itself, and logging out
# only deletes the browser's own cookie.
LOGIN_ROUTES = frozenset({("GET", "/"), ("HEAD", "/"), ("POST", "/login"), ("POST", "/logout")})
_REALM = 'Bearer realm="reynolds"'


class BodyLimit:
    """413 for bodies over the limit, before anything parses them: `limit` for a caller
    without a token, `trusted_limit` (REYNOLDS_MAX_BODY_BYTES) for one whose token ApiGuard
    accepted, and for everyone when no token is configured (`everyone_trusted`)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        trusted_limit: int | None = None,
        everyone_trusted: bool = False,
    ) -> None:
        self.app = app
        self.limit = limit
        self.trusted_limit = limit if trusted_limit is None else trusted_limit
        self.everyone_trusted = everyone_trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trusted = self.everyone_trusted or "token_name" in scope.get("state", {})
        limit = self.trusted_limit if trusted else self.limit
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send, limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    await send_json(send, 413, {"error": f"request body is larger than {limit} bytes"})


async def send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> None:
    """A whole JSON response, straight to the ASGI server."""
    raw = [(b"content-type", b"application/json")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def load_tokens(settings: Settings) -> dict[str, str]:
    """token → name, from REYNOLDS_API_TOKEN / secrets/api_token.txt / secrets/api_tokens.txt."""
    out: dict[str, str] = {}
    single = settings.token()
    if single:
        out[single] = "default"
    named = settings.secrets_dir / "api_tokens.txt"
    if named.is_file():
        for line in named.read_text(encoding="utf-8").splitlines():
            name, sep, token = line.strip().partition(":")
            if sep and name and token.strip() and not line.lstrip().startswith("#"):
                out[token.strip()] = name.strip()
    return out


def token_name(tokens: Mapping[str, str], header: str | None) -> str | None:
    """The name of the token an `Authorization: Bearer …` header carries, or None."""
    if not header or header[:7].lower() != "bearer ":
        return None
    given = header[7:].strip().encode()
    found = None
    for token, name in tokens.items():
        # Compare against every token, in constant time each, so timing reveals nothing.
        if hmac.compare_digest(given, token.encode()):
            found = name
    return found


def caller(scope: Scope) -> str | None:
    """The token name ApiGuard recorded for this request (None without tokens)."""
    state = scope.get("state")
    return state.get("token_name") if isinstance(state, dict) else None


def make_limiter(settings: Settings) -> TokenBuckets | None:
    """The configured buckets, or None when rate limiting is off (either setting 0)."""
    if settings.rate_limit_per_s <= 0 or settings.rate_limit_burst <= 0:
        return None
    return TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)


class ApiGuard:
    """Bearer tokens (when any are configured) and per-caller rate limits on every request
    but `GET /health`: 401 or 429 as JSON `{error}`. On the dashboard's `GET` requests its
    session cookie stands for the token (sessions.py). The token's name goes on the request's
    state as `token_name`; the token itself goes nowhere."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Mapping[str, str],
        limiter: TokenBuckets | None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.tokens = dict(tokens)
        self.limiter = limiter
        self.clock = clock
        self.wall_clock = wall_clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (
            scope["path"] in OPEN_PATHS and scope.get("method") in _OPEN_METHODS
        ):
            await self.app(scope, receive, send)
            return
        name = None
        header = None
        if self.tokens:
            header = _header(scope, b"authorization")
            name = token_name(self.tokens, header)
            if header is None and sessions.cookie_allowed(scope.get("method"), scope["path"]):
                value = sessions.cookie_value(_header(scope, b"cookie"), sessions.SESSION_COOKIE)
                name = sessions.session_name(self.tokens, value, self.wall_clock())
        if self.limiter is not None:
            # Failed attempts count against the address, so guessing tokens is throttled too.
            key = ("token", name) if name is not None else ("addr", _client_host(scope))
            wait_s = self.limiter.take(key, self.clock())
            if wait_s > 0:
                await self._refuse(scope, send, 429, _limited(self.limiter), retry_after_s(wait_s))
                return
        if (
            self.tokens
            and name is None
            and (scope.get("method"), scope["path"]) not in LOGIN_ROUTES
        ):
            await self._refuse(scope, send, 401, "missing or invalid bearer token", None, header)
            return
        if name is not None:
            scope.setdefault("state", {})["token_name"] = name
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        error: str,
        retry_after: int | None,
        header: str | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = _REALM + (', error="invalid_token"' if header else "")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        await send_json(send, status, {"error": error}, headers)


def _limited(limiter: TokenBuckets) -> str:
    return (
        f"rate limit exceeded: {limiter.rate_per_s:g} requests per second "
        f"(bursts of {limiter.burst:g}); retry later"
    )


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


def _client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


Observe = Callable[[str, str, int, float], None]


class RequestTiming:
    """Calls `observe(method, route path, status, seconds)` when each request ends."""

    def __init__(self, app: ASGIApp, observe: Observe) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router puts the matched route on the scope, so the label is its template.
            path = getattr(scope.get("route"), "path", "unmatched")
            self.observe(scope["method"], path, status, time.perf_counter() - started)
