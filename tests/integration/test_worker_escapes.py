"""A Celery worker's pool process kills what its shell actions started outside their
process group, at their timeout and after the pool process itself was killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.polling import wait_until
from tests.helpers.processes import carrying, is_running, kill_carrying

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
ESCAPE = 'setsid sleep 41.5 & echo $! > "$1"; echo started; sleep 41.5'
# Well under the escaped process's 41.5 s, well over the job's timeout.
PROMPT_S = 20.0


@pytest.fixture
def mark() -> Iterator[str]:
    """An environment entry that only this test's action processes carry."""
    entry = f"REYNOLDS_TEST_MARK={uuid.uuid4().hex}"
    yield entry
    kill_carrying(entry)


def escaping_action(mark: str, pidfile: Path) -> str:
    name, _, value = mark.partition("=")
    argv = ["sh", "-c", ESCAPE, "sh", str(pidfile)]
    return json.dumps({"kind": "shell", "argv": argv, "env": {name: value}})


def agent(*args: str) -> list[str]:
    return [PY, "-m", "tests.helpers.worker_agent", *args]


def agent_env(home: Path) -> dict[str, str]:
    return {**os.environ, "REYNOLDS_HOME": str(home)}


def test_a_workers_timeout_kills_what_its_action_started_outside_its_group(
    mark: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaped.pid"
    done = subprocess.run(
        agent("run", escaping_action(mark, pidfile), "3"),
        env=agent_env(tmp_path / "home"),
        cwd=ROOT,
        capture_output=True,
        timeout=PROMPT_S,
        check=True,
    )
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert (result["reason"], result["output"].strip()) == ("timeout", "started")
    assert not is_running(int(pidfile.read_text()))
    assert not carrying(mark)


def test_a_new_pool_process_kills_what_a_killed_one_left_running(mark: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "escaped.pid"
    env = agent_env(tmp_path / "home")
    first = subprocess.Popen(
        agent("run", escaping_action(mark, pidfile), "300"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30)
    finally:
        first.kill()
        first.wait(10)
    left = carrying(mark)
    assert int(pidfile.read_text()) in left, "the escaped process should outlive its owner"

    subprocess.run(agent("start"), env=env, cwd=ROOT, timeout=60, check=True)

    assert wait_until(lambda: not carrying(mark), 5), carrying(mark)
