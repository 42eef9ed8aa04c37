"""The web dashboard: `GET /`, its assets at `GET /dashboard/{asset}`, and `POST /login` and
`POST /logout` for the session cookie that stands for the token on its reads (sessions.py).

The page and its scripts ship in `static/` and fetch nothing from elsewhere. With a token set,
`GET /` without a session answers only the login form: no task, pool or number is in it.
"""

from __future__ import annotations

import hmac
import html
import time
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from reynolds.entrypoints.http import sessions
from reynolds.entrypoints.http.cross_site import FORM
from reynolds.entrypoints.http.schemas import HTML_PAGE, answers, error_responses
from reynolds.entrypoints.http.security import caller

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "draw.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_SECURITY = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not `no-referrer`: with it a browser sends `Origin: null` on the login form's POST.
    "Referrer-Policy": "same-origin",
}
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# The login page runs no script at all; its style is inline.
_LOGIN_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_FORM_FIELDS = 8
_LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM: {
                "schema": {
                    "type": "object",
                    "properties": {"token": {"type": "string"}, "csrf": {"type": "string"}},
                    "required": ["token", "csrf"],
                }
            }
        },
    }
}
_LOGIN_ANSWERS: dict[int | str, Any] = {
    303: {"description": "Logged in: the session cookie is set; back to `/`."},
    **error_responses(415),
    401: {
        "description": "A wrong token: the login form again, saying so.",
        "content": {**HTML_PAGE["content"], **error_responses(401)[401]["content"]},
    },
}


class LoggedOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    loggedOut: bool


@cache
def _static(name: str) -> str:
    folder = resources.files("reynolds.entrypoints.http") / "static"
    return (folder / name).read_text(encoding="utf-8")


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _page(auth: str) -> HTMLResponse:
    body = _static("index.html").replace("{{auth}}", auth)
    headers = {**_SECURITY, "Content-Security-Policy": _PAGE_POLICY}
    return HTMLResponse(body, headers=headers)


def _login_page(request: Request, error: str | None, status: int = 200) -> HTMLResponse:
    csrf = sessions.new_csrf()
    notice = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = _static("login.html").replace("{{csrf}}", csrf).replace("{{error}}", notice)
    headers = {**_SECURITY, "Content-Security-Policy": _LOGIN_POLICY}
    response = HTMLResponse(body, status_code=status, headers=headers)
    cookie = sessions.set_cookie(sessions.CSRF_COOKIE, csrf, sessions.CSRF_S, _https(request))
    response.headers.append("set-cookie", cookie)
    return response


def _form(raw: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=_FORM_FIELDS)
    except ValueError:
        return {}
    return {name: values[0] for name, values in fields.items() if values}


def dashboard_router(
    tokens: Mapping[str, str], wall_clock: Callable[[], float] = time.time
) -> APIRouter:
    """The page, its assets, logging in and out; `tokens` as ApiGuard has them."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, responses={200: HTML_PAGE, **error_responses()})
    async def dashboard(request: Request) -> HTMLResponse:
        if tokens and caller(request.scope) is None:
            return _login_page(request, None)
        return _page("session" if tokens else "none")

    @router.get(
        "/dashboard/{asset}",
        response_class=Response,
        responses={
            200: {"content": {"text/javascript": {}, "text/css": {}}},
            **error_responses(404),
        },
    )
    async def dashboard_asset(asset: str) -> Response:
        media = ASSETS.get(asset)
        if media is None:
            return JSONResponse({"error": f"no dashboard asset {asset!r}"}, status_code=404)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return Response(_static(asset), media_type=media, headers=headers)

    @router.post(
        "/login",
        response_class=HTMLResponse,
        responses=_LOGIN_ANSWERS,
        openapi_extra=_LOGIN_BODY,
        summary="The dashboard's login form (form-encoded; Origin and CSRF token checked)",
    )
    async def login(request: Request) -> Response:
        if not tokens:
            return RedirectResponse("/", status_code=303)
        form = _form(await request.body())
        given = form.get("csrf", "")
        expected = sessions.cookie_value(request.headers.get("cookie"), sessions.CSRF_COOKIE)
        if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            error = "the login form's CSRF token is missing or wrong: load the page again"
            return JSONResponse({"error": error}, status_code=403)
        token = sessions.matching_token(tokens, form.get("token", ""))
        if token is None:
            return _login_page(request, "That token is not valid.", status=401)
        response = RedirectResponse("/", status_code=303)
        session = sessions.make_session(token, wall_clock())
        for cookie in (
            sessions.set_cookie(
                sessions.SESSION_COOKIE, session, sessions.SESSION_S, _https(request)
            ),
            sessions.set_cookie(sessions.CSRF_COOKIE, "", 0, _https(request)),
        ):
            response.headers.append("set-cookie", cookie)
        return response

    @router.post("/logout", response_model=None, responses=answers(LoggedOut, 415))
    async def logout(request: Request) -> JSONResponse:
        response = JSONResponse({"loggedOut": True})
        cookie = sessions.set_cookie(sessions.SESSION_COOKIE, "", 0, _https(request))
        response.headers.append("set-cookie", cookie)
        return response

    return router
