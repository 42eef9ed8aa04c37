"""Actions that try to outlive or outgrow themselves, run end to end through a real server
(tests/integration/test_action_escapes.py and test_shell_runner.py drive the runner or the
engine in process): each is stopped with nothing of it left running, the server unharmed, and
the ledger holds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_rig import Rig
from tests.helpers.faults import PY, read_pid, tagged_actions, vm_rss_kib
from tests.helpers.polling import wait_for
from tests.helpers.processes import DAEMON, carrying, is_running, kill_carrying

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

# Ignores SIGTERM, as does a child it puts in a session of its own; $1 gets both pids.
STUBBORN = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'\n"
    "child = subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
    "with open(sys.argv[1] + '.partial', 'w') as fh:\n"
    "    fh.write(f'{os.getpid()} {child.pid}')\n"
    "os.rename(sys.argv[1] + '.partial', sys.argv[1])\n"
    "print('ignoring SIGTERM', flush=True)\n"
    "time.sleep(60)\n"
)
OUTPUT_BYTES = 200 * 2**20
FLOOD = (
    "import sys\n"
    "chunk = b'x' * (1 << 20)\n"
    f"for _ in range({OUTPUT_BYTES >> 20}):\n"
    "    sys.stdout.buffer.write(chunk)\n"
    "sys.stdout.buffer.flush()\n"
)
# Waits (bounded) for the limit the server sets after spawning it, then asks for 600 MB.
GREEDY = (
    "import os, resource, sys, time\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "deadline = time.monotonic() + 10\n"
    "while resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:\n"
    "    assert time.monotonic() < deadline, 'the limit never arrived'\n"
    "    time.sleep(0.001)\n"
    "print('limited to', resource.getrlimit(resource.RLIMIT_AS)[0], flush=True)\n"
    "hog = bytearray(600 * 2**20)\n"
    "print('allocated', len(hog))\n"
)
RSS_MARGIN_KIB = 48 * 1024


@pytest.fixture
def mark() -> Iterator[str]:
    """An environment entry only this test's action processes carry."""
    entry = f"REYNOLDS_TEST_MARK_ESCAPE={uuid.uuid4().hex}"
    yield entry
    kill_carrying(entry)


def nothing_left(rig: Rig, mark: str) -> None:
    """No process of the test's action, by its mark, nor of any action of the server, by the
    server's own tag; the sweep after an action's end gets a moment to find them."""
    wait_for(lambda: not carrying(mark), 10, f"left running: {carrying(mark)}")
    wait_for(lambda: not tagged_actions(rig.pid), 10, f"tagged: {tagged_actions(rig.pid)}")


def submit_one(rig: Rig, mark: str, argv: list[str], **options: Any) -> str:
    """Accept a task of one shell subtask whose processes carry `mark`; its id."""
    name, _, value = mark.partition("=")
    action = {"kind": "shell", "argv": argv, "env": {name: value}}
    return rig.submit(
        {"type": "fault-escape", "subtasks": [{"id": "escape", "action": action, **options}]}
    )


def finish(rig: Rig, task_id: str) -> dict[str, Any]:
    """Wait for the task's end; its one subtask as reported."""
    rig.ended([task_id], timeout_s=60)
    subtask: dict[str, Any] = rig.task(task_id)["subtasks"][0]
    return subtask


def run_one(rig: Rig, mark: str, argv: list[str], **options: Any) -> dict[str, Any]:
    """Run one shell subtask carrying `mark` to its end; the subtask as reported."""
    return finish(rig, submit_one(rig, mark, argv, **options))


def test_a_double_fork_daemon_ends_with_its_action(
    module_rig: Rig, mark: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"

    sub = run_one(module_rig, mark, [PY, "-c", DAEMON, str(pidfile), "0"])

    assert (sub["status"], sub["output"].strip()) == ("succeeded", "daemonized"), sub
    daemon = read_pid(pidfile)
    assert daemon is not None
    # It holds none of the action's pipes: the sweep after the action's end finds it.
    wait_for(lambda: not is_running(daemon), 10, f"the daemon {daemon} outlived its action")
    nothing_left(module_rig, mark)
    module_rig.check()


def test_an_action_ignoring_sigterm_is_killed_at_its_timeout(
    module_rig: Rig, mark: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "stubborn.pids"
    started = time.monotonic()
    task_id = submit_one(module_rig, mark, [PY, "-c", STUBBORN, str(pidfile)], timeoutSeconds=2)
    wait_for(pidfile.exists, 10, "the action did not start its processes")
    pids = [int(p) for p in pidfile.read_text().split()]
    # Both carry the server's tag for the action, the one in its own session too.
    assert set(pids) <= tagged_actions(module_rig.pid), (pids, tagged_actions(module_rig.pid))

    sub = finish(module_rig, task_id)

    took = time.monotonic() - started
    assert (sub["status"], sub["reason"]) == ("failed", "timeout"), sub
    assert "ignoring SIGTERM" in sub["output"]
    assert took < 20, f"a 2 s timeout took {took:.1f} s to end the subtask"
    assert not [p for p in pids if is_running(p)], "a SIGTERM-proof process outlived its timeout"
    assert not carrying(mark), f"left running: {carrying(mark)}"
    nothing_left(module_rig, mark)
    module_rig.check()


class RssWatch:
    """Samples a process's VmRSS in a thread until stopped; the largest seen, in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = vm_rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, vm_rss_kib(self.pid))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_200_mb_of_output_is_capped_and_the_server_stays_small(module_rig: Rig, mark: str) -> None:
    pid = module_rig.pid
    before = vm_rss_kib(pid)

    with RssWatch(pid) as watch:
        sub = run_one(module_rig, mark, [PY, "-c", FLOOD])

    after = vm_rss_kib(pid)
    print(f"server VmRSS: before {before} KiB, peak {watch.peak} KiB, after {after} KiB")
    assert sub["status"] == "succeeded", sub
    cap = 65536
    assert f"[output truncated: {OUTPUT_BYTES} bytes in all, {cap} kept]" in sub["output"]
    assert len(sub["output"]) < cap + 1024
    assert watch.peak - before < RSS_MARGIN_KIB, (before, watch.peak)
    assert after - before < RSS_MARGIN_KIB, (before, after)
    nothing_left(module_rig, mark)
    module_rig.check()


def test_an_action_allocating_past_its_memory_limit_fails_and_is_gone(
    module_rig: Rig, mark: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "greedy.pid"

    sub = run_one(module_rig, mark, [PY, "-c", GREEDY, str(pidfile)], agent="platform")

    assert sub["status"] == "failed", sub
    assert f"limited to {256 * 2**20}" in sub["output"], sub
    assert "allocated" not in sub["output"]
    assert "MemoryError" in sub["error"], sub
    greedy = read_pid(pidfile)
    assert greedy is not None and not is_running(greedy)
    nothing_left(module_rig, mark)
    module_rig.check()
