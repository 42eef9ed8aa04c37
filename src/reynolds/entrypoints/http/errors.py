"""The last word on errors: whatever escapes a route becomes JSON `{"error": "internal error"}`
(500), logged here with its traceback and never shown to the client.

Starlette gives an exception handler for `Exception` to its ServerErrorMiddleware, which sends
the answer and then raises the exception again, to the server, which closes the connection.
`ErrorsAsJson` answers instead and lets nothing through, so the connection stays open; a stream
that fails after it started is ended cleanly (its last chunk sent), which is all HTTP allows.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("reynolds.http")

INTERNAL_ERROR = {"error": "internal error"}


def _log(scope: Scope, exc: BaseException) -> None:
    log.error(
        "%s %s failed", scope.get("method"), scope.get("path"), exc_info=(type(exc), exc, None)
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for `Exception`, should anything get past ErrorsAsJson."""
    _log(request.scope, exc)
    return JSONResponse(INTERNAL_ERROR, status_code=500)


class ErrorsAsJson:
    """Answer 500 JSON for an exception that escapes the app, or end a stream it broke."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = sized = finished = False

        async def noting(message: Message) -> None:
            nonlocal started, sized, finished
            if message["type"] == "http.response.start":
                started = True
                sized = any(name == b"content-length" for name, _ in message.get("headers", []))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except Exception as exc:
            _log(scope, exc)
            if not started:
                body = json.dumps(INTERNAL_ERROR).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            elif not finished:
                if sized:
                    raise  # a body shorter than announced: only closing can say so
                await send({"type": "http.response.body", "body": b"", "more_body": False})
