"""REST access to the MCP resources: `GET /mcp/resources` and `GET /mcp/resources/{name}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from reynolds.bootstrap import Container
from reynolds.entrypoints.http.schemas import answers, error_responses
from reynolds.services import resources


class ResourceInfo(BaseModel):
    """One readable resource (or, for tasks, the URI template)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    uri: str
    name: str
    mime_type: str = Field(alias="mimeType")


# A resource is JSON, or Prometheus text for `metrics`.
_CONTENTS: dict[int | str, Any] = {
    200: {
        "description": "The resource's contents, in its own media type.",
        "content": {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


def resources_router(container: Callable[[], Container]) -> APIRouter:
    """The listing and the reader; errors go through the app's ReynoldsError handler
    (404 unknown resource or task)."""
    router = APIRouter()

    @router.get("/mcp/resources", response_model=None, responses=answers(list[ResourceInfo]))
    async def list_resources() -> list[dict[str, str]]:
        return resources.listing()

    @router.get(
        "/mcp/resources/{name:path}",
        response_class=Response,
        responses={**_CONTENTS, **error_responses(404)},
    )
    async def read_resource(name: str) -> Response:
        contents = await resources.read(container().engine, name)
        return Response(contents.text, media_type=contents.mime_type)

    return router
