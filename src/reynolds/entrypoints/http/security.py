"""HTTP edge protection: body size limit and bearer tokens."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reynolds.settings import Settings

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """413 for bodies over the limit, before anything parses them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(send, self.limit)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": f"request body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
            if sep and name and token and not line.lstrip().startswith("#"):
                out[token.strip()] = name.strip()
    return out


def token_name(tokens: dict[str, str], header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    given = header[7:].strip().encode()
    found = None
    for token, name in tokens.items():
        # Compare against every token, in constant time each, so timing reveals nothing.
        if hmac.compare_digest(given, token.encode()):
            found = name
    return found
