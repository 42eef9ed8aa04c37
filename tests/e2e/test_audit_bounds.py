"""What the audit costs stays bounded whatever a request holds: the server keeps answering
while a huge argv is recorded."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reynolds.entrypoints.http import create_app
from reynolds.settings import Settings

TOKEN = "audit-bounds-token-71c2"
CALL_TIMEOUT_S = 120.0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        secrets_dir=tmp_path / "secrets",
        api_token=TOKEN,
        rate_limit_per_s=0,
        personality="off",
    )
    with TestClient(
        create_app(settings),
        base_url=settings.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def orchestrate(client: TestClient, task: dict[str, Any]) -> dict[str, Any]:
    r = client.post(
        "/mcp/tools/orchestrate_task",
        json={"arguments": {"task": task, "wait": True, "timeoutSeconds": CALL_TIMEOUT_S}},
    )
    assert r.status_code == 200, r.text[:500]
    result: dict[str, Any] = r.json()["structuredContent"]
    return result


def health_latency_s(client: TestClient) -> float:
    started = time.perf_counter()
    r = client.get("/health")
    took = time.perf_counter() - started
    assert r.status_code == 200
    return took


def test_the_server_answers_health_checks_while_a_huge_argv_is_recorded(
    client: TestClient,
) -> None:
    idle_s = statistics.median(health_latency_s(client) for _ in range(5))
    argv = ["true", "x" * 65536, "a://" + "y" * 65532]
    task = {"type": "x", "steps": [{"name": "long", "action": {"kind": "shell", "argv": argv}}]}

    latencies: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(orchestrate, client, task)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not call.done() and time.monotonic() < deadline:
            latencies.append(health_latency_s(client))
        result = call.result(timeout=max(0.0, deadline - time.monotonic()))
    latencies.append(health_latency_s(client))  # the audit may be written after the answer

    assert result["status"] == "succeeded"
    # Loose: the stall this guards against lasted seconds; a busy machine adds milliseconds.
    assert max(latencies) < 1.0 + 20 * idle_s, (idle_s, max(latencies), len(latencies))
