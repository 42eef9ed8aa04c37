"""Structured logs: JSON lines per component, the ids of what a line is about bound from the
context it was logged in, each pool's agents in a file of their own, secrets hidden at the one
choke point every line passes, files for their owner alone."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.polling import wait_for

from reynolds.adapters import logs
from reynolds.services.log_context import LOG_CONTEXT, bind


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_pools_agents_write_their_own_file(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    setup = logs.configure(folder, "server", console=False)
    logging.getLogger("reynolds.agent.devops").info(
        "attempt ended", extra={"fields": {"taskId": "t9", "status": "failed", "exitCode": 1}}
    )
    logging.getLogger("reynolds.engine").info("server line")
    setup.close()
    (agent,) = lines(folder / "devops-agent.log")
    assert agent["event"] == "attempt ended"
    assert (agent["taskId"], agent["status"], agent["exitCode"]) == ("t9", "failed", 1)
    assert [line["event"] for line in lines(folder / "server.log")] == ["server line"]
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_context_fields_and_exceptions_reach_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    setup = logs.configure(folder, "server", console=False)
    token = LOG_CONTEXT.set({})
    try:
        log = logging.getLogger("reynolds.engine")
        log.info("before any task")
        bind(taskId="t1", subtaskId="build")
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("runner failed")
        seen: list[None] = []
        thread = threading.Thread(target=lambda: seen.append(log.info("elsewhere")))
        thread.start()
        thread.join()
    finally:
        LOG_CONTEXT.reset(token)
        setup.close()
    first, failed, elsewhere = lines(folder / "server.log")
    assert first["event"] == "before any task" and "taskId" not in first
    assert (first["level"], first["logger"]) == ("info", "reynolds.engine")
    assert first["timestamp"].endswith("Z")
    assert (failed["taskId"], failed["subtaskId"], failed["level"]) == ("t1", "build", "error")
    assert "ValueError: bad input" in failed["exception"]
    assert "taskId" not in elsewhere  # another thread has its own context


def test_secrets_are_hidden_in_every_line_and_ids_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    setup = logs.configure(folder, "server", console=False, secrets=["s3cret-token-value"])
    log = logging.getLogger("reynolds.engine")
    task_id = "2754a4a4a9314940afb12964f57cd1c2"
    log.info("token s3cret-token-value for task %s", task_id)
    log.info("store at postgresql://reynolds:hunter2@db/reynolds")
    log.info("sent", extra={"fields": {"header": "Authorization: Bearer abc.def"}})
    logging.getLogger("reynolds.agent.code").info("called with api_key=k-123")
    setup.close()
    text = (folder / "server.log").read_text() + (folder / "code-agent.log").read_text()
    for secret in ("s3cret-token-value", "hunter2", "abc.def", "k-123"):
        assert secret not in text
    assert task_id in text


def test_a_log_is_rotated_once_it_reaches_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    folder = tmp_path / "logs"
    setup = logs.configure(folder, "server", console=False)
    for i in range(60):
        logging.getLogger("reynolds.engine").info("line %d of a log that grows", i)
    setup.close()
    kept = sorted(p.name for p in folder.iterdir())
    assert kept[:2] == ["server.log", "server.log.1"], kept
    assert all(p.stat().st_size < 2000 + 200 for p in folder.iterdir())
    events = [r["event"] for p in sorted(folder.iterdir(), reverse=True) for r in lines(p)]
    assert events[-1] == "line 59 of a log that grows"  # the newest line, in server.log


def test_lines_reach_the_files_within_a_batch_without_a_close(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    setup = logs.configure(folder, "server", console=False)
    try:
        logging.getLogger("reynolds.agent.code").info("attempt ended")
        logging.getLogger("reynolds.engine").info("server line")
        written = wait_for(
            lambda: all(
                (folder / name).is_file() and (folder / name).stat().st_size
                for name in ("code-agent.log", "server.log")
            ),
            timeout_s=5,
        )
        assert written
    finally:
        setup.close()
