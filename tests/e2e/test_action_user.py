"""REYNOLDS_ACTION_USER: shell and python actions run as another user, who can read neither
the token file, the store nor the server's environment; without it they run as the server's
user. Switching users needs root, as CI runs: elsewhere these tests skip."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import Server, free_port, output

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "action-user-token-2e8f51"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REFUSAL_TIMEOUT_S = 30.0
CALLABLES = ["os:getuid", "os:open", "linecache:getlines"]


def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("running actions as another user needs root (or CAP_SETUID and CAP_SETGID)")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no user named nobody")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may enter (pytest's own temporary directories are private)."""
    root = Path(tempfile.mkdtemp(prefix="reynolds-action-user-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(shared: Path) -> Iterator[Server]:
    """A server's home (not created yet), a workspace anyone may read, the shipped pools with
    a few callables declared, and the token in a secrets folder left readable by all."""
    workdir = shared / "work"
    workdir.mkdir(mode=0o755)
    config = shared / "config"
    config.mkdir(mode=0o755)
    pools = (ROOT / "config" / "agents.yaml").read_text()
    declared = f"    callables: {json.dumps(CALLABLES)}"
    (config / "agents.yaml").write_text(pools.replace("    callables: []", declared))
    secrets = shared / "secrets"
    secrets.mkdir(mode=0o755)
    (secrets / "api_token.txt").write_text(TOKEN)
    (secrets / "api_token.txt").chmod(0o644)
    server = Server(home=shared / "home", port=free_port(), workdir=workdir)
    yield server
    server.run("stop", env=settings(shared))


def settings(shared: Path, **env: str) -> dict[str, str]:
    return {
        "REYNOLDS_CONFIG_DIR": str(shared / "config"),
        "REYNOLDS_SECRETS_DIR": str(shared / "secrets"),
        **env,
    }


def start(server: Server, env: dict[str, str]) -> int:
    started = server.run("start", env=env)
    assert started.returncode == 0, output(started)
    return int((server.home / "reynolds.pid").read_text())


def orchestrate(server: Server, steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        answer = http.post(
            "/mcp/tools/orchestrate_task",
            headers=AUTH,
            json={"arguments": {"task": {"type": "peek", "steps": steps}, "wait": True}},
        )
    assert answer.status_code == 200, answer.text
    subtasks = answer.json()["structuredContent"]["subtasks"]
    return {s["step"]: s for s in subtasks}


def shell(name: str, *argv: str) -> dict[str, Any]:
    return {"name": name, "action": {"kind": "shell", "argv": list(argv)}}


def python(name: str, function: str, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "action": {"kind": "python", "callable": function, "kwargs": kwargs}}


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_actions_run_as_the_action_user_and_cannot_read_the_token_the_store_or_the_environ(
    server: Server, shared: Path
) -> None:
    user = nobody()
    pid = start(server, settings(shared, REYNOLDS_ACTION_USER="nobody"))
    token_file = str(shared / "secrets" / "api_token.txt")
    store = str(server.home / "reynolds.db")
    environ = f"/proc/{pid}/environ"
    ran = orchestrate(
        server,
        [
            shell("uid", "id", "-u"),
            shell("home", "printenv", "HOME"),
            shell("token", "cat", token_file),
            shell("store", "cat", store),
            shell("environ", "cat", environ),
            python("py-uid", "os:getuid"),
            python("py-token", "os:open", path=token_file, flags=os.O_RDONLY),
            python("py-store", "os:open", path=store, flags=os.O_RDONLY),
            python("py-environ", "os:open", path=environ, flags=os.O_RDONLY),
        ],
    )
    assert ran["uid"]["status"] == "succeeded" and ran["uid"]["output"] == f"{user.pw_uid}\n"
    assert ran["home"]["output"] == f"{user.pw_dir}\n"
    assert ran["py-uid"]["status"] == "succeeded"
    assert json.loads(ran["py-uid"]["output"]) == user.pw_uid
    for step in ("token", "store", "environ"):
        assert ran[step]["status"] == "failed", ran[step]
        assert "Permission denied" in ran[step]["error"], ran[step]
        assert ran[f"py-{step}"]["status"] == "failed", ran[f"py-{step}"]
        assert "PermissionError" in ran[f"py-{step}"]["error"], ran[f"py-{step}"]
    assert TOKEN not in json.dumps(ran)
    assert private(server.home) and private(shared / "secrets")


def test_without_an_action_user_actions_run_as_the_servers_user(
    server: Server, shared: Path
) -> None:
    start(server, settings(shared))
    ran = orchestrate(server, [shell("uid", "id", "-u"), python("py-uid", "os:getuid")])

    assert ran["uid"]["output"] == f"{os.geteuid()}\n"
    assert json.loads(ran["py-uid"]["output"]) == os.geteuid()


def serve_refusal(
    server: Server, env: dict[str, str], prefix: list[str] | None = None
) -> tuple[int, str]:
    """`reynolds serve`'s exit code and output, for a server that must refuse to start."""
    proc = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "reynolds", "serve"],
        env={**server.env, **env},
        cwd=server.workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said, _ = proc.communicate(timeout=REFUSAL_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, said


def test_a_server_that_cannot_switch_users_refuses_to_start_in_one_line(
    server: Server, shared: Path
) -> None:
    nobody()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to start a server without CAP_SETUID")
    # Root still, but without the capabilities that switching users takes.
    without = [setpriv, "--bounding-set=-setuid,-setgid", "--"]
    code, said = serve_refusal(server, settings(shared, REYNOLDS_ACTION_USER="nobody"), without)

    assert code == 1, said
    assert "REYNOLDS_ACTION_USER" in said and "CAP_SETUID" in said
    assert len(said.strip().splitlines()) == 1, said


@pytest.mark.parametrize("value", ["no-such-user-4f1c", "nobody:no-such-group-4f1c", ":65534"])
def test_an_action_user_that_does_not_exist_is_refused_in_one_line(
    value: str, server: Server, shared: Path
) -> None:
    code, said = serve_refusal(server, settings(shared, REYNOLDS_ACTION_USER=value))

    assert code == 1, said
    assert "REYNOLDS_ACTION_USER" in said
    assert len(said.strip().splitlines()) == 1, said


def test_a_python_action_of_another_user_cannot_read_the_servers_log_through_its_descriptors(
    server: Server, shared: Path
) -> None:
    nobody()
    start(server, settings(shared, REYNOLDS_ACTION_USER="nobody"))
    log = server.home / "logs" / "server.out"  # what the server prints: its stdout and stderr
    ran = orchestrate(
        server,
        [
            python("log", "os:open", path=str(log), flags=os.O_RDONLY),
            python("stdout", "linecache:getlines", filename="/proc/self/fd/1"),
            python("stderr", "linecache:getlines", filename="/proc/self/fd/2"),
        ],
    )

    assert "--- reynolds start at" in log.read_text()
    assert "PermissionError" in ran["log"]["error"], ran["log"]
    assert json.loads(ran["stdout"]["output"]) == [], ran["stdout"]
    assert json.loads(ran["stderr"]["output"]) == [], ran["stderr"]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_server_whose_python_path_the_action_user_may_write_refuses_to_start(
    mode: int, server: Server, shared: Path
) -> None:
    nobody()
    # The working directory is on the server's Python path (and its forkserver's): a module
    # the action user put there would run as the server's user.
    server.workdir.chmod(mode)
    code, said = serve_refusal(server, settings(shared, REYNOLDS_ACTION_USER="nobody"))

    assert code == 1, said
    assert "REYNOLDS_ACTION_USER" in said and str(server.workdir) in said
    assert len(said.strip().splitlines()) == 1, said


def test_a_server_whose_home_the_action_user_could_enter_refuses_to_start(
    server: Server, shared: Path
) -> None:
    nobody()
    # Not a Reynolds home (something else lives there): the server leaves its mode alone.
    server.home.mkdir(mode=0o755)
    server.home.chmod(0o755)
    (server.home / "notes").mkdir()
    code, said = serve_refusal(server, settings(shared, REYNOLDS_ACTION_USER="nobody"))

    assert code == 1, said
    assert "REYNOLDS_ACTION_USER" in said and str(server.home) in said
    assert len(said.strip().splitlines()) == 1, said
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o755
