"""Every operation of `/openapi.json`, fuzzed: no 5xx, and every answer is the documented one.

Schemathesis generates valid and invalid requests from the app's OpenAPI document and sends them,
with the bearer token, to a server on 127.0.0.1 that the module starts in a thread. Its pools may
run no action kind at all, so fuzzed tasks are accepted and planned but nothing executes.

`POST /mcp/tools/{tool_name}` takes `{"arguments": {...}}` whatever the tool, so the document
cannot say more; to reach the task models, each tool is also fuzzed as an operation of its own
whose arguments follow the tool's input schema (the one `GET /mcp/tools` publishes).
"""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reynolds.entrypoints.http import create_app
from reynolds.services.tools import TOOLS
from reynolds.settings import Settings

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "agents.yaml"
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 30.0
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# These answer with streams that stay open as long as the client listens, so every fuzzed call
# would last until its timeout; tests/e2e/test_http_api.py covers the task stream, and the MCP
# tests cover /mcp.
STREAMS = r"^/mcp/events$|^/tasks/\{[^}]+\}/events$|^/mcp/?$"


def fuzz_settings(root: Path) -> Settings:
    """A server under `root` with the token set and pools that deny every action kind."""
    return Settings(
        home=root / "home",
        secrets_dir=root / "secrets",
        config_dir=root / "config",
        api_token=TOKEN,
        personality="off",
        # Hermetic whatever REYNOLDS_* the environment sets: SQLite in `home`, local pools.
        database_url=None,
        redis_url=None,
        backend="local",
        # The fuzzer sends hundreds of requests a second with one token; with the limiter on,
        # most would be 429s and the routes behind it would hardly be reached.
        rate_limit_per_s=0,
        # The server listens on a port the system picks; any port of 127.0.0.1 is its own.
        allowed_hosts="127.0.0.1",
    )


def write_deny_all_pools(settings: Settings) -> None:
    """The real `config/agents.yaml`, with `actionKinds: []` in every pool."""
    data: dict[str, Any] = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    for pool in data["pools"].values():
        pool["actionKinds"] = []
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    settings.agents_file.write_text(yaml.safe_dump(data), encoding="utf-8")


def with_an_operation_per_tool(openapi: dict[str, Any]) -> dict[str, Any]:
    """The document plus `POST /mcp/tools/<name>` for each tool, its arguments typed."""
    doc = copy.deepcopy(openapi)
    generic = doc["paths"]["/mcp/tools/{tool_name}"]["post"]
    components = doc["components"]["schemas"]
    for tool in TOOLS.values():
        arguments = tool.model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
        for name, definition in arguments.pop("$defs", {}).items():
            assert components.setdefault(name, definition) == definition, name
        operation = copy.deepcopy(generic)
        del operation["parameters"]
        operation["operationId"] = f"tool_{tool.name}"
        body = {"type": "object", "properties": {"arguments": arguments}, "required": ["arguments"]}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
        doc["paths"][f"/mcp/tools/{tool.name}"] = {"post": operation}
    return doc


# The document is built without starting anything (no lifespan, no I/O), so pytest can collect
# one test per operation; the served document is checked to be the same one below.
OPENAPI: dict[str, Any] = create_app(fuzz_settings(Path("/nonexistent"))).openapi()
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261125,
        # Every feature is built: no 5xx at all (501 "not available yet" included).
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx"]}},
    }
)
schema = schemathesis.openapi.from_dict(with_an_operation_per_tool(OPENAPI), config=CONFIG)


class ThreadServer(uvicorn.Server):
    """A uvicorn server that says when it is listening, or has given up trying."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.settled = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.settled.set()

    def run_then_settle(self) -> None:
        try:
            self.run()
        finally:
            self.settled.set()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on 127.0.0.1 (a free port), in a thread, for the module."""
    settings = fuzz_settings(tmp_path_factory.mktemp("fuzz"))
    write_deny_all_pools(settings)
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
    )
    server = ThreadServer(config)
    thread = threading.Thread(target=server.run_then_settle, name="fuzzed-server", daemon=True)
    thread.start()
    assert server.settled.wait(STARTUP_TIMEOUT_S), f"no server after {STARTUP_TIMEOUT_S} s"
    assert server.started, "the server stopped during start-up (its log is above)"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_S)
        assert not thread.is_alive(), f"the server did not stop in {SHUTDOWN_TIMEOUT_S} s"


def test_the_fuzzed_document_is_the_one_the_server_serves(base_url: str) -> None:
    served = httpx.get(f"{base_url}/openapi.json", headers=AUTH, timeout=10.0)
    assert served.status_code == 200
    assert served.json() == OPENAPI


def test_requests_no_route_takes_are_refused_with_an_error_body(base_url: str) -> None:
    # Found by the fuzzer: a resource name with a newline matches no route, and the router's
    # own 404 (like its 405) used to answer `{"detail": ...}`.
    for method, path, status in [
        ("GET", "/mcp/resources/agent%0Apools", 404),
        ("GET", "/no/such/path", 404),
        ("DELETE", "/tasks", 405),
    ]:
        response = httpx.request(method, f"{base_url}{path}", headers=AUTH, timeout=10.0)
        assert response.status_code == status, (method, path)
        assert set(response.json()) == {"error"}, (method, path)


@pytest.mark.slow
@schema.exclude(path_regex=STREAMS).parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_every_operation_answers_as_documented_and_never_with_a_server_error(
    case: schemathesis.Case, base_url: str
) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS, timeout=30.0)
