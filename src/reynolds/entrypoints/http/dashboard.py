"""`GET /`: the web dashboard (not built yet)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from reynolds.entrypoints.http.schemas import HTML_PAGE, error_responses

router = APIRouter()


@router.get(
    "/",
    response_class=HTMLResponse,
    responses={
        200: HTML_PAGE,
        501: {**HTML_PAGE, "description": "Not available yet."},
        **error_responses(),
    },
)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Reynolds</title><h1>Reynolds</h1>"
        "<p>The web dashboard: not available yet. The API is at <a href='/docs'>/docs</a>, "
        "tasks at <a href='/tasks'>/tasks</a>.</p>",
        status_code=501,
    )
