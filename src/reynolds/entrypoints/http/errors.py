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

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reynolds.core.models import format_validation_errors
from reynolds.errors import ReynoldsError

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


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal in the API's `{error, ...}` shape, with its status code."""

    @app.exception_handler(ReynoldsError)
    async def reynolds_error(request: Request, exc: ReynoldsError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = format_validation_errors(list(exc.errors()))
        return JSONResponse({"error": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Routing's own answers (no such path, method not allowed) in the API's `{error}` shape.
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    # Anything else is a bug: 500 `{error}` (and ErrorsAsJson, outermost, for what escapes).
    app.add_exception_handler(Exception, internal_error)
