"""What the REST routes answer, for the OpenAPI document.

The routes return plain dicts; these models only describe them (`responses=` on a route), so a
description that drifts from the code fails the schema fuzzing (tests/e2e/test_schemathesis.py)
instead of failing requests in production. Every model allows fields beyond those named.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from reynolds.core.models import ListTasksRequest, Status, SubtasksRequest

TaskStatus = Status


class _Open(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class FieldError(_Open):
    field: str
    reason: str


class ErrorBody(_Open):
    """Every refusal: what went wrong, and for invalid input each field with its reason."""

    error: str
    errors: list[FieldError] | None = None


class HealthReport(_Open):
    status: Literal["healthy", "unhealthy"]
    checks: dict[str, Any]
    version: str
    failing: list[str] | None = None
    error: str | None = None


class PoolView(_Open):
    type: str
    name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    busy: int
    queue_depth: int
    utilization: float


class ServerStatus(_Open):
    service: str
    version: str
    pools: list[PoolView]
    tasks: dict[str, int]
    backend: str
    store: str
    uptime_seconds: float


class ServerInfo(_Open):
    name: str
    version: str


class Capabilities(_Open):
    capabilities: dict[str, Any]
    protocol_version: str
    server_info: ServerInfo


class ToolInfo(_Open):
    name: str
    description: str
    input_schema: dict[str, Any]


class ToolCall(BaseModel):
    """The body of `POST /mcp/tools/{toolName}`; an empty body means no arguments."""

    arguments: dict[str, Any] = {}


class TextContent(_Open):
    type: Literal["text"]
    text: str


class ToolResult(_Open):
    content: list[TextContent]
    structured_content: dict[str, Any]
    is_error: bool


class SubtaskView(_Open):
    id: str
    component: str | None
    step: str | None
    agent_type: str | None
    depends_on: list[str]
    status: TaskStatus
    attempts: int
    exit_code: int | None
    output: str
    error: str
    started_at: str | None
    finished_at: str | None


class TaskResult(_Open):
    """The result of `orchestrate_task` and `get_task_status`."""

    success: bool
    task_id: str
    status: TaskStatus
    plan: dict[str, Any] | None
    subtasks: list[SubtaskView]
    results: dict[str, Any]
    metrics: dict[str, Any]
    reynolds_comment: str
    timestamp: str


class SubtaskPageView(SubtaskView):
    group: int | None
    critical: bool


class SubtaskPage(_Open):
    """`GET /tasks/{taskId}/subtasks` and the `get_task_subtasks` tool."""

    task_id: str
    total: int
    cursor: str
    subtasks: list[SubtaskPageView]
    next_cursor: str | None


class TaskSummary(_Open):
    task_id: str
    type: str
    status: TaskStatus
    created_at: str | None
    finished_at: str | None
    subtask_counts: dict[str, int]


class TaskList(_Open):
    tasks: list[TaskSummary]


class ExperimentSummary(_Open):
    experiment_id: str
    name: str
    mode: str
    status: str
    winner: str | None
    speedup: float | None
    created_at: str | None
    finished_at: str | None


class ExperimentList(_Open):
    experiments: list[ExperimentSummary]


class ExperimentReport(_Open):
    """`run_experiment`'s result, as stored (a report still running: its summary)."""

    experiment_id: str
    name: str
    status: str


_REASONS: dict[int, str] = {
    400: "The body is not valid JSON.",
    401: "Missing or invalid bearer token (when a token is configured).",
    403: "A browser Origin this server does not trust, or an action its pool may not run.",
    404: "No such task, tool or resource.",
    409: "The request conflicts with the task's state (e.g. it has already ended).",
    413: "The request body is over 1 MiB.",
    415: "The body is not `application/json`.",
    421: "The Host is not a name of this server (REYNOLDS_ALLOWED_HOSTS).",
    422: "Invalid input; `errors` names each field and the reason.",
    429: "Too many requests; `Retry-After` says how many seconds to wait.",
}
# The middleware may answer any route with these before the route runs (415 only those
# that take a body: they list it themselves).
EDGE = (401, 403, 413, 421, 429)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` references replaced by the definitions (no recursion)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


# Inline and under application/json whatever the route's own media type (HTML, Prometheus text):
# FastAPI would file a `model` under the route's media type.
_ERROR_CONTENT = {
    "application/json": {"schema": _inline(ErrorBody.model_json_schema(by_alias=True))}
}


def error_responses(*codes: int, edge: bool = True) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: an `{error}` body for each code, plus the edge's codes."""
    chosen = sorted({*codes, *(EDGE if edge else ())})
    out: dict[int | str, dict[str, Any]] = {}
    for code in chosen:
        out[code] = {"description": _REASONS[code], "content": _ERROR_CONTENT}
    if 429 in out:
        out[429]["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return out


def answers(model: object, *codes: int, edge: bool = True) -> dict[int | str, Any]:
    """`responses=` for a JSON route: 200 with `model` (a model or e.g. `list[Model]`), and the
    given error codes."""
    return {200: {"model": model}, **error_responses(*codes, edge=edge)}


TOOL_CALL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": ToolCall.model_json_schema()}},
    }
}
HTML_PAGE: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}

# `GET /tasks` validates its query with ListTasksRequest (so its errors read like the tool's);
# these only tell the document what that model accepts.
_LIMIT = ListTasksRequest.model_json_schema()["properties"]["limit"]
LIST_STATUS: dict[str, Any] = {"enum": [s.value for s in Status]}
LIST_LIMIT: dict[str, Any] = {"minimum": _LIMIT["minimum"], "maximum": _LIMIT["maximum"]}
_PAGE = SubtasksRequest.model_json_schema()["properties"]
PAGE_CURSOR: dict[str, Any] = {"pattern": _PAGE["cursor"]["pattern"]}
PAGE_LIMIT: dict[str, Any] = {"minimum": 1}
