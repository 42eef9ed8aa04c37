"""Nothing cuts a long `wait: true` call short: no request timeout below the hour."""

from __future__ import annotations

import sys

import httpx
import pytest
from cli_support import Server
from pydantic import ValidationError

from reynolds.core.models import OrchestrateRequest
from reynolds.entrypoints.http.server import server_options
from reynolds.settings import Settings


def test_the_server_sets_no_timeout_that_ends_a_request_being_answered() -> None:
    options = server_options(Settings())
    timeouts = {key for key in options if "timeout" in key}
    # Keep-alive closes idle connections between requests; graceful shutdown applies on stop.
    assert timeouts == {"timeout_keep_alive", "timeout_graceful_shutdown"}
    assert "limit_max_requests" not in options
    longest = OrchestrateRequest.model_validate({"task": {"type": "x"}, "timeoutSeconds": 3600})
    assert longest.timeout_seconds == 3600
    with pytest.raises(ValidationError):
        OrchestrateRequest.model_validate({"task": {"type": "x"}, "timeoutSeconds": 3601})


@pytest.mark.slow
def test_a_wait_call_longer_than_the_keep_alive_timeout_gets_its_answer(
    live_server: Server,
) -> None:
    keep_alive_s = server_options(Settings())["timeout_keep_alive"]
    nap = [sys.executable, "-c", f"import time; time.sleep({keep_alive_s + 1.5})"]
    task = {"type": "x", "steps": [{"name": "nap", "action": {"kind": "shell", "argv": nap}}]}
    r = httpx.post(
        f"{live_server.base_url}/mcp/tools/orchestrate_task",
        json={"arguments": {"task": task, "wait": True, "timeoutSeconds": 60}},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.json()["structuredContent"]["status"] == "succeeded"
