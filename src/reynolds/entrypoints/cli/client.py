"""A small synchronous client of the Reynolds HTTP API, with its errors translated once.

ClientError
├── ServerUnreachable   nothing answers at the configured address
└── ApiError            the server answered with an error (status, message, fields)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from reynolds.entrypoints.rest_client import (
    ToolRefused,
    client_options,
    error_body,
    resource_path,
    segment,
    task_path,
    tool_answer,
    tool_path,
)

DEFAULT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 3.0


class ClientError(Exception):
    """Something went wrong talking to the server; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ServerUnreachable(ClientError):
    """Nothing answers at the server's address."""

    def __init__(self, base_url: str, reason: str = "") -> None:
        super().__init__(
            f"Reynolds is not running at {base_url} (start it with ./start-orchestration.sh start)"
        )
        self.base_url = base_url
        self.reason = reason


@dataclass(frozen=True)
class FieldProblem:
    """One `{field, reason}` pair of a 422 answer."""

    field: str
    reason: str


class ApiError(ClientError):
    """The server answered with an error; invalid input (422) exits 2, the rest 1."""

    def __init__(
        self, status_code: int, message: str, fields: list[FieldProblem] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields or []
        self.exit_code = 2 if status_code == 422 else 1


@dataclass
class Health:
    """What `GET /health` said: its HTTP status and body (a 503 is an answer, not an error)."""

    status_code: int
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status_code == 200 and self.body.get("status") == "healthy"


def api_error_from(response: httpx.Response) -> ApiError:
    """The `{error, errors: [{field, reason}]}` body of an error answer, or its text."""
    body = error_body(response)
    message = str(body.get("error") or body.get("detail") or f"HTTP {response.status_code}")
    problems = [
        FieldProblem(str(item.get("field", "?")), str(item.get("reason", "invalid")))
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    return ApiError(response.status_code, message, problems)


class ReynoldsClient:
    """The server's REST routes and MCP tools as methods returning decoded JSON."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self._http = httpx.Client(**client_options(base_url, token, timeout), transport=transport)

    def __enter__(self) -> ReynoldsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise ServerUnreachable(self.base_url, str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(0, f"the server at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.base_url, str(exc)) from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise api_error_from(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, f"{path} answered with non-JSON") from exc

    def health(self) -> Health:
        response = self._send("GET", "/health")
        try:
            body = response.json()
        except ValueError:
            body = {}
        return Health(response.status_code, body if isinstance(body, dict) else {})

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/status")
        return result

    def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """POST /mcp/tools/{name}; the tool's structured result, or ApiError if it failed."""
        body = self._json("POST", tool_path(name), json={"arguments": arguments})
        try:
            return tool_answer(name, body).structured
        except ToolRefused as exc:
            raise ApiError(200, exc.message) from None

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/experiments/{segment(experiment_id)}")
        return result

    def cancel_experiment(self, experiment_id: str) -> dict[str, Any]:
        path = f"/experiments/{segment(experiment_id)}/cancel"
        result: dict[str, Any] = self._json("POST", path, json={})
        return result

    def resource(self, name: str) -> Any:
        """GET /mcp/resources/{name}: the JSON resource `reynolds://{name}`, decoded."""
        return self._json("GET", resource_path(name))

    def list_tasks(self, status: str | None = None, limit: int | None = None) -> list[Any]:
        params: dict[str, str | int] = {}
        if status:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        body = self._json("GET", "/tasks", params=params)
        tasks = body.get("tasks", []) if isinstance(body, dict) else body
        return list(tasks)

    def task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", task_path(task_id))
        return result

    def cancel(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", task_path(task_id, "/cancel"), json={})
        return result

    def audit(
        self,
        task_id: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """GET /audit: one page of records (of a task, since a time), oldest first, and the
        cursor of the page before it (None: nothing older)."""
        params: dict[str, str | int] = {}
        if task_id:
            params["taskId"] = task_id
        if since:
            params["since"] = since
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        body = self._json("GET", "/audit", params=params)
        if not isinstance(body, dict):
            return [], None
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        following = body.get("nextCursor")
        return records, following if isinstance(following, str) else None
