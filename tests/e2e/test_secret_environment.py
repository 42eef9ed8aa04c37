"""Secrets never sit in a Reynolds process's environment, where /proc/PID/environ shows them to
every process of the same user for the process's whole life: not in the server's (started by
`reynolds start` or as `reynolds serve`), not in `reynolds mcp`'s, not in a Celery worker's,
and no action reads them there, while the server still enforces its token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from cli_support import Server, output
from sqlalchemy.engine import make_url
from tests.helpers.polling import wait_for
from tests.helpers.postgres import dedicated_database, unreachable
from tests.helpers.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "env-secret-token-5b9e0c"
PASSWORD = "env-secret-password-71d2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
FRAME_TIMEOUT_S = 90.0
# The action's parent is the process that runs it: the server, or a Celery pool process.
READ_PARENT = "import os; print(open('/proc/%d/environ' % os.getppid()).read())"


def assert_holds_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    assert b"PATH=" in data, f"{where}: not an environment: {data[:200]!r}"
    assert TOKEN.encode() not in data, f"{where} holds the token"
    assert PASSWORD.encode() not in data, f"{where} holds the database password"


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def config_declaring(root: Path, callables: list[str]) -> Path:
    """The shipped pools, with `callables` declared for every pool."""
    config = root / "config"
    config.mkdir()
    pools = (ROOT / "config" / "agents.yaml").read_text()
    declared = f"    callables: {json.dumps(callables)}"
    (config / "agents.yaml").write_text(pools.replace("    callables: []", declared))
    return config


@pytest.fixture
def database_url(require_service: Callable[[str, str], NoReturn]) -> Iterator[str]:
    """A PostgreSQL database of the test's own, its URL holding PASSWORD (the test server
    trusts local connections: what matters is where the password shows up)."""
    problem = unreachable()
    if problem:
        require_service("PostgreSQL", problem)
    with dedicated_database("reynolds_secret_env") as url:
        yield make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def start_server(server: Server, how: str, env: dict[str, str]) -> tuple[int, Any]:
    """Start the server with `reynolds start` or as `reynolds serve`; its pid and process."""
    if how == "start":
        started = server.run("start", env=env)
        assert started.returncode == 0, output(started)
        return int((server.home / "reynolds.pid").read_text()), None
    log = (server.workdir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reynolds", "serve"],
        env={**server.env, **env},
        cwd=server.workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError((server.workdir / "serve.log").read_text())
        try:
            return httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, START_TIMEOUT_S)
    return proc.pid, proc


def stop_server(server: Server, proc: Any) -> None:
    assert server.run("stop").returncode == 0
    if proc is not None:
        proc.wait(STOP_TIMEOUT_S)


def orchestrate(base_url: str, steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        assert http.get("/status").status_code == 401
        answer = http.post(
            "/mcp/tools/orchestrate_task",
            headers=AUTH,
            json={"arguments": {"task": {"type": "peek", "steps": steps}, "wait": True}},
        )
    assert answer.status_code == 200, answer.text
    assert TOKEN not in answer.text and PASSWORD not in answer.text
    subtasks = answer.json()["structuredContent"]["subtasks"]
    return {s["step"]: s for s in subtasks}


def shell(name: str, *argv: str) -> dict[str, Any]:
    return {"name": name, "action": {"kind": "shell", "argv": list(argv)}}


def python(name: str, function: str, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "action": {"kind": "python", "callable": function, "kwargs": kwargs}}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("how", ["start", "serve"])
def test_a_server_given_secrets_keeps_them_out_of_every_process_environment(
    how: str, idle_server: Server, database_url: str, tmp_path: Path
) -> None:
    config = config_declaring(tmp_path, ["os.path:expandvars", "tests.helpers.environ_callables:*"])
    env = {
        "REYNOLDS_API_TOKEN": TOKEN,
        "REYNOLDS_DATABASE_URL": database_url,
        "REYNOLDS_CONFIG_DIR": str(config),
        "PYTHONPATH": str(ROOT),
    }
    pid, proc = start_server(idle_server, how, env)
    try:
        assert_holds_no_secret(environ_of(pid), "the server's /proc environ")
        literal = "$REYNOLDS_API_TOKEN $REYNOLDS_DATABASE_URL"
        ran = orchestrate(
            idle_server.base_url,
            [
                shell("server", "cat", f"/proc/{pid}/environ"),
                shell("parent", sys.executable, "-c", READ_PARENT),
                python("expand", "os.path:expandvars", path=literal),
                python("worker", "tests.helpers.environ_callables:exec_environment"),
            ],
        )
    finally:
        stop_server(idle_server, proc)
    assert {step: s["status"] for step, s in ran.items()} == dict.fromkeys(ran, "succeeded")
    assert json.loads(ran["expand"]["output"]) == literal
    for step in ("server", "parent", "worker"):
        assert_holds_no_secret(ran[step]["output"], f"the {step} environ an action read")


def send(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def read_frame(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(FRAME_TIMEOUT_S), f"no frame within {FRAME_TIMEOUT_S} s"
    message: dict[str, Any] = json.loads(proc.stdout.readline())
    return message


@pytest.mark.slow
def test_reynolds_mcp_given_the_token_keeps_it_out_of_its_environment_and_the_servers(
    idle_server: Server, tmp_path: Path
) -> None:
    stderr = (tmp_path / "mcp.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reynolds", "mcp"],
        bufsize=0,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**idle_server.env, "REYNOLDS_API_TOKEN": TOKEN},
        cwd=idle_server.workdir,
    )
    try:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}}
        init["clientInfo"] = {"name": "secret-test", "version": "0"}
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        assert read_frame(proc)["id"] == 1
        send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "list_tasks", "arguments": {}}
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        listed = read_frame(proc)
        mcp_environ = environ_of(proc.pid)
        server_environ = environ_of(int((idle_server.home / "reynolds.pid").read_text()))
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(STOP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        stderr.close()
    assert listed["id"] == 2 and listed["result"]["isError"] is False, listed
    assert_holds_no_secret(mcp_environ, "reynolds mcp's /proc environ")
    assert_holds_no_secret(server_environ, "the /proc environ of the server it started")
    with httpx.Client(base_url=idle_server.base_url, timeout=30) as http:
        assert http.get("/status").status_code == 401
        assert http.get("/status", headers=AUTH).status_code == 200


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_celery_worker_given_the_token_keeps_it_from_its_actions(
    idle_server: Server, redis_broker: RedisServer
) -> None:
    env = {
        "REYNOLDS_BACKEND": "celery",
        "REYNOLDS_REDIS_URL": redis_broker.url,
        "REYNOLDS_API_TOKEN": TOKEN,
    }
    started = idle_server.run("start", env=env)
    assert started.returncode == 0, output(started)
    log = (idle_server.workdir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "reynolds", "agent", "--type", "devops", "--concurrency", "1"],
        env={**idle_server.env, **env},
        cwd=idle_server.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        steps = [{**shell("parent", sys.executable, "-c", READ_PARENT), "agent": "devops"}]
        # Subtasks wait for a worker to connect: the answer comes once it ran one.
        ran = orchestrate(idle_server.base_url, steps)
        worker_environ = environ_of(worker.pid)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        idle_server.run("stop")
    logs = (idle_server.workdir / "worker.log").read_text(errors="replace")
    assert ran["parent"]["status"] == "succeeded", logs
    assert_holds_no_secret(ran["parent"]["output"], "the worker process an action read")
    assert_holds_no_secret(worker_environ, "the Celery worker's /proc environ")
