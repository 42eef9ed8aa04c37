"""A client that loses its MCP stream reconnects with Last-Event-ID and gets what it missed,
with the events kept in process (the default) or in Redis (REYNOLDS_REDIS_URL), and no other
session can replay them. Raw HTTP, so the test decides exactly when the connection drops."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cli_support import Server, make_server
from mcp_support import NAP, TOKEN, auth, start
from tests.helpers.polling import wait_for
from tests.helpers.redis_keys import delete_redis_keys

PROTOCOL = "2025-11-25"  # the first revision with priming events, which make resuming possible
TIMEOUT = httpx.Timeout(30.0)
# The session scopes in the event ids this module saw: the Redis keys to delete afterwards.
SCOPES_SEEN: set[str] = set()


@pytest.fixture(scope="module", params=["memory", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp(f"mcp-resume-{request.param}"))
    env = {"REYNOLDS_API_TOKEN": TOKEN}
    if request.param == "redis":
        env["REYNOLDS_REDIS_URL"] = request.getfixturevalue("redis_url")
    start(server, **env)
    yield server
    server.run("stop")
    if request.param == "redis":
        # The server's keys live under its own prefix; the scopes in them are this run's.
        for scope in SCOPES_SEEN:
            delete_redis_keys(env["REYNOLDS_REDIS_URL"], f"reynolds:mcp:events:{scope}:")


class Session:
    """One MCP session over raw HTTP."""

    def __init__(self, server: Server) -> None:
        self.url = f"{server.base_url}/mcp"
        self.id: str | None = None
        self.headers = {
            **auth(),
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        }
        response = self.post(_request(0, "initialize", _initialize_params()))
        self.id = response.headers["mcp-session-id"]
        notified = httpx.post(
            self.url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=self._headers(),
            timeout=TIMEOUT,
        )
        assert notified.status_code == 202, notified.text

    def _headers(self, **extra: str) -> dict[str, str]:
        session = {"Mcp-Session-Id": self.id} if self.id else {}
        return {**self.headers, **session, **extra}

    def post(self, body: dict[str, Any]) -> httpx.Response:
        response = httpx.post(self.url, json=body, headers=self._headers(), timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        SCOPES_SEEN.update(
            line.removeprefix("id:").strip().split(".")[0]
            for line in response.text.splitlines()
            if line.startswith("id:")
        )
        return response

    def events(self, method: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        """A streaming request, for `with`: its response's SSE events, as they arrive."""
        return httpx.stream(
            method, self.url, json=body, headers=self._headers(**headers), timeout=TIMEOUT
        )

    def close(self) -> None:
        httpx.delete(self.url, headers=self._headers(), timeout=TIMEOUT)


def sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Server-sent events of `response` as {id?, event?, data}, priming events included."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                if "id" in event:
                    SCOPES_SEEN.add(event["id"].split(".")[0])
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        event[name] = event.get(name, "") + value.removeprefix(" ")


def messages(events: Iterator[dict[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event id, JSON-RPC message) of each event that carries one."""
    for event in events:
        if event.get("data"):
            yield event["id"], json.loads(event["data"])


def _request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _initialize_params() -> dict[str, Any]:
    return {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "resume-test", "version": "0"},
    }


def _orchestrate(description: str) -> dict[str, Any]:
    """orchestrate_task, waiting, over three 0.2 s naps one at a time: progress 0, 1, 2, 3."""
    task = {
        "type": "resume",
        "description": description,
        "components": ["a", "b", "c"],
        "steps": [{"name": "nap", "action": {"kind": "shell", "argv": NAP}}],
    }
    arguments = {"task": task, "strategy": {"maxConcurrency": 1}, "wait": True}
    return _request(
        7,
        "tools/call",
        {"name": "orchestrate_task", "arguments": arguments, "_meta": {"progressToken": "p"}},
    )


def _finished(server: Server, description: str) -> bool:
    tasks = httpx.get(f"{server.base_url}/tasks", headers=auth(), timeout=TIMEOUT).json()
    return any(
        t["description"] == description and t["status"] == "succeeded" for t in tasks["tasks"]
    )


def _progress(message: dict[str, Any]) -> float | None:
    if message.get("method") == "notifications/progress":
        value: float = message["params"]["progress"]
        return value
    return None


def test_a_dropped_tool_call_stream_resumes_with_every_event_it_missed(server: Server) -> None:
    session = Session(server)
    description = f"resume {uuid.uuid4().hex}"
    try:
        with session.events("POST", _orchestrate(description)) as response:
            assert response.status_code == 200
            for event_id, message in messages(sse(response)):
                if _progress(message) is not None:
                    last_id, before = event_id, [_progress(message)]
                    break
        # The connection is gone; the task runs to its end meanwhile.
        wait_for(lambda: _finished(server, description), timeout_s=60, interval_s=0.1)

        after: list[float | None] = []
        ids: list[str] = []
        with session.events("GET", **{"Last-Event-ID": last_id}) as resumed:
            assert resumed.status_code == 200
            for event_id, message in messages(sse(resumed)):
                ids.append(event_id)
                if message.get("id") == 7:
                    result = message["result"]
                    break
                after.append(_progress(message))
    finally:
        session.close()

    assert before == [0]
    assert after == [1, 2, 3]  # each missed event once, in order
    assert last_id not in ids and len(set(ids)) == len(ids)
    assert result["structuredContent"]["status"] == "succeeded"


def test_another_session_cannot_replay_a_sessions_events(server: Server) -> None:
    alice, bob = Session(server), Session(server)
    try:
        listed = alice.events("POST", _request(1, "tools/list", {}))
        with listed as response:
            alices_ids = [event_id for event_id, _ in messages(sse(response))]
        assert alices_ids
        # Bob sends Alice's event id (the same request id "1" exists in both sessions).
        bob.post(_request(1, "tools/list", {}))
        with bob.events("GET", **{"Last-Event-ID": alices_ids[0]}) as replayed:
            assert replayed.status_code == 200
            assert list(messages(sse(replayed))) == []
    finally:
        alice.close()
        bob.close()
